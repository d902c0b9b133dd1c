// Limb heatmap decoding (SimplePose: one scalar map per limb) in plain Kotlin, a port of
// kpose/codecs/limb_heatmap.py (LimbHeatmapCodec.decode), as web_demo/src/limb-heatmap.js
// does it. The decode is PafCodec's (KposePaf.kt: peaks, PafCodec.group) with one change,
// exactly as in Python: a candidate pair's samples along its segment are the limb's map at
// the sample pixels (limbMapSample), not the PAF dotted with the unit vector; score = their
// mean plus the distance prior; a pair is a candidate when that score is > 0 and at least
// min_sample_fraction of the samples exceed limb_threshold (PafCodec's paf_threshold).
// limbSigma and roundEnds only shape the training targets (LimbHeatmapCodec.encode): the
// decoder reads whatever maps it is given.
package dev.kpose

import kotlin.math.max

/** limb_map_samples: the limb's own map at the sample pixel (maps [h, w, L], at: the pixel's
 * first channel); the unit vector is unused: a scalar map has no direction. */
@Suppress("UNUSED_PARAMETER")
fun limbMapSample(maps: FloatArray, at: Int, limb: Int, ux: Double, uy: Double): Double = maps[at + limb].toDouble()

/** LimbHeatmapCodec: grid, limbs (redundant ones included: one map each) and settings, with
 * LimbHeatmapCodec's defaults. */
class LimbHeatmapCodec(val inputH: Int, val inputW: Int, val heatmapH: Int, val heatmapW: Int,
                       override val limbs: List<Pair<Int, Int>>,
                       val limbSigma: Double = 1.0, val roundEnds: Boolean = true, val sigma: Double = 2.0,
                       val darkRadius: Int? = null, val peakThreshold: Double = 0.1, val smoothSigma: Double = 0.0,
                       val upsample: Int = 1, val numSamples: Int = 10, val limbThreshold: Double = 0.1,
                       val minSampleFraction: Double = 0.8, val maxLimbFraction: Double = 0.5,
                       val minKeypoints: Int = 3) : BottomUpCodec {
    init {
        require(limbSigma > 0) { "limb_sigma must be > 0 (heatmap pixels), got $limbSigma" }
    }

    /** LimbHeatmapCodec.grouping: the PafCodec whose peaks and grouping this codec reuses, with the
     * same settings (limb_threshold as its paf_threshold); its constructor checks them. */
    val grouping = PafCodec(inputH, inputW, heatmapH, heatmapW, limbs, sigma = sigma, darkRadius = darkRadius,
        peakThreshold = peakThreshold, smoothSigma = smoothSigma, upsample = upsample, numSamples = numSamples,
        pafThreshold = limbThreshold, minSampleFraction = minSampleFraction, maxLimbFraction = maxLimbFraction,
        minKeypoints = minKeypoints)

    override val heatmapCodec: HeatmapCodec get() = grouping.heatmapCodec
    override val limbOutput: String get() = "limb_heatmaps"
    override val limbChannels: Int get() = limbs.size

    /** The settings under LimbHeatmapCodec.to_dict()'s names (tests compare them with Python's defaults). */
    fun settings(): Map<String, Any?> = mapOf(
        "limb_sigma" to limbSigma, "round_ends" to roundEnds, "sigma" to sigma, "dark_radius" to darkRadius,
        "peak_threshold" to peakThreshold, "smooth_sigma" to smoothSigma, "upsample" to upsample,
        "num_samples" to numSamples, "limb_threshold" to limbThreshold, "min_sample_fraction" to minSampleFraction,
        "max_limb_fraction" to maxLimbFraction, "min_keypoints" to minKeypoints)

    /** LimbHeatmapCodec.decode: heatmaps [h, w, K] and limb maps [h, w, L] -> people by descending score. */
    override fun decode(heatmaps: FloatArray, limbMaps: FloatArray): List<PafPerson> {
        val n = heatmapH * heatmapW
        require(heatmaps.isNotEmpty() && heatmaps.size % n == 0 && limbMaps.size == n * limbs.size) {
            "decode expects heatmaps [$heatmapH, $heatmapW, K] and limb maps [$heatmapH, $heatmapW, ${limbs.size}] " +
                "(heatmap_size, limbs), got ${heatmaps.size} and ${limbMaps.size} values"
        }
        val k = heatmaps.size / n
        for ((a, b) in limbs) require(max(a, b) < k) {
            "limbs use keypoint ${max(a, b)} but heatmaps have $k channels; pass the skeleton's limbs for this model"
        }
        return grouping.group(grouping.peaks(heatmaps, k), limbMaps, k, limbs.size, ::limbMapSample)
    }

    companion object {
        /** LimbHeatmapCodec.to_dict() (the metadata's codec of a bottom-up limb heatmap model); absent
         * settings take the defaults. An unknown key fails, as from_dict does: a misspelt setting
         * would otherwise decode with its default. */
        fun fromJson(o: JsonObject): LimbHeatmapCodec {
            val (input, grid) = o.codecSizes("limb_heatmap", " (a bottom-up limb heatmap model)")
            val d = LimbHeatmapCodec(1, 1, 3, 3, emptyList())
            o.onlyCodecSettings(d.settings().keys, "kpose.codecs.limb_heatmap.LimbHeatmapCodec")
            fun num(key: String, def: Double) = if (o.has(key)) o.double(key) else def
            fun int(key: String, def: Int) = if (o.has(key)) o.int(key) else def
            return o.build { LimbHeatmapCodec(input[0], input[1], grid[0], grid[1], o.pairs("limbs"),
                num("limb_sigma", d.limbSigma), if (o.has("round_ends")) o.bool("round_ends") else d.roundEnds,
                num("sigma", d.sigma), if (o.has("dark_radius")) o.intOrNull("dark_radius") else d.darkRadius,
                num("peak_threshold", d.peakThreshold), num("smooth_sigma", d.smoothSigma), int("upsample", d.upsample),
                int("num_samples", d.numSamples), num("limb_threshold", d.limbThreshold),
                num("min_sample_fraction", d.minSampleFraction), num("max_limb_fraction", d.maxLimbFraction),
                int("min_keypoints", d.minKeypoints)) }
        }
    }
}
