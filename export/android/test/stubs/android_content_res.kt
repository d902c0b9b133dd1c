// Compile-time stand-ins for the Android and LiteRT APIs that KposePose.kt calls (one file per
// package), with their real packages and call shapes, so that kotlinc type-checks the loader
// against the core off a device (there is no Android SDK here). Never run: every body throws.
@file:Suppress("UNUSED_PARAMETER")

package android.content.res

class AssetFileDescriptor : java.io.Closeable {
    val fileDescriptor: java.io.FileDescriptor get() = throw UnsupportedOperationException("stub")
    val startOffset: Long get() = throw UnsupportedOperationException("stub")
    val declaredLength: Long get() = throw UnsupportedOperationException("stub")
    override fun close(): Unit = throw UnsupportedOperationException("stub")
}

class AssetManager {
    fun openFd(fileName: String): AssetFileDescriptor = throw UnsupportedOperationException("stub")
}
