// kpose on Android: load an exported .tflite with the GPU delegate, read its metadata,
// crop a person box, run the model and decode the heatmaps (argmax + DARK), exactly as
// kpose's Python reference decoder does (kpose/codecs/heatmap.py).
//
// Gradle: implementation("com.google.ai.edge.litert:litert:1.+")
//         implementation("com.google.ai.edge.litert:litert-gpu:1.+")
//         implementation("com.google.ai.edge.litert:litert-support:1.+")   // MetadataExtractor
// (or the org.tensorflow:tensorflow-lite* artifacts of the same APIs).
package dev.kpose

import android.content.Context
import android.graphics.Bitmap
import org.json.JSONObject
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import org.tensorflow.lite.support.metadata.MetadataExtractor
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.channels.FileChannel
import kotlin.math.floor
import kotlin.math.ln
import kotlin.math.max
import kotlin.math.min

data class Keypoint(val name: String, val x: Float, val y: Float, val score: Float)

class KposePose(context: Context, asset: String) : AutoCloseable {
    private val model: ByteBuffer = context.assets.openFd(asset).use { fd ->
        FileInputStream(fd.fileDescriptor).channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
    }
    // kpose writes its metadata as the associated file kpose.json (and as a flatbuffer entry).
    val meta = JSONObject(MetadataExtractor(model).getAssociatedFile("kpose.json").bufferedReader().readText())
    private val names = meta.getJSONObject("skeleton").getJSONArray("keypoints").let { a -> List(a.length()) { a.getString(it) } }
    private val codec = meta.getJSONObject("codec")
    private val inH = codec.getJSONArray("input_size").getInt(0)
    private val inW = codec.getJSONArray("input_size").getInt(1)
    private val hmH = codec.getJSONArray("heatmap_size").getInt(0)
    private val hmW = codec.getJSONArray("heatmap_size").getInt(1)
    private val radius = if (codec.isNull("dark_radius")) max(1, floor(codec.getDouble("sigma")).toInt()) else codec.getInt("dark_radius")
    private val padding = meta.getJSONObject("crop").getDouble("padding").toFloat()

    private val gpu: GpuDelegate? = CompatibilityList().let { if (it.isDelegateSupportedOnThisDevice) GpuDelegate(it.bestOptionsForThisDevice) else null }
    private val interpreter = Interpreter(model, Interpreter.Options().apply {
        if (gpu != null) addDelegate(gpu) else setNumThreads(4)
    })

    /** Keypoints of the person in [box] = (x, y, w, h) in image pixels (null: the whole image). */
    fun estimate(image: Bitmap, box: FloatArray? = null): List<Keypoint> {
        val b = box ?: floatArrayOf(0f, 0f, image.width.toFloat(), image.height.toFloat())
        val pad = if (box == null) 1f else padding
        // kpose.transforms.box_to_center_scale + affine_matrix (pixel centres at integers, no rotation).
        val aspect = inW.toFloat() / inH
        val cx = b[0] + 0.5f * b[2] - 0.5f
        val cy = b[1] + 0.5f * b[3] - 0.5f
        val sw = max(b[2], b[3] * aspect) * pad
        val sh = max(b[3], b[2] / aspect) * pad
        val kx = inW / sw
        val ky = inH / sh
        val tx = 0.5f * (inW - 1) - kx * cx
        val ty = 0.5f * (inH - 1) - ky * cy

        // Input "image": float32 [1, H, W, 3], RGB 0..255 (normalisation is in the graph).
        val input = ByteBuffer.allocateDirect(4 * inH * inW * 3).order(ByteOrder.nativeOrder())
        val px = IntArray(image.width * image.height).also { image.getPixels(it, 0, image.width, 0, 0, image.width, image.height) }
        for (v in 0 until inH) for (u in 0 until inW) {
            val sx = (u - tx) / kx
            val sy = (v - ty) / ky  // bilinear sample, outside the image = 0
            for (c in 0 until 3) input.putFloat(bilinear(px, image.width, image.height, sx, sy, c))
        }
        input.rewind()
        val k = names.size
        val output = ByteBuffer.allocateDirect(4 * hmH * hmW * k).order(ByteOrder.nativeOrder())
        interpreter.runSignature(mapOf("image" to input), mapOf("heatmaps" to output), "serving_default")
        output.rewind()
        val hm = FloatArray(hmH * hmW * k).also { output.asFloatBuffer().get(it) }

        val strideX = inW.toFloat() / hmW
        val strideY = inH.toFloat() / hmH
        return List(k) { j ->
            val (u, v, score) = decodeChannel(hm, j, k)
            // heatmap -> crop pixels -> image pixels (inverse affine)
            val x = (u + 0.5f) * strideX - 0.5f
            val y = (v + 0.5f) * strideY - 0.5f
            Keypoint(names[j], (x - tx) / kx, (y - ty) / ky, score)
        }
    }

    /** Argmax + DARK: Newton step on a least-squares quadratic fit of the log-heatmap. */
    private fun decodeChannel(hm: FloatArray, j: Int, k: Int): Triple<Float, Float, Float> {
        var best = 0
        for (i in 1 until hmH * hmW) if (hm[i * k + j] > hm[best * k + j]) best = i
        val iy = best / hmW
        val ix = best % hmW
        val peak = hm[best * k + j].toDouble()
        val ry = min(radius, (hmH - 1) / 2)
        val rx = min(radius, (hmW - 1) / 2)
        val cy = iy.coerceIn(ry, hmH - 1 - ry)  // window shifted inward at the border
        val cx = ix.coerceIn(rx, hmW - 1 - rx)
        val floorV = 1e-4 * max(peak, 1e-30)
        // On a full symmetric grid the least-squares coefficients decouple:
        // g = S(d L)/S(d^2), hxy = S(dx dy L)/S(dx^2 dy^2), a = S((d^2 - m) L)/S((d^2 - m)^2).
        val mx = (rx * (rx + 1.0) * (2 * rx + 1) / 3.0) / (2 * rx + 1)
        val my = (ry * (ry + 1.0) * (2 * ry + 1) / 3.0) / (2 * ry + 1)
        var sgx = 0.0; var sgy = 0.0; var sxy = 0.0; var sxx = 0.0; var syy = 0.0
        var nx = 0.0; var ny = 0.0; var nxy = 0.0; var nxx = 0.0; var nyy = 0.0
        for (dy in -ry..ry) for (dx in -rx..rx) {
            val l = ln(max(hm[((cy + dy) * hmW + cx + dx) * k + j].toDouble(), floorV)) - ln(max(peak, floorV))
            sgx += dx * l; nx += dx * dx
            sgy += dy * l; ny += dy * dy
            sxy += dx * dy * l; nxy += dx * dx * dy * dy
            sxx += (dx * dx - mx) * l; nxx += (dx * dx - mx) * (dx * dx - mx)
            syy += (dy * dy - my) * l; nyy += (dy * dy - my) * (dy * dy - my)
        }
        val gx = sgx / nx; val gy = sgy / ny; val hxy = sxy / nxy
        val hxx = 2 * sxx / nxx; val hyy = 2 * syy / nyy
        val det = hxx * hyy - hxy * hxy
        if (!(hxx < 0 && det > 0)) return Triple(ix.toFloat(), iy.toFloat(), peak.toFloat())
        val ox = -(hyy * gx - hxy * gy) / det
        val oy = -(hxx * gy - hxy * gx) / det
        val u = (cx + ox).coerceIn(ix - 1.0, ix + 1.0)
        val v = (cy + oy).coerceIn(iy - 1.0, iy + 1.0)
        return Triple(u.toFloat(), v.toFloat(), peak.toFloat())
    }

    private fun bilinear(px: IntArray, w: Int, h: Int, x: Float, y: Float, c: Int): Float {
        val x0 = floor(x).toInt(); val y0 = floor(y).toInt()
        val fx = x - x0; val fy = y - y0
        fun at(xi: Int, yi: Int): Float {
            if (xi < 0 || yi < 0 || xi >= w || yi >= h) return 0f
            val p = px[yi * w + xi]
            return ((p shr (16 - 8 * c)) and 0xFF).toFloat()  // c = 0 R, 1 G, 2 B
        }
        val top = (1 - fx) * at(x0, y0) + fx * at(x0 + 1, y0)
        val bottom = (1 - fx) * at(x0, y0 + 1) + fx * at(x0 + 1, y0 + 1)
        return (1 - fy) * top + fy * bottom
    }

    override fun close() {
        interpreter.close()
        gpu?.close()
    }
}
