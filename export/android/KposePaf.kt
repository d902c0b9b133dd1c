// Bottom-up decoding in plain Kotlin: Part Affinity Field grouping, a port of
// kpose/codecs/paf.py (PafCodec.decode) and kpose/codecs/paf_grouping.py, step for step as
// web_demo/src/decoders.js does it. The grouping takes its limb score as a parameter
// (LimbSample), as Python's does: KposeLimbHeatmap.kt's LimbHeatmapCodec reuses it with the
// limb heatmap's own score. float64 arithmetic on float32 maps (float32 where NumPy
// computes in float32: upsampling), in NumPy's order wherever the order decides a threshold
// or a tie, so that peaks, candidates, matches and the people's order are the reference's.
package dev.kpose

import java.util.ArrayDeque
import kotlin.math.ceil
import kotlin.math.exp
import kotlin.math.floor
import kotlin.math.max
import kotlin.math.min
import kotlin.math.sqrt

/** A person found by PafCodec.decode: (x, y, score) [K] in input pixels ((0, 0, 0): not
 * found), the person's score, and the peak id of each keypoint (-1: none). */
class PafPerson(val keypoints: Array<DoubleArray>, val score: Double, val peaks: IntArray)

/** One scored (a-peak, b-peak) connection of the limb at position `p` of the limb order. */
class Candidate(val p: Int, val a: Int, val b: Int, val score: Double)

/** A limb's evidence at one sample of a candidate segment (paf_grouping's `samples`): maps
 * channels-last [h, w, C], at: the sample pixel's first channel, limb: the limb's index,
 * (ux, uy): the segment's unit vector. */
typealias LimbSample = (maps: FloatArray, at: Int, limb: Int, ux: Double, uy: Double) -> Double

/** paf_samples: the PAF limb score, the field at the sample . the segment's unit vector. */
fun pafSample(maps: FloatArray, at: Int, limb: Int, ux: Double, uy: Double): Double =
    maps[at + 2 * limb] * ux + maps[at + 2 * limb + 1] * uy

/** A bottom-up model's codec, as its metadata's codec.type picks it (bottomUpCodec in
 * KposeMetadata.kt): the limb maps output it reads (kpose/deploy/graph.py LIMB_OUTPUTS: name
 * and channels) and its decode: heatmaps [h, w, K] and limb maps -> people by descending score. */
interface BottomUpCodec {
    val limbs: List<Pair<Int, Int>>
    val heatmapCodec: HeatmapCodec
    val limbOutput: String
    val limbChannels: Int
    fun decode(heatmaps: FloatArray, limbMaps: FloatArray): List<PafPerson>
}

/** PafCodec: grid, limbs and the grouping settings, with PafCodec's defaults. */
class PafCodec(val inputH: Int, val inputW: Int, val heatmapH: Int, val heatmapW: Int,
               override val limbs: List<Pair<Int, Int>>,
               val limbWidth: Double = 1.0, val sigma: Double = 2.0, val darkRadius: Int? = null,
               val peakThreshold: Double = 0.1, val smoothSigma: Double = 0.0, val upsample: Int = 1,
               val numSamples: Int = 10, val pafThreshold: Double = 0.05, val minSampleFraction: Double = 0.8,
               val maxLimbFraction: Double = 0.5, val minKeypoints: Int = 3) : BottomUpCodec {
    init {
        require(limbWidth > 0) { "limb_width must be > 0 (heatmap pixels), got $limbWidth" }
        require(numSamples >= 2) { "num_samples must be >= 2 (points on a limb), got $numSamples" }
        require(upsample >= 1) { "upsample must be an integer >= 1 (1: off), got $upsample" }
        require(smoothSigma >= 0) { "smooth_sigma must be >= 0 (0: off), got $smoothSigma" }
        require(minKeypoints >= 1) { "min_keypoints must be >= 1, got $minKeypoints" }
        for ((a, b) in limbs) require(a != b && min(a, b) >= 0) { "limbs must join two different keypoints, got ($a, $b)" }
    }

    override val heatmapCodec: HeatmapCodec get() = HeatmapCodec(inputH, inputW, heatmapH, heatmapW, sigma, darkRadius)
    override val limbOutput: String get() = "pafs"
    override val limbChannels: Int get() = 2 * limbs.size

    /** The DARK radius on the processed (blurred, upsampled) maps, in their pixels. */
    val peakRadius: Int
        get() = (darkRadius ?: defaultDarkRadius(sqrt(sigma * sigma + smoothSigma * smoothSigma))) * upsample

    /** The settings under PafCodec.to_dict()'s names (tests compare them with Python's defaults). */
    fun settings(): Map<String, Any?> = mapOf(
        "limb_width" to limbWidth, "sigma" to sigma, "dark_radius" to darkRadius, "peak_threshold" to peakThreshold,
        "smooth_sigma" to smoothSigma, "upsample" to upsample, "num_samples" to numSamples,
        "paf_threshold" to pafThreshold, "min_sample_fraction" to minSampleFraction,
        "max_limb_fraction" to maxLimbFraction, "min_keypoints" to minKeypoints)

    /** Peaks (steps 1-2): blur, upsample, 3x3 NMS, DARK. uv is on the heatmap grid. */
    class Peaks(val found: List<Peak>, val kp: IntArray, val uv: Array<DoubleArray>, val score: DoubleArray,
                val processed: FloatArray, val processedH: Int, val processedW: Int)

    fun peaks(heatmaps: FloatArray, k: Int): Peaks {
        val smooth = smoothMaps(heatmaps, heatmapH, heatmapW, k, smoothSigma)
        val maps = upsampleMaps(smooth, heatmapH, heatmapW, k, upsample)
        val h = heatmapH * upsample
        val w = heatmapW * upsample
        val found = findPeaks(maps, h, w, k, peakThreshold)
        val fine = if (found.isEmpty()) emptyArray() else darkRefine(maps, h, w, k, found, peakRadius)
        val f = upsample.toDouble()
        val uv = Array(found.size) { i ->
            if (upsample > 1) doubleArrayOf((fine[i][0] + 0.5) / f - 0.5, (fine[i][1] + 0.5) / f - 0.5) else fine[i]
        }
        val score = DoubleArray(found.size) { maps[(found[it].iy * w + found[it].ix) * k + found[it].k].toDouble() }
        return Peaks(found, IntArray(found.size) { found[it].k }, uv, score, maps, h, w)
    }

    /** PafCodec.decode: heatmaps [h, w, K] and pafs [h, w, 2L] -> people by descending score. */
    override fun decode(heatmaps: FloatArray, limbMaps: FloatArray): List<PafPerson> {
        val n = heatmapH * heatmapW
        val numLimbs = limbs.size
        require(heatmaps.isNotEmpty() && heatmaps.size % n == 0 && limbMaps.size == n * 2 * numLimbs) {
            "decode expects heatmaps [$heatmapH, $heatmapW, K] and pafs [$heatmapH, $heatmapW, ${2 * numLimbs}] " +
                "(heatmap_size, 2 x limbs), got ${heatmaps.size} and ${limbMaps.size} values"
        }
        val k = heatmaps.size / n
        for ((a, b) in limbs) require(max(a, b) < k) {
            "limbs use keypoint ${max(a, b)} but heatmaps have $k channels; pass the skeleton's limbs for this model"
        }
        return group(peaks(heatmaps, k), limbMaps, k, 2 * numLimbs, ::pafSample)
    }

    /** PafCodec.group, steps 3-6 on the peaks: limb candidates scored by `sample` on the limb maps
     * [h, w, channels] (pafSample, or limbMapSample for a LimbHeatmapCodec), greedy matching,
     * assembly, min_keypoints, person scores and order. */
    fun group(pk: Peaks, maps: FloatArray, k: Int, channels: Int, sample: LimbSample): List<PafPerson> {
        val numLimbs = limbs.size
        val cand = limbCandidates(pk.uv, pk.kp, maps, heatmapH, heatmapW, limbs, limbOrder(limbs, k), this, channels, sample)
        val (people, totals) = assemble(cand, pk.kp, k)
        if (minKeypoints == 1) {
            // A peak no limb joined to anything is a person of one keypoint.
            val owned = HashSet<Int>()
            for (slots in people) for (id in slots) if (id >= 0) owned.add(id)
            for (id in pk.kp.indices) if (id !in owned) {
                people.add(IntArray(k) { -1 }.also { it[pk.kp[id]] = id })
                totals.add(0.0)
            }
        }
        val codec = heatmapCodec
        class Found(val person: PafPerson, val first: Int)
        val found = ArrayList<Found>()
        people.forEachIndexed { p, slots ->
            if (slots.count { it >= 0 } < minKeypoints) return@forEachIndexed
            val kpScores = DoubleArray(k) { if (slots[it] >= 0) pk.score[slots[it]] else 0.0 }
            val rows = Array(k) { c ->
                val id = slots[c]
                if (id < 0) DoubleArray(3)
                else doubleArrayOf(codec.toInputX(pk.uv[id][0]), codec.toInputY(pk.uv[id][1]), pk.score[id])
            }
            val score = (pairwiseSum(kpScores) + totals[p]) / (k + numLimbs)
            var first = Int.MAX_VALUE
            for (id in slots) if (id >= 0) first = min(first, id)
            found.add(Found(PafPerson(rows, score, slots), first))
        }
        // np.lexsort((first, -scores)): descending score, then the lowest first peak id.
        found.sortWith(Comparator { x, y ->
            if (x.person.score != y.person.score) y.person.score.compareTo(x.person.score) else x.first - y.first
        })
        return found.map { it.person }
    }

    companion object {
        /** PafCodec.to_dict() (the metadata's codec of a bottom-up model); absent settings take the
         *  defaults, an unknown key raises (as PafCodec.from_dict does). */
        fun fromJson(o: JsonObject): PafCodec {
            val (input, grid) = o.codecSizes("paf", " (a bottom-up model)")
            val d = PafCodec(1, 1, 3, 3, emptyList())
            o.onlyCodecSettings(d.settings().keys, "kpose.codecs.paf.PafCodec")
            fun num(key: String, def: Double) = if (o.has(key)) o.double(key) else def
            fun int(key: String, def: Int) = if (o.has(key)) o.int(key) else def
            return o.build { PafCodec(input[0], input[1], grid[0], grid[1], o.pairs("limbs"), num("limb_width", d.limbWidth),
                num("sigma", d.sigma), if (o.has("dark_radius")) o.intOrNull("dark_radius") else d.darkRadius,
                num("peak_threshold", d.peakThreshold), num("smooth_sigma", d.smoothSigma), int("upsample", d.upsample),
                int("num_samples", d.numSamples), num("paf_threshold", d.pafThreshold),
                num("min_sample_fraction", d.minSampleFraction), num("max_limb_fraction", d.maxLimbFraction),
                int("min_keypoints", d.minKeypoints)) }
        }
    }
}

/** gaussian_kernel: normalised 1-D Gaussian taps, radius ceil(3 sigma) (at least 1). */
fun gaussianKernel(sigma: Double): DoubleArray {
    val r = max(1, ceil(3.0 * sigma).toInt())
    val k = DoubleArray(2 * r + 1) { val x = (it - r).toDouble(); exp(-(x * x) / (2.0 * sigma * sigma)) }
    val total = pairwiseSum(k)
    for (i in k.indices) k[i] /= total
    return k
}

/** smooth_maps: separable Gaussian blur of [h, w, C] maps, edges replicated (a blob at the
 * border is not pulled inward), accumulated in float64 tap by tap, returned as float32. */
fun smoothMaps(maps: FloatArray, h: Int, w: Int, c: Int, sigma: Double): FloatArray {
    if (!(sigma > 0)) return maps
    val k = gaussianKernel(sigma)
    val r = (k.size - 1) / 2
    val rows = DoubleArray(h * w * c)
    for (y in 0 until h) for (i in 0 until w * c) {
        var acc = k[0] * maps[(y - r).coerceIn(0, h - 1) * w * c + i]
        for (j in 1..2 * r) acc += k[j] * maps[(y - r + j).coerceIn(0, h - 1) * w * c + i]
        rows[y * w * c + i] = acc
    }
    val out = FloatArray(h * w * c)
    for (y in 0 until h) for (x in 0 until w) for (ch in 0 until c) {
        var acc = k[0] * rows[(y * w + (x - r).coerceIn(0, w - 1)) * c + ch]
        for (j in 1..2 * r) acc += k[j] * rows[(y * w + (x - r + j).coerceIn(0, w - 1)) * c + ch]
        out[(y * w + x) * c + ch] = acc.toFloat()
    }
    return out
}

/** upsample_maps: bilinear x factor, pixel centres aligned (fine Y at coarse (Y + 0.5) / f - 0.5,
 * edge values held), float32 arithmetic as NumPy's, columns first, then rows. */
fun upsampleMaps(maps: FloatArray, h: Int, w: Int, c: Int, factor: Int): FloatArray {
    if (factor == 1) return maps
    class Lerp(val lo: Int, val hi: Int, val t: Float, val s: Float)
    fun weights(n: Int) = List(n * factor) {
        val src = (it + 0.5) / factor - 0.5
        val i0 = floor(src)
        val t = (src - i0).toFloat()
        Lerp(i0.toInt().coerceIn(0, n - 1), (i0.toInt() + 1).coerceIn(0, n - 1), t, 1f - t)
    }
    val bigW = w * factor
    val wide = FloatArray(h * bigW * c)
    weights(w).forEachIndexed { x, l ->
        for (y in 0 until h) for (ch in 0 until c) {
            wide[(y * bigW + x) * c + ch] = maps[(y * w + l.lo) * c + ch] * l.s + maps[(y * w + l.hi) * c + ch] * l.t
        }
    }
    val row = bigW * c
    val out = FloatArray(h * factor * row)
    weights(h).forEachIndexed { y, l ->
        for (i in 0 until row) out[y * row + i] = wide[l.lo * row + i] * l.s + wide[l.hi * row + i] * l.t
    }
    return out
}

/** find_peaks: 3x3 NMS on [h, w, K], sorted by (k, iy, ix): >= threshold (compared in float32,
 * as NumPy compares a float32 map with a Python float), >= every neighbour and > every
 * neighbour earlier in raster order, so a plateau yields one peak. NaN is never a peak. */
fun findPeaks(hm: FloatArray, h: Int, w: Int, k: Int, threshold: Double): List<Peak> {
    val thr = threshold.toFloat()
    val out = ArrayList<Peak>()
    for (c in 0 until k) for (y in 0 until h) for (x in 0 until w) {
        val v = hm[(y * w + x) * k + c]
        if (!(v >= thr)) continue
        var keep = true
        loop@ for (dy in -1..1) for (dx in -1..1) {
            val yy = y + dy
            val xx = x + dx
            if ((dy == 0 && dx == 0) || yy < 0 || yy >= h || xx < 0 || xx >= w) continue
            val nb = hm[(yy * w + xx) * k + c]
            val earlier = dy < 0 || (dy == 0 && dx < 0)
            if (if (earlier) !(v > nb) else !(v >= nb)) { keep = false; break@loop }
        }
        if (keep) out.add(Peak(c, y, x))
    }
    return out
}

/** limb_order: limbs breadth-first from the keypoint with most limbs (lowest index on ties);
 * separate components one after the other, best-connected first. */
fun limbOrder(limbs: List<Pair<Int, Int>>, numKeypoints: Int): IntArray {
    val adjacency = List(numKeypoints) { ArrayList<Pair<Int, Int>>() }
    limbs.forEachIndexed { i, (a, b) -> adjacency[a].add(Pair(b, i)); adjacency[b].add(Pair(a, i)) }
    val roots = (0 until numKeypoints).sortedWith(compareBy({ -adjacency[it].size }, { it }))
    val order = ArrayList<Int>()
    val seenLimb = HashSet<Int>()
    val seenKp = HashSet<Int>()
    for (root in roots) {
        if (root in seenKp || adjacency[root].isEmpty()) continue
        val queue = ArrayDeque<Int>()
        queue.add(root)
        seenKp.add(root)
        while (queue.isNotEmpty()) {
            for ((other, i) in adjacency[queue.removeFirst()]) {
                if (seenLimb.add(i)) order.add(i)
                if (seenKp.add(other)) queue.add(other)
            }
        }
    }
    return order.toIntArray()
}

/** limb_candidates: every (a-peak, b-peak) pair of each limb scored by the mean over
 * num_samples points of the segment (nearest pixel) of `sample` (pafSample: the field . unit
 * vector; limbMapSample: the limb heatmap) on the maps [h, w, channels], plus the distance
 * prior min(0, max_limb_fraction * h / length - 1); kept when > 0 with at least
 * min_sample_fraction of the samples above paf_threshold. Sorted by limb position, then
 * descending score, then peak ids. */
fun limbCandidates(uv: Array<DoubleArray>, kp: IntArray, maps: FloatArray, h: Int, w: Int, limbs: List<Pair<Int, Int>>,
                   order: IntArray, codec: PafCodec, channels: Int = 2 * limbs.size,
                   sample: LimbSample = ::pafSample): List<Candidate> {
    val n = codec.numSamples
    val step = 1.0 / (n - 1)
    val t = DoubleArray(n) { if (it == n - 1) 1.0 else it * step }  // np.linspace(0, 1, n)
    var need = -1
    for (c in 0..n) if (need < 0 && c.toDouble() / n >= codec.minSampleFraction) need = c
    if (need < 0) return emptyList()
    val misses = n - need
    val byKp = HashMap<Int, ArrayList<Int>>()
    kp.forEachIndexed { id, k -> byKp.getOrPut(k) { ArrayList() }.add(id) }
    val out = ArrayList<Candidate>()
    order.forEachIndexed { p, li ->
        val (a, b) = limbs[li]
        for (ia in byKp[a] ?: emptyList<Int>()) for (ib in byKp[b] ?: emptyList<Int>()) {
            val ax = uv[ia][0]
            val ay = uv[ia][1]
            val dx = uv[ib][0] - ax
            val dy = uv[ib][1] - ay
            val length = sqrt(dx * dx + dy * dy)
            if (!(length > 1e-6)) continue  // a point has no direction
            val denom = max(length, 1e-9)
            val ux = dx / denom
            val uy = dy / denom
            var sum = 0.0
            var above = 0
            var failed = 0
            var s = 0
            // A pair that already failed more samples than allowed cannot pass: stop early.
            while (s < n && failed <= misses) {
                val ix = floor(ax + t[s] * dx + 0.5).coerceIn(0.0, w - 1.0).toInt()
                val iy = floor(ay + t[s] * dy + 0.5).coerceIn(0.0, h - 1.0).toInt()
                val d = sample(maps, (iy * w + ix) * channels, li, ux, uy)
                sum = if (s == 0) d else sum + d  // NumPy sums the samples in order
                if (d > codec.pafThreshold) above++ else failed++
                s++
            }
            if (failed > misses) continue
            var score = sum / n
            if (codec.maxLimbFraction > 0) score += min(0.0, codec.maxLimbFraction * h / denom - 1.0)
            if (score > 0 && above.toDouble() / n >= codec.minSampleFraction) out.add(Candidate(p, ia, ib, score))
        }
    }
    out.sortWith(Comparator { x, y ->
        when {
            x.p != y.p -> x.p - y.p
            x.score != y.score -> y.score.compareTo(x.score)
            x.a != y.a -> x.a - y.a
            else -> x.b - y.b
        }
    })
    return out
}

/** assemble: greedy matching per limb (each peak once per limb), then people: a match extends
 * the person owning one of its peaks (unless it has another peak of the other keypoint),
 * starts a person, merges two people whose slots do not collide, or closes a cycle.
 * Returns the people's slots ([K] peak ids, -1 empty) and their summed limb scores. */
fun assemble(candidates: List<Candidate>, kp: IntArray, k: Int): Pair<MutableList<IntArray>, MutableList<Double>> {
    val owner = IntArray(kp.size) { -1 }
    val people = ArrayList<IntArray?>()
    val totals = ArrayList<Double>()
    var current = -1
    val used = HashSet<Int>()
    for (cand in candidates) {
        if (cand.p != current) { current = cand.p; used.clear() }
        val pa = cand.a
        val pb = cand.b
        if (pa in used || pb in used) continue
        used.add(pa)
        used.add(pb)
        val a = kp[pa]
        val b = kp[pb]
        var oa = owner[pa]
        val ob = owner[pb]
        if (oa < 0 && ob < 0) {
            people.add(IntArray(k) { -1 })
            totals.add(0.0)
            oa = people.size - 1
        } else if (oa >= 0 && ob >= 0) {
            if (oa != ob) {
                val sa = people[oa]!!
                val sb = people[ob]!!
                if ((0 until k).any { sa[it] >= 0 && sb[it] >= 0 }) continue  // two different people
                for (c in 0 until k) if (sb[c] >= 0) { sa[c] = sb[c]; owner[sb[c]] = oa }
                totals[oa] = totals[oa] + totals[ob]
                people[ob] = null
            }
        } else if ((if (oa < 0) people[ob]!![a] else people[oa]!![b]) >= 0) {
            continue  // the owner already has another peak of the other keypoint
        } else if (oa < 0) {
            oa = ob
        }
        people[oa]!![a] = pa
        people[oa]!![b] = pb
        owner[pa] = oa
        owner[pb] = oa
        totals[oa] = totals[oa] + cand.score
    }
    val kept = people.indices.filter { people[it] != null }
    return Pair(kept.map { people[it]!! }.toMutableList(), kept.map { totals[it] }.toMutableList())
}

/** PoseModel.predict for a bottom-up model after the network: heatmaps and the codec's limb
 * maps (pafs, or limb heatmaps) of the input made with imageToInput (Affine.fit) -> people as
 * (x, y, score) [K] in image pixels, with their scores. Input coordinates are rounded to
 * float32 first, as the codec's decode returns them; a keypoint not found stays (0, 0, 0). */
fun decodeBottomUp(heatmaps: FloatArray, limbMaps: FloatArray, codec: BottomUpCodec,
                   imageToInput: Affine): List<Pair<Array<DoubleArray>, Double>> {
    val inv = imageToInput.inverse()
    return codec.decode(heatmaps, limbMaps).map { person ->
        val rows = person.keypoints.map { (x, y, s) ->
            val xf = x.toFloat().toDouble()
            val yf = y.toFloat().toDouble()
            if (s.toFloat() > 0) doubleArrayOf(inv.mapX(xf, yf), inv.mapY(xf, yf), s.toFloat().toDouble())
            else DoubleArray(3)
        }.toTypedArray()
        Pair(rows, person.score)
    }
}
