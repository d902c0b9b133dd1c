// Compile-time stand-in (see android_content_res.kt).
@file:Suppress("UNUSED_PARAMETER")

package org.tensorflow.lite.support.metadata

class MetadataExtractor(buffer: java.nio.ByteBuffer) {
    fun getAssociatedFile(fileName: String): java.io.InputStream = throw UnsupportedOperationException("stub")
}
