// Compile-time stand-in (see android_content_res.kt).
@file:Suppress("UNUSED_PARAMETER")

package org.tensorflow.lite.gpu

class GpuDelegate(options: Options) : org.tensorflow.lite.Delegate {
    open class Options
    override fun close(): Unit = throw UnsupportedOperationException("stub")
}

class CompatibilityList {
    val isDelegateSupportedOnThisDevice: Boolean get() = throw UnsupportedOperationException("stub")
    val bestOptionsForThisDevice: GpuDelegate.Options get() = throw UnsupportedOperationException("stub")
}
