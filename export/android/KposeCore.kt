// kpose's decoding in plain Kotlin (no Android, TFLite or org.json imports): crop geometry
// and the heatmap decode (argmax + DARK). Ports of the Python references kpose/transforms.py
// and kpose/codecs/heatmap.py, written like the JS ports (web_demo/src/decoders.js): float64
// arithmetic on float32 inputs, in the reference's operation order wherever the order
// decides a comparison.
// export/android/test/GoldenTest.kt checks them against the golden vectors the Python
// code writes (web_demo/test/golden), the same files the JS ports are tested against.
//
// Coordinates: pixel centres at integers; heatmap u = (x + 0.5) / stride - 0.5. Maps are
// channels-last float arrays, as TFLite returns them: value(k, y, x) = data[(y * w + x) * K + k].
package dev.kpose

import kotlin.math.PI
import kotlin.math.cos
import kotlin.math.floor
import kotlin.math.ln
import kotlin.math.max
import kotlin.math.min
import kotlin.math.sin

/** A keypoint in image pixels; score 0: not found. */
data class Keypoint(val name: String, val x: Float, val y: Float, val score: Float)

/** One person: keypoints in the skeleton's order, pose score, box [x, y, w, h] (may be
 * null) and the id Tracker gave it (null: untracked). */
data class Pose(val keypoints: List<Keypoint>, val score: Double, val box: FloatArray? = null,
                val trackId: Int? = null)

// ---------------------------------------------------------------------------
// crop geometry (kpose/transforms.py)

/** An image -> crop (or input) affine [[a00, a01, tx], [a10, a11, ty]]. */
class Affine(val a00: Double, val a01: Double, val tx: Double, val a10: Double, val a11: Double, val ty: Double) {
    fun mapX(x: Double, y: Double) = x * a00 + y * a01 + tx
    fun mapY(x: Double, y: Double) = x * a10 + y * a11 + ty

    fun inverse(): Affine {
        val det = a00 * a11 - a01 * a10
        val ia = a11 / det
        val ib = -a01 / det
        val id = -a10 / det
        val ie = a00 / det
        return Affine(ia, ib, -(ia * tx + ib * ty), id, ie, -(id * tx + ie * ty))
    }

    companion object {
        /** affine_matrix: centre +- scale / 2 onto the crop's outer pixel edges; rotation in
         * degrees (counter-clockwise as displayed), flip mirrors inside the crop. */
        fun crop(cx: Double, cy: Double, sw: Double, sh: Double, outH: Int, outW: Int,
                 rotation: Double = 0.0, flip: Boolean = false): Affine {
            val kx = outW / sw
            val ky = outH / sh
            val theta = rotation * (PI / 180)  // numpy's deg2rad
            val sign = if (flip) -1.0 else 1.0
            val a00 = sign * (kx * cos(theta))
            val a01 = sign * (kx * sin(theta))
            val a10 = -ky * sin(theta)
            val a11 = ky * cos(theta)
            // The centre lands on the crop's middle, (W-1)/2, (H-1)/2, flipped or not.
            val tx = 0.5 * (outW - 1) - (a00 * cx + a01 * cy)
            val ty = 0.5 * (outH - 1) - (a10 * cx + a11 * cy)
            return Affine(a00, a01, tx, a10, a11, ty)
        }

        /** box_to_center_scale: box [x, y, w, h] -> (cx, cy, sw, sh), grown to aspect (w / h), times padding. */
        fun centerScale(box: DoubleArray, aspect: Double, padding: Double): DoubleArray {
            val (x, y, w, h) = box
            val sw = max(w, h * aspect)
            val sh = max(h, w / aspect)
            return doubleArrayOf(x + 0.5 * w - 0.5, y + 0.5 * h - 0.5, sw * padding, sh * padding)
        }

        /** The top-down crop of a person box [x, y, w, h] for an input of inputH x inputW. */
        fun forBox(box: DoubleArray, inputH: Int, inputW: Int, padding: Double): Affine {
            val c = centerScale(box, inputW.toDouble() / inputH, padding)
            return crop(c[0], c[1], c[2], c[3], inputH, inputW)
        }

        /** fit_matrix: a whole imageH x imageW image scaled to fit inside the input, centred. */
        fun fit(imageH: Int, imageW: Int, inputH: Int, inputW: Int): Affine =
            forBox(doubleArrayOf(0.0, 0.0, imageW.toDouble(), imageH.toDouble()), inputH, inputW, 1.0)
    }
}

/** warp_image (bilinear, outside = 0) of ARGB pixels into a float32 RGB 0..255 [outH, outW, 3] input. */
fun warpBilinear(argb: IntArray, width: Int, height: Int, imageToInput: Affine, outH: Int, outW: Int): FloatArray {
    val inv = imageToInput.inverse()
    val out = FloatArray(outH * outW * 3)
    fun at(xi: Int, yi: Int, c: Int): Double =
        if (xi < 0 || yi < 0 || xi >= width || yi >= height) 0.0
        else ((argb[yi * width + xi] shr (16 - 8 * c)) and 0xFF).toDouble()  // c = 0 R, 1 G, 2 B
    for (v in 0 until outH) for (u in 0 until outW) {
        val sx = inv.mapX(u.toDouble(), v.toDouble())
        val sy = inv.mapY(u.toDouble(), v.toDouble())
        val x0 = floor(sx).toInt()
        val y0 = floor(sy).toInt()
        val fx = sx - x0
        val fy = sy - y0
        for (c in 0 until 3) {
            val top = (1 - fx) * at(x0, y0, c) + fx * at(x0 + 1, y0, c)
            val bottom = (1 - fx) * at(x0, y0 + 1, c) + fx * at(x0 + 1, y0 + 1, c)
            out[(v * outW + u) * 3 + c] = ((1 - fy) * top + fy * bottom).toFloat()
        }
    }
    return out
}

// ---------------------------------------------------------------------------
// numpy helpers

/** numpy's pairwise summation (add.reduce along a contiguous axis): where a sum feeds a
 * ranking or a threshold, the same rounding as NumPy keeps the same decision. */
fun pairwiseSum(a: DoubleArray, start: Int = 0, n: Int = a.size - start): Double {
    if (n < 8) {
        var res = 0.0
        for (i in 0 until n) res += a[start + i]
        return res
    }
    if (n <= 128) {
        val r = DoubleArray(8) { a[start + it] }
        var i = 8
        while (i < n - n % 8) {
            for (j in 0 until 8) r[j] += a[start + i + j]
            i += 8
        }
        var res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        while (i < n) res += a[start + i++]
        return res
    }
    var n2 = n / 2
    n2 -= n2 % 8
    return pairwiseSum(a, start, n2) + pairwiseSum(a, start + n2, n - n2)
}

// ---------------------------------------------------------------------------
// heatmap codec (kpose/codecs/heatmap.py)

/** Log-heatmap values are floored at this fraction of the peak (heatmap.LOG_FLOOR). */
const val LOG_FLOOR = 1e-4

/** A local maximum at (iy, ix) of channel k. */
class Peak(val k: Int, val iy: Int, val ix: Int)

fun defaultDarkRadius(sigma: Double): Int = max(1, floor(sigma).toInt())

/** savgol_quadratic_2d: the least-squares map from a row-major (2ry+1) x (2rx+1) window to
 * (c, gx, gy, hxx/2, hxy, hyy/2). On a symmetric grid the normal equations decouple, so each
 * weight is one integer ratio (numpy's pinv agrees to ~1e-16). */
fun savgolQuadratic2d(ry: Int, rx: Int): Array<DoubleArray> {
    val nx = 2 * rx + 1
    val ny = 2 * ry + 1
    fun ex(d: Int, r: Int) = 3 * d * d - r * (r + 1)  // 3 (d^2 - mean d^2), an integer
    var sx2 = 0.0
    var sy2 = 0.0
    var qx = 0.0
    var qy = 0.0
    for (d in -rx..rx) { sx2 += d * d; qx += ex(d, rx).toDouble() * ex(d, rx) }
    for (d in -ry..ry) { sy2 += d * d; qy += ex(d, ry).toDouble() * ex(d, ry) }
    val rows = Array(6) { DoubleArray(nx * ny) }
    var i = 0
    for (dy in -ry..ry) for (dx in -rx..rx) {
        val a = (3.0 * ex(dx, rx)) / (ny * qx)
        val b = (3.0 * ex(dy, ry)) / (nx * qy)
        rows[1][i] = dx / (ny * sx2)
        rows[2][i] = dy / (nx * sy2)
        rows[3][i] = a
        rows[4][i] = (dx * dy) / (sx2 * sy2)
        rows[5][i] = b
        rows[0][i] = 1.0 / (nx * ny) - (rx * (rx + 1) / 3.0) * a - (ry * (ry + 1) / 3.0) * b
        i++
    }
    return rows
}

/** dark_refine: sub-pixel (u, v) of the blobs at integer maxima of channels-last [h, w, K]
 * maps; the integer position where the fitted quadratic has no maximum. The window is
 * shifted inward at the border, and fitted to the log relative to the peak, so a flat
 * window gives exactly zero curvature (the integer fallback) in any summation order. */
fun darkRefine(hm: FloatArray, h: Int, w: Int, k: Int, peaks: List<Peak>, radius: Int): Array<DoubleArray> {
    val ry = min(radius, (h - 1) / 2)
    val rx = min(radius, (w - 1) / 2)
    require(ry >= 1 && rx >= 1) { "DARK needs a heatmap of at least 3x3, got ${h}x$w" }
    val p = savgolQuadratic2d(ry, rx)
    val logw = DoubleArray((2 * ry + 1) * (2 * rx + 1))
    return Array(peaks.size) { n ->
        val pk = peaks[n]
        val cy = pk.iy.coerceIn(ry, h - 1 - ry)
        val cx = pk.ix.coerceIn(rx, w - 1 - rx)
        val peak = hm[(pk.iy * w + pk.ix) * k + pk.k].toDouble()
        val fl = LOG_FLOOR * max(peak, 1e-30)
        val logPeak = ln(max(peak, fl))
        var i = 0
        for (dy in -ry..ry) for (dx in -rx..rx) {
            logw[i++] = ln(max(hm[((cy + dy) * w + cx + dx) * k + pk.k].toDouble(), fl)) - logPeak
        }
        val coef = DoubleArray(6)
        for (j in 1 until 6) {
            var s = 0.0
            for (t in logw.indices) s += logw[t] * p[j][t]
            coef[j] = s
        }
        val gx = coef[1]
        val gy = coef[2]
        val hxx = 2 * coef[3]
        val hxy = coef[4]
        val hyy = 2 * coef[5]
        val det = hxx * hyy - hxy * hxy
        if (!(hxx < 0 && det > 0)) {
            doubleArrayOf(pk.ix.toDouble(), pk.iy.toDouble())
        } else {
            // Newton step to the stationary point of the fitted quadratic: -H^-1 g.
            val ox = -(hyy * gx - hxy * gy) / det
            val oy = -(hxx * gy - hxy * gx) / det
            doubleArrayOf((cx + ox).coerceIn(pk.ix - 1.0, pk.ix + 1.0), (cy + oy).coerceIn(pk.iy - 1.0, pk.iy + 1.0))
        }
    }
}

/** HeatmapCodec: input (crop) size H x W, heatmaps h x w, Gaussian sigma, DARK radius. */
class HeatmapCodec(val inputH: Int, val inputW: Int, val heatmapH: Int, val heatmapW: Int,
                   val sigma: Double = 2.0, val darkRadius: Int? = null) {
    init {
        require(heatmapH >= 3 && heatmapW >= 3) { "heatmap_size [$heatmapH, $heatmapW] is too small (need >= 3x3)" }
        require(sigma > 0) { "sigma must be positive, got $sigma" }
    }

    val strideX: Double get() = inputW.toDouble() / heatmapW
    val strideY: Double get() = inputH.toDouble() / heatmapH
    val radius: Int get() = darkRadius ?: defaultDarkRadius(sigma)
    fun toInputX(u: Double) = (u + 0.5) * strideX - 0.5
    fun toInputY(v: Double) = (v + 0.5) * strideY - 0.5

    /** HeatmapCodec.decode of one [h, w, K] output -> [K] of (x, y, score) in input pixels:
     * the first maximum of each channel (numpy's argmax: the first NaN if any), then DARK. */
    fun decode(hm: FloatArray, dark: Boolean = true): Array<DoubleArray> {
        val n = heatmapH * heatmapW
        require(hm.isNotEmpty() && hm.size % n == 0) {
            "heatmaps have ${hm.size} values, not a multiple of heatmap_size $heatmapH x $heatmapW"
        }
        val k = hm.size / n
        val peaks = List(k) { c ->
            var best = 0
            var bestVal = hm[c]
            if (!bestVal.isNaN()) for (i in 1 until n) {
                val v = hm[i * k + c]
                if (v.isNaN()) { best = i; break }
                if (v > bestVal) { best = i; bestVal = v }
            }
            Peak(c, best / heatmapW, best % heatmapW)
        }
        val uv = if (dark) darkRefine(hm, heatmapH, heatmapW, k, peaks, radius)
                 else Array(k) { doubleArrayOf(peaks[it].ix.toDouble(), peaks[it].iy.toDouble()) }
        return Array(k) { c ->
            val score = hm[(peaks[c].iy * heatmapW + peaks[c].ix) * k + c].toDouble()
            doubleArrayOf(toInputX(uv[c][0]), toInputY(uv[c][1]), score)
        }
    }

    companion object {
        /** codec.to_dict(): {type: "heatmap", input_size [H, W], heatmap_size [h, w], sigma, dark_radius}. */
        fun fromJson(o: JsonObject): HeatmapCodec {
            val (input, grid) = o.codecSizes("heatmap")
            return o.build { HeatmapCodec(input[0], input[1], grid[0], grid[1], o.double("sigma"), o.intOrNull("dark_radius")) }
        }
    }
}

/** flip test: average a crop's [h, w, K] output with the mirrored crop's, mirrored back with
 * left/right channels swapped (PoseModel.heatmaps); float32 arithmetic, as NumPy's. */
fun flipAverage(out: FloatArray, mirrored: FloatArray, h: Int, w: Int, flipIndex: IntArray): FloatArray {
    val k = flipIndex.size
    val res = FloatArray(h * w * k)
    for (y in 0 until h) for (x in 0 until w) {
        val i = (y * w + x) * k
        val j = (y * w + (w - 1 - x)) * k
        for (c in 0 until k) res[i + c] = 0.5f * (out[i + c] + mirrored[j + flipIndex[c]])
    }
    return res
}

/** kpose.metrics.instance_scores for one person: mean of the scores > threshold (0 when none). */
fun instanceScore(scores: DoubleArray, threshold: Double = 0.2): Double {
    val s = DoubleArray(scores.size) { if (scores[it] > threshold) scores[it] else 0.0 }
    val count = scores.count { it > threshold }
    return if (count > 0) pairwiseSum(s) / count else 0.0
}

/** PoseModel.predict for a top-down model after the network: the [h, w, K] heatmaps of the
 * crop made with imageToCrop -> (x, y, score) [K] in image pixels. The crop coordinates are
 * rounded to float32 first, as HeatmapCodec.decode returns them. */
fun decodeTopDown(hm: FloatArray, codec: HeatmapCodec, imageToCrop: Affine, dark: Boolean = true): Array<DoubleArray> {
    val inv = imageToCrop.inverse()
    return codec.decode(hm, dark).map { (x, y, s) ->
        val xf = x.toFloat().toDouble()
        val yf = y.toFloat().toDouble()
        doubleArrayOf(inv.mapX(xf, yf), inv.mapY(xf, yf), s.toFloat().toDouble())
    }.toTypedArray()
}

/** keypoint_extent: [x, y, w, h] around the found keypoints (score > 0), in float32 as
 * Python computes it; zeros when none is found. */
fun keypointExtent(rows: Array<DoubleArray>): FloatArray {
    var x0 = Float.POSITIVE_INFINITY; var y0 = Float.POSITIVE_INFINITY
    var x1 = Float.NEGATIVE_INFINITY; var y1 = Float.NEGATIVE_INFINITY
    for (r in rows) if (r[2] > 0) {
        x0 = min(x0, r[0].toFloat()); y0 = min(y0, r[1].toFloat())
        x1 = max(x1, r[0].toFloat()); y1 = max(y1, r[1].toFloat())
    }
    return if (x0 == Float.POSITIVE_INFINITY) FloatArray(4) else floatArrayOf(x0, y0, x1 - x0, y1 - y0)
}

/** (x, y, score) rows -> a Pose with the skeleton's names (float32, as Python's Pose). */
fun toPose(rows: Array<DoubleArray>, names: List<String>, score: Double, box: FloatArray = keypointExtent(rows)): Pose {
    require(rows.size == names.size) { "${rows.size} keypoints decoded but the skeleton names ${names.size}" }
    return Pose(rows.mapIndexed { i, r -> Keypoint(names[i], r[0].toFloat(), r[1].toFloat(), r[2].toFloat()) }, score, box)
}

/** PoseModel.predict for a top-down model: a pose per person box (x, y, w, h), cropped at the
 * metadata's crop padding, or of the whole image (boxes null) unpadded. heatmaps(imageToCrop):
 * the network's [h, w, K] output for the crop that affine makes (KposePose warps and runs it). */
fun topDownPoses(meta: KposeMetadata, imageW: Int, imageH: Int, boxes: List<DoubleArray>?,
                 heatmaps: (Affine) -> FloatArray): List<Pose> {
    val codec = meta.heatmapCodec
    val padding = if (boxes == null) meta.wholeImagePadding else meta.cropPadding
    return (boxes ?: listOf(doubleArrayOf(0.0, 0.0, imageW.toDouble(), imageH.toDouble()))).map { box ->
        val crop = Affine.forBox(box, codec.inputH, codec.inputW, padding)
        val rows = decodeTopDown(heatmaps(crop), codec, crop)
        toPose(rows, meta.skeleton.keypoints, instanceScore(DoubleArray(rows.size) { rows[it][2] }),
               FloatArray(4) { box[it].toFloat() })
    }
}
