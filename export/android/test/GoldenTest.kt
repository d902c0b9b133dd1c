// The Kotlin decoders, tracker and metadata reader against the golden vectors that kpose's
// Python reference writes (web_demo/tools/write_golden.py; the same files the JS ports are
// tested against): heatmap + DARK decode, PAF grouping step by step, crop geometry and the
// top-down / bottom-up pipelines, tracking traces (identical ids, smoothed keypoints within
// 1e-4 px), top-down video (PersonBoxesTest.kt) and the exported metadata. Prints the largest
// differences; exits 1 on a mismatch.
//
//     kotlinc export/android/*.kt export/android/test/*.kt export/android/test/stubs/*.kt \
//         -include-runtime -d golden.jar && java -jar golden.jar web_demo/test/golden
// (tests/test_android_kotlin.py does this; the stubs let the Android loader compile too.)
import dev.kpose.*
import java.io.ByteArrayOutputStream
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.util.Base64
import java.util.zip.Inflater
import kotlin.math.abs
import kotlin.system.exitProcess

const val TOL = 1e-4  // px: the ports' contract (float64 rounding gives ~1e-12)

class Checks {
    private val max = LinkedHashMap<String, Double>()
    var failures = 0
    var checks = 0

    fun ok(cond: Boolean, what: () -> String) {
        checks++
        if (!cond) {
            failures++
            if (failures <= 30) println("MISMATCH ${what()}")
        }
    }

    fun close(label: String, a: Double, b: Double, tol: Double = TOL, what: () -> String) {
        val d = abs(a - b)
        if (!(d <= (max[label] ?: -1.0))) max[label] = if (d.isNaN()) Double.POSITIVE_INFINITY else d
        ok(d <= tol) { "${what()}: $a vs $b" }
    }

    fun report(section: String) {
        println("# max |Kotlin - Python| $section: " +
            (if (max.isEmpty()) "-" else max.entries.joinToString(", ") { "${it.key} ${"%.2e".format(it.value)}" }))
        max.clear()
    }
}

val c = Checks()

fun load(dir: File, name: String) = Json.parseObject(File(dir, "$name.json").readText(), "$name.json")

/** {dtype: "float32", shape, zlib_b64} -> FloatArray (little-endian). */
fun floats(o: JsonObject): FloatArray {
    if (o.string("dtype") != "float32") o.fail("dtype", "is not float32")
    val inflater = Inflater()
    inflater.setInput(Base64.getDecoder().decode(o.string("zlib_b64")))
    val bytes = ByteArrayOutputStream()
    val buf = ByteArray(1 shl 16)
    while (!inflater.finished()) bytes.write(buf, 0, inflater.inflate(buf))
    val fb = ByteBuffer.wrap(bytes.toByteArray()).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
    val out = FloatArray(fb.remaining()).also { fb.get(it) }
    val n = o.ints("shape").fold(1) { a, b -> a * b }
    if (out.size != n) o.fail("zlib_b64", "holds ${out.size} values, shape says $n")
    return out
}

@Suppress("UNCHECKED_CAST")
fun rows(v: Any?): List<DoubleArray> = (v as List<List<Double>>).map { it.toDoubleArray() }

fun intRows(v: Any?): List<List<Int>> = rows(v).map { r -> r.map { it.toInt() } }

fun num(v: Any?): Double = when (v) { is Double -> v; is Int -> v.toDouble(); else -> Double.NaN }

/** Kotlin settings against Python's defaults (same names, values, null for None). */
fun sameSettings(what: String, mine: Map<String, Any?>, python: JsonObject) {
    c.ok(mine.keys == python.map.keys - "limbs" - "input_size" - "heatmap_size" - "type") {
        "$what: settings ${mine.keys} vs Python's ${python.map.keys}"
    }
    for ((k, v) in mine) {
        val p = python.map[k]
        val same = if (v is Number || p is Number) num(v?.let { (it as Number).toDouble() }) == num(p) else v == p
        c.ok(same) { "$what: default $k is $v in Kotlin, $p in Python" }
    }
}

fun heatmap(dir: File) {
    for (case in load(dir, "heatmap").objects("cases")) {
        val name = case.string("name")
        val codec = HeatmapCodec.fromJson(case.obj("codec"))
        val hm = floats(case.obj("heatmaps"))
        val exp = case.obj("expected")
        val want = rows(exp.get("keypoints"))
        val plain = rows(exp.get("keypoints_none"))
        codec.decode(hm, dark = false).forEachIndexed { k, (x, y, s) ->
            // Python rounds its result to float32.
            c.ok(x.toFloat().toDouble() == plain[k][0] && y.toFloat().toDouble() == plain[k][1] && s == plain[k][2]) {
                "heatmap $name keypoint $k (argmax): ($x, $y, $s) vs ${plain[k].toList()}"
            }
        }
        codec.decode(hm).forEachIndexed { k, (x, y, s) ->
            c.close("x", x, want[k][0]) { "heatmap $name keypoint $k x" }
            c.close("y", y, want[k][1]) { "heatmap $name keypoint $k y" }
            c.ok(s == want[k][2]) { "heatmap $name keypoint $k score $s vs ${want[k][2]}" }
        }
    }
    c.report("heatmap decode (DARK)")
}

fun paf(dir: File) {
    val golden = load(dir, "paf")
    sameSettings("PafCodec", PafCodec(1, 1, 3, 3, emptyList()).settings(), golden.obj("defaults"))
    for (lo in golden.objects("limb_orders")) {
        val got = limbOrder(lo.pairs("limbs"), lo.int("num_keypoints")).toList()
        c.ok(got == lo.ints("expected").toList()) { "limb order of ${lo.get("limbs")}: $got" }
    }
    for (case in golden.objects("cases")) {
        val codec = PafCodec.fromJson(case.obj("codec"))
        groupingCase("PAF ${case.string("name")}", case, codec, codec, floats(case.obj("pafs")), ::pafSample)
    }
    // PafCodec.from_dict refuses a key it does not know; so does the reader.
    val codec = golden.objects("cases").first().obj("codec")
    val err = try {
        PafCodec.fromJson(JsonObject(codec.map + ("limb_threshold" to 0.3), "m.json", "codec"))
        "no error"
    } catch (e: IllegalArgumentException) {
        e.message ?: ""
    }
    c.ok(err.startsWith("m.json: field 'codec.limb_threshold' is not a setting of the codec (kpose.codecs.paf.PafCodec)")) {
        "misspelt setting: '$err'"
    }
    c.report("PAF grouping")
}

/** One golden decode of the PAF grouping, step by step (web_demo/tools/golden_common.py's
 * grouping_case): processed maps, peaks, limb order, candidates scored by `sample` on the limb
 * maps, then codec.decode's people. grouping: the PafCodec whose steps codec.decode runs (the
 * codec itself, or a LimbHeatmapCodec's grouping). */
fun groupingCase(name: String, case: JsonObject, codec: BottomUpCodec, grouping: PafCodec, maps: FloatArray,
                 sample: LimbSample) {
    val hm = floats(case.obj("heatmaps"))
    val k = case.obj("heatmaps").ints("shape")[2]
    val exp = case.obj("expected")
    val pk = grouping.peaks(hm, k)
    if (!exp.isNull("processed")) {
        // Blur taps come from exp(), which may round differently from NumPy's in the last bit.
        val every = exp.obj("processed").int("every")
        floats(exp.obj("processed").obj("values")).forEachIndexed { i, v ->
            val tol = 1e-6 * maxOf(1.0, abs(v.toDouble()))
            c.close("processed maps", pk.processed[i * every].toDouble(), v.toDouble(), tol) {
                "$name processed value ${i * every}"
            }
        }
    }
    val peaks = pk.found.map { listOf(it.k, it.iy, it.ix) }
    c.ok(peaks == intRows(exp.get("peaks"))) { "$name: peaks $peaks" }
    if (peaks.size == intRows(exp.get("peaks")).size) {
        val uv = rows(exp.get("peak_uv"))
        val score = exp.doubles("peak_score")
        pk.uv.forEachIndexed { i, (u, v) ->
            c.close("peak u", u, uv[i][0]) { "$name peak $i u" }
            c.close("peak v", v, uv[i][1]) { "$name peak $i v" }
            c.ok(pk.score[i] == score[i]) { "$name peak $i score ${pk.score[i]} vs ${score[i]}" }
        }
    }
    val order = limbOrder(grouping.limbs, k)
    c.ok(order.toList() == exp.ints("limb_order").toList()) { "$name: limb order ${order.toList()}" }
    val cand = limbCandidates(pk.uv, pk.kp, maps, grouping.heatmapH, grouping.heatmapW, grouping.limbs, order, grouping,
        codec.limbChannels, sample)
    val wc = exp.obj("candidates")
    val (pos, a, b) = listOf(wc.ints("limb_position"), wc.ints("a"), wc.ints("b"))
    val wantIds = pos.indices.map { listOf(pos[it], a[it], b[it]) }
    c.ok(cand.map { listOf(it.p, it.a, it.b) } == wantIds) {
        "$name: ${cand.size} candidates differ from Python's ${wantIds.size}"
    }
    val wantScore = wc.doubles("score")
    if (cand.size == wantIds.size) {
        cand.forEachIndexed { i, cd -> c.close("limb score", cd.score, wantScore[i]) { "$name candidate $i" } }
    }
    samePeople(name, codec.decode(hm, maps), exp.objects("people"))
}

/** Decoded people against Python's: count, order, scores, keypoints (missing ones (0, 0, 0)). */
fun samePeople(name: String, people: List<PafPerson>, want: List<JsonObject>) {
    c.ok(people.size == want.size) { "$name: ${people.size} people, Python ${want.size}" }
    people.zip(want).forEachIndexed { p, (person, w) ->
        c.close("person score", person.score, w.double("score")) { "$name person $p score" }
        val wk = rows(w.get("keypoints"))
        person.keypoints.forEachIndexed { j, (x, y, s) ->
            c.ok(s == wk[j][2] && (person.peaks[j] < 0) == (wk[j][2] == 0.0)) {
                "$name person $p keypoint $j score $s vs ${wk[j][2]}"
            }
            c.close("x", x, wk[j][0]) { "$name person $p keypoint $j x" }
            c.close("y", y, wk[j][1]) { "$name person $p keypoint $j y" }
        }
    }
}

/** close() on each pair of values, labelled by index. */
fun closeAll(label: String, got: DoubleArray, want: DoubleArray, tol: Double = TOL, what: (Int) -> String) {
    c.ok(got.size == want.size) { "${what(-1)}: ${got.size} values, Python ${want.size}" }
    for (i in 0 until minOf(got.size, want.size)) c.close(label, got[i], want[i], tol) { what(i) }
}

fun Affine.values() = doubleArrayOf(a00, a01, tx, a10, a11, ty)

fun flat(v: Any?): DoubleArray = rows(v).flatMap { it.toList() }.toDoubleArray()

fun geometry(dir: File) {
    val golden = load(dir, "geometry")
    for (s in golden.objects("savgol")) {
        val (ry, rx) = listOf(s.int("ry"), s.int("rx"))
        val got = savgolQuadratic2d(ry, rx).flatMap { it.toList() }.toDoubleArray()
        closeAll("savgol (numpy pinv)", got, flat(s.get("expected")), 1e-14) { "savgol $ry,$rx [$it]" }
    }
    for (a in golden.objects("affine")) {
        val e = a.obj("expected")
        val size = a.ints("output_size")
        val cs = Affine.centerScale(a.doubles("box"), a.double("aspect_ratio"), a.double("padding"))
        closeAll("center, scale", cs, e.doubles("center") + e.doubles("scale")) { "affine center/scale $it" }
        val m = Affine.crop(cs[0], cs[1], cs[2], cs[3], size[0], size[1], a.double("rotation"), a.bool("flip"))
        closeAll("matrix", m.values(), flat(e.get("matrix"))) { "affine matrix [$it]" }
        closeAll("inverse", m.inverse().values(), flat(e.get("inverse"))) { "affine inverse [$it]" }
        val pts = rows(a.get("points"))
        for ((label, mat) in listOf("mapped" to m, "unmapped" to m.inverse())) {
            val got = pts.flatMap { (x, y) -> listOf(mat.mapX(x, y), mat.mapY(x, y)) }.toDoubleArray()
            closeAll(label, got, flat(e.get(label))) { "affine $label [$it]" }
        }
    }
    for (f in golden.objects("fit")) {
        val (ih, iw) = f.ints("image_size")
        val (h, w) = f.ints("input_size")
        closeAll("fit matrix", Affine.fit(ih, iw, h, w).values(), flat(f.get("expected"))) { "fit $ih x $iw [$it]" }
    }
    for (s in golden.objects("instance_scores")) {
        val exp = s.doubles("expected")
        (s.get("keypoints") as List<*>).forEachIndexed { i, person ->
            val got = instanceScore(rows(person).map { it[2] }.toDoubleArray())
            c.ok(got == exp[i]) { "instance score $i: $got vs ${exp[i]}" }
        }
    }
    for (case in golden.objects("pose")) {
        val name = "top-down ${case.string("name")}"
        val codec = HeatmapCodec.fromJson(case.obj("codec"))
        val (imgH, imgW) = case.ints("image_size")
        // predict: without boxes the whole image, unpadded; boxes at the default crop padding.
        val whole = case.isNull("boxes")
        val boxes = if (!whole) rows(case.get("boxes")) else listOf(doubleArrayOf(0.0, 0.0, imgW.toDouble(), imgH.toDouble()))
        val outs = case.objects("heatmaps").map { floats(it) }
        val flipIndex = case.ints("flip_index")
        val n = codec.heatmapH * codec.heatmapW * flipIndex.size
        val exp = case.obj("expected")
        boxes.forEachIndexed { b, box ->
            var hm = outs[0].copyOfRange(b * n, (b + 1) * n)
            if (case.bool("flip_test")) {
                hm = flipAverage(hm, outs[1].copyOfRange(b * n, (b + 1) * n), codec.heatmapH, codec.heatmapW, flipIndex)
            }
            val kps = decodeTopDown(hm, codec, Affine.forBox(box, codec.inputH, codec.inputW, if (whole) 1.0 else 1.25))
            val want = flat((exp.get("keypoints") as List<*>)[b])
            val got = kps.flatMap { it.toList() }.toDoubleArray()
            closeAll("top-down keypoint", got, want) { "$name box $b value $it" }
            val score = instanceScore(DoubleArray(kps.size) { kps[it][2] })
            c.close("top-down score", score, exp.doubles("scores")[b]) { "$name box $b score" }
        }
    }
    for (case in golden.objects("bottom_up")) {
        val name = "bottom-up ${case.string("name")}"
        val codec = PafCodec.fromJson(case.obj("codec"))
        val (imgH, imgW) = case.ints("image_size")
        val fit = Affine.fit(imgH, imgW, codec.inputH, codec.inputW)
        val people = decodeBottomUp(floats(case.obj("heatmaps")), floats(case.obj("pafs")), codec, fit)
        val exp = case.obj("expected")
        val wantKps = (exp.get("keypoints") as List<*>).map { flat(it) }
        val wantBoxes = rows(exp.get("boxes"))
        c.ok(people.size == wantKps.size) { "$name: ${people.size} people, Python ${wantKps.size}" }
        people.zip(wantKps).forEachIndexed { p, (person, want) ->
            c.close("bottom-up score", person.second, exp.doubles("scores")[p]) { "$name person $p score" }
            val got = person.first.flatMap { it.toList() }.toDoubleArray()
            closeAll("bottom-up keypoint", got, want) { "$name person $p value $it" }
            // Python's box is the extent of its float32 keypoints.
            val box = keypointExtent(person.first)
            for (i in 0 until 4) {
                val v = wantBoxes[p][i]
                c.close("bottom-up box (float32)", box[i].toDouble(), v, 1e-4 * maxOf(1.0, abs(v))) { "$name person $p box $i" }
            }
        }
    }
    c.report("geometry and pipelines")
}

fun trackerConfig(o: JsonObject) = TrackerConfig(
    o.string("similarity"), o.double("min_pose_score"), o.double("min_similarity"), o.int("max_tracks"),
    o.double("max_age_ms"), o.double("keypoint_threshold"), o.int("min_keypoints"), o.bool("smoothing"),
    o.double("min_cutoff"), o.double("beta"), o.double("d_cutoff"), o.double("outlier"), o.double("score_alpha"))

/** A frame's poses: keypoints [N, K, 3] float32, scores [N]. */
fun framePoses(f: JsonObject): List<Pose> {
    val (n, k) = f.obj("keypoints").ints("shape")
    val kps = floats(f.obj("keypoints"))
    val scores = f.doubles("scores")
    return List(n) { i ->
        Pose(List(k) { j -> val at = (i * k + j) * 3; Keypoint("k$j", kps[at], kps[at + 1], kps[at + 2]) }, scores[i])
    }
}

fun tracking(dir: File) {
    val golden = load(dir, "tracking")
    sameSettings("TrackerConfig", TrackerConfig().settings(), golden.obj("defaults"))
    val sigmas = golden.doubles("sigmas")
    val frames = golden.objects("frames").map { Pair(it.double("timestamp_ms"), framePoses(it)) }
    for (case in golden.objects("cases")) {
        val name = "tracking ${case.string("name")}"
        val config = trackerConfig(case.obj("config"))
        val tracker = Tracker(if (config.similarity == "keypoint") sigmas else null, config)
        case.objects("expected").forEachIndexed { f, exp ->
            val out = tracker.update(frames[f].second, frames[f].first)
            val ids = exp.list("ids").map { it?.let { v -> (v as Double).toInt() } }
            c.ok(out.map { it.trackId } == ids) { "$name frame $f: ids ${out.map { it.trackId }} vs Python $ids" }
            val want = floats(exp.obj("keypoints"))
            out.forEachIndexed { i, p ->
                p.keypoints.forEachIndexed { j, kp ->
                    val at = (i * p.keypoints.size + j) * 3
                    val where = "$name frame $f pose $i keypoint $j"
                    c.close("xy (px)", kp.x.toDouble(), want[at].toDouble()) { "$where x" }
                    c.close("xy (px)", kp.y.toDouble(), want[at + 1].toDouble()) { "$where y" }
                    c.close("score", kp.score.toDouble(), want[at + 2].toDouble(), 1e-6) { "$where score" }
                }
            }
        }
    }
    c.report("tracking traces")
}

fun metadata(dir: File) {
    val golden = load(dir, "metadata")
    val heatmapCases = load(dir, "heatmap").objects("cases").associateBy { it.string("name") }
    val limbCases = load(dir, "limb_heatmap").objects("cases").associateBy { it.string("name") }
    for (m in golden.objects("models")) {
        val name = "metadata ${m.string("name")}"
        val meta = KposeMetadata.fromJson(m.obj("metadata"))
        val sk = meta.skeleton
        val e = m.obj("expected")
        c.ok(meta.task == e.string("task") && sk.keypoints == e.strings("keypoints")) { "$name: ${meta.task}, ${sk.keypoints}" }
        c.ok(sk.limbs == e.pairs("limbs") && sk.flipPairs == e.pairs("flip_pairs")) { "$name: limbs / flip pairs" }
        val sigmas = if (e.isNull("sigmas")) null else e.doubles("sigmas").toList()
        c.ok(sk.sigmas?.toList() == sigmas) { "$name: sigmas ${sk.sigmas?.toList()}" }
        c.ok(meta.cropPadding == e.double("crop_padding")) { "$name: crop padding ${meta.cropPadding}" }
        c.ok(meta.outputNames == e.strings("outputs")) { "$name: outputs ${meta.outputNames}" }
        c.ok((meta.bottomUpCodec?.limbs ?: emptyList()) == e.pairs("codec_limbs")) { "$name: codec limbs" }
        // codec.type picked the decoder, and with it the limb maps output it reads.
        val type = when (meta.bottomUpCodec) { null -> "heatmap"; is PafCodec -> "paf"; is LimbHeatmapCodec -> "limb_heatmap"; else -> "?" }
        c.ok(type == e.string("codec_type")) { "$name: codec type $type" }
        val channels = listOf(sk.numKeypoints) + listOfNotNull(meta.bottomUpCodec?.limbChannels)
        c.ok(channels == e.ints("output_channels").toList()) { "$name: output channels $channels" }
        val bottomUp = meta.bottomUpCodec
        if (e.has("decodes") && bottomUp != null) {
            // A golden case's maps decoded by the codec the metadata describes, and through the
            // bottom-up pipeline with an identity fit (an image of the input's size).
            val case = limbCases.getValue(e.string("decodes"))
            val hm = floats(case.obj("heatmaps"))
            val maps = floats(case.obj("limb_maps"))
            val want = case.obj("expected").objects("people")
            samePeople(name, bottomUp.decode(hm, maps), want)
            val input = meta.heatmapCodec
            val fit = Affine.fit(input.inputH, input.inputW, input.inputH, input.inputW)
            val people = decodeBottomUp(hm, maps, bottomUp, fit)
            c.ok(people.size == want.size) { "$name: pipeline found ${people.size} people, Python ${want.size}" }
            people.zip(want).forEachIndexed { p, (person, w) ->
                val got = person.first.flatMap { it.toList() }.toDoubleArray()
                val wk = flat(w.get("keypoints")).map { it.toFloat().toDouble() }.toDoubleArray()
                closeAll("metadata-driven bottom-up decode (float32)", got, wk, 1e-9 * input.inputW) { "$name person $p value $it" }
            }
        } else if (e.has("decodes")) {
            // The golden heatmaps of a model with this skeleton, decoded with what the metadata says.
            val case = heatmapCases.getValue(e.string("decodes"))
            val want = rows(case.obj("expected").get("keypoints"))
            val pose = toPose(meta.heatmapCodec.decode(floats(case.obj("heatmaps"))), sk.keypoints, 0.0)
            c.ok(pose.keypoints.map { it.name } == e.strings("keypoints")) { "$name: decoded names" }
            pose.keypoints.forEachIndexed { j, kp ->
                c.close("metadata-driven decode (float32)", kp.x.toDouble(), want[j][0]) { "$name keypoint $j x" }
            }
        }
    }
    // Broken metadata: the error names the file, the field and what to do.
    val broken = mapOf(
        """{"format": "kpose", "schema_version": 2}""" to "'schema_version' is 2; this reader knows 1",
        golden.string("broken_k") to "field 'outputs[0].shape'",
        golden.string("broken_k").replace("\"heatmap_size\": [64, 48]", "\"heatmap_size\": [2, 2]")
            to "'codec': heatmap_size [2, 2] is too small",
        golden.string("unknown_codec_type") to "field 'codec.type' is 'limb_heatmap_v2'; this reader decodes " +
            "bottom-up models with codec type paf or limb_heatmap",
        golden.string("unknown_codec_type").replace("\"limb_heatmap_v2\"", "\"limb_heatmap\"")
            .replace("\"name\": \"limb_heatmaps\"", "\"name\": \"pafs\"") to "field 'outputs[1].name' is 'pafs'")
    for ((text, words) in broken) {
        val err = try {
            KposeMetadata.parse(text, "model.tflite:kpose.json")
            "no error"
        } catch (e: IllegalArgumentException) {
            e.message ?: ""
        }
        c.ok(err.startsWith("model.tflite:kpose.json: ") && words in err) { "broken metadata: '$err' lacks '$words'" }
    }
    c.report("metadata")
}

fun main(args: Array<String>) {
    val dir = File(if (args.isNotEmpty()) args[0] else "web_demo/test/golden")
    if (!File(dir, "heatmap.json").exists()) {
        println("no golden vectors in $dir (web_demo/test/golden; pass the folder as the first argument)")
        exitProcess(2)
    }
    heatmap(dir)
    paf(dir)
    limbHeatmap(dir)  // LimbHeatmapTest.kt
    geometry(dir)
    tracking(dir)
    personBoxes(dir)  // PersonBoxesTest.kt
    metadata(dir)
    println("# ${c.checks} checks, ${c.failures} mismatches")
    exitProcess(if (c.failures == 0) 0 else 1)
}
