// Compile-time stand-in (see android_content_res.kt).
@file:Suppress("UNUSED_PARAMETER")

package android.content

abstract class Context {
    abstract val assets: android.content.res.AssetManager
}
