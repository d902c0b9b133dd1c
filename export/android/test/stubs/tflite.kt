// Compile-time stand-in (see android_content_res.kt).
@file:Suppress("UNUSED_PARAMETER")

package org.tensorflow.lite

interface Delegate : java.io.Closeable

class Interpreter(model: java.nio.ByteBuffer, options: Options) : AutoCloseable {
    class Options {
        fun addDelegate(delegate: Delegate): Options = throw UnsupportedOperationException("stub")
        fun setNumThreads(numThreads: Int): Options = throw UnsupportedOperationException("stub")
    }

    fun runSignature(inputs: Map<String, Any>, outputs: Map<String, Any>, signatureKey: String): Unit =
        throw UnsupportedOperationException("stub")

    override fun close(): Unit = throw UnsupportedOperationException("stub")
}
