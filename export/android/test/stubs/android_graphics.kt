// Compile-time stand-in (see android_content_res.kt).
@file:Suppress("UNUSED_PARAMETER")

package android.graphics

class Bitmap {
    val width: Int get() = throw UnsupportedOperationException("stub")
    val height: Int get() = throw UnsupportedOperationException("stub")
    fun getPixels(pixels: IntArray, offset: Int, stride: Int, x: Int, y: Int, width: Int, height: Int): Unit =
        throw UnsupportedOperationException("stub")
}
