// kpose on Android: load an exported .tflite with the GPU delegate, read its metadata, run it
// and decode. Only the Android / LiteRT calls live here; the metadata reading (K, names,
// limbs, sigmas, codec, crop padding), the crop geometry, the heatmap (argmax + DARK), PAF and
// limb heatmap decoders, the tracker and top-down video's person boxes are plain Kotlin beside
// it (KposeMetadata.kt, KposeCore.kt, KposePaf.kt, KposeLimbHeatmap.kt, KposeTracking.kt),
// tested off-device against the golden vectors of kpose's Python reference
// (tests/test_android_kotlin.py). Copy the six files into the app.
//
// Gradle: implementation("com.google.ai.edge.litert:litert:1.+")
//         implementation("com.google.ai.edge.litert:litert-gpu:1.+")
//         implementation("com.google.ai.edge.litert:litert-support:1.+")   // MetadataExtractor
// (or the org.tensorflow:tensorflow-lite* artifacts of the same APIs).
package dev.kpose

import android.content.Context
import android.graphics.Bitmap
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import org.tensorflow.lite.support.metadata.MetadataExtractor
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.channels.FileChannel

class KposePose(context: Context, asset: String) : AutoCloseable {
    private val model: ByteBuffer = context.assets.openFd(asset).use { fd ->
        FileInputStream(fd.fileDescriptor).channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
    }

    /** What the model says about itself: kpose writes kpose.json as a TFLite associated file. */
    val meta: KposeMetadata = KposeMetadata.parse(
        MetadataExtractor(model).getAssociatedFile("kpose.json").bufferedReader().readText(), "$asset: kpose.json")

    private val gpu: GpuDelegate? = CompatibilityList().let {
        if (it.isDelegateSupportedOnThisDevice) GpuDelegate(it.bestOptionsForThisDevice) else null
    }
    private val interpreter = Interpreter(model, Interpreter.Options().apply {
        if (gpu != null) addDelegate(gpu) else setNumThreads(4)
    })

    /** A tracker for this model's skeleton: OKS with its sigmas, box IoU when it has none. */
    fun tracker(): Tracker = Tracker(meta.skeleton.sigmas)

    /** People in [image], keypoints in image pixels with the skeleton's names. A top-down model
     * estimates one person per box (x, y, w, h; none: the whole image); a bottom-up model finds
     * everyone in the whole image, decoded by its metadata's codec (PAF or limb heatmap grouping). */
    fun estimate(image: Bitmap, boxes: List<FloatArray>? = null): List<Pose> {
        val bottomUp = meta.bottomUpCodec
        if (bottomUp == null) return topDown(image, boxes?.map { b -> DoubleArray(4) { b[it].toDouble() } })
        require(boxes == null) { "${meta.modelName} is a bottom-up model: it finds every person, it takes no boxes" }
        val (w, h) = image.width to image.height
        val codec = meta.heatmapCodec
        val fit = Affine.fit(h, w, codec.inputH, codec.inputW)
        val out = run(warpBilinear(pixels(image), w, h, fit, codec.inputH, codec.inputW))
        return decodeBottomUp(out[0], out[1], bottomUp, fit).map { (rows, score) -> toPose(rows, meta.skeleton.keypoints, score) }
    }

    /** One video frame at timestampMs, as PoseModel.track: the poses with the tracker's ids and
     * smoothed keypoints. A top-down model crops the frame where the people the tracker matched
     * on the previous frame were (the whole image while nobody was; trackTopDown); a bottom-up
     * model sees the whole image. Use one tracker per video (tracker(); reset() it for a new one). */
    fun track(image: Bitmap, tracker: Tracker, timestampMs: Double): List<Pose> =
        if (meta.bottomUpCodec != null) tracker.update(estimate(image), timestampMs)
        else trackTopDown(tracker, timestampMs) { boxes -> topDown(image, boxes) }

    /** Top-down poses of person boxes (null: the whole image, unpadded, as PoseModel.predict). */
    private fun topDown(image: Bitmap, boxes: List<DoubleArray>?): List<Pose> {
        val (w, h) = image.width to image.height
        val px = pixels(image)
        val codec = meta.heatmapCodec
        return topDownPoses(meta, w, h, boxes) { crop -> run(warpBilinear(px, w, h, crop, codec.inputH, codec.inputW))[0] }
    }

    private fun pixels(image: Bitmap): IntArray =
        IntArray(image.width * image.height).also { image.getPixels(it, 0, image.width, 0, 0, image.width, image.height) }

    /** One inference: input float32 [1, H, W, 3] RGB 0..255 (normalisation is in the graph) ->
     * the outputs in the metadata's order (heatmaps [h, w, K], then the limb maps: pafs [h, w, 2L]
     * or limb_heatmaps [h, w, L]). */
    private fun run(input: FloatArray): List<FloatArray> {
        val inBuf = ByteBuffer.allocateDirect(4 * input.size).order(ByteOrder.nativeOrder())
        inBuf.asFloatBuffer().put(input)
        val grid = meta.heatmapCodec.heatmapH * meta.heatmapCodec.heatmapW
        val channels = listOf(meta.skeleton.numKeypoints, meta.bottomUpCodec?.limbChannels ?: 0)
        val outBufs = meta.outputNames.mapIndexed { i, name ->
            name to ByteBuffer.allocateDirect(4 * grid * channels[i]).order(ByteOrder.nativeOrder())
        }
        interpreter.runSignature(mapOf<String, Any>(meta.inputName to inBuf), outBufs.toMap(), meta.signature)
        return outBufs.map { (_, buf) ->
            buf.rewind()
            FloatArray(buf.capacity() / 4).also { buf.asFloatBuffer().get(it) }
        }
    }

    override fun close() {
        interpreter.close()
        gpu?.close()
    }
}
