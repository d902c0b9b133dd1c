// Top-down video against the golden vectors of kpose's Python reference
// (web_demo/test/golden/person_boxes.json, the file the JS port is tested against):
// kpose/person_boxes.py's constants and pose_boxes, Tracker.distinct, and PoseModel.track's
// trace run through trackTopDown + topDownPoses (KposePose.track's code) with a network that
// replays Python's outputs call by call: the same crop boxes and number of network calls, ids,
// keypoints within 1e-4 px. Called from GoldenTest.kt's main.
import dev.kpose.*
import java.io.File

/** Golden poses [{keypoints: [[x, y, s]], score?, box?}] as Kotlin Poses (float32, as Python's). */
fun goldenPoses(list: List<JsonObject>): List<Pose> = list.map { p ->
    val kps = rows(p.get("keypoints")).mapIndexed { j, (x, y, s) -> Keypoint("k$j", x.toFloat(), y.toFloat(), s.toFloat()) }
    Pose(kps, if (p.has("score")) p.double("score") else 0.0,
         if (p.has("box")) p.doubles("box").let { b -> FloatArray(4) { b[it].toFloat() } } else null)
}

fun closeBoxes(what: String, got: List<DoubleArray>, want: List<DoubleArray>) {
    c.ok(got.size == want.size) { "$what: ${got.size} boxes, Python ${want.size}" }
    got.zip(want).forEachIndexed { i, (g, w) -> closeAll("box (px)", g, w) { "$what box $i [$it]" } }
}

fun personBoxes(dir: File) {
    val golden = load(dir, "person_boxes")
    val constants = golden.obj("constants")
    val mine = mapOf("BOX_MARGIN" to BOX_MARGIN, "KEEP_SIZE" to KEEP_SIZE, "DUPLICATE_SIMILARITY" to DUPLICATE_SIMILARITY)
    c.ok(mine.keys == constants.map.keys) { "person box constants ${mine.keys} vs Python's ${constants.map.keys}" }
    for ((k, v) in mine) c.ok(v == num(constants.map[k])) { "$k is $v in Kotlin, ${constants.map[k]} in Python" }

    for (case in golden.objects("pose_boxes")) {
        val name = "poseBoxes ${case.string("name")}"
        val poses = goldenPoses(case.objects("poses"))
        val got = poseBoxes(poses, case.double("threshold"), case.double("margin"), case.double("keep"))
        closeBoxes(name, got, rows(case.get("expected")))
    }

    val sigmas = golden.doubles("sigmas")
    for (case in golden.objects("distinct")) {
        val config = trackerConfig(case.obj("config"))
        val tracker = Tracker(if (config.similarity == "keypoint") sigmas else null, config)
        val poses = goldenPoses(case.objects("poses"))
        val kept = tracker.distinct(poses, case.double("min_similarity")).map { k -> poses.indexOfFirst { it === k } }
        c.ok(kept == case.ints("expected").toList()) { "distinct ${case.string("name")}: kept $kept vs ${case.get("expected")}" }
    }

    val trace = golden.obj("track")
    val meta = KposeMetadata.fromJson(trace.obj("metadata"))
    val (imgH, imgW) = trace.ints("image_size")
    val config = trackerConfig(trace.obj("config"))
    c.ok(config == TrackerConfig()) { "the trace's tracker settings are not the defaults: $config" }
    val tracker = Tracker(meta.skeleton.sigmas, config)
    val codec = meta.heatmapCodec
    val n = codec.heatmapH * codec.heatmapW * meta.skeleton.numKeypoints
    trace.objects("frames").forEachIndexed { f, frame ->
        val outputs = floats(frame.obj("heatmaps"))
        var calls = 0
        val cropped = ArrayList<DoubleArray>()
        val out = trackTopDown(tracker, frame.double("timestamp_ms")) { boxes ->
            cropped.addAll(boxes ?: listOf(doubleArrayOf(0.0, 0.0, imgW.toDouble(), imgH.toDouble())))
            topDownPoses(meta, imgW, imgH, boxes) { _ ->
                val at = n * calls++
                if (at + n > outputs.size) FloatArray(n).also { c.ok(false) { "frame $f: more network calls than Python made" } }
                else outputs.copyOfRange(at, at + n)
            }
        }
        c.ok(calls * n == outputs.size) { "frame $f: $calls network calls, Python ${outputs.size / n}" }
        closeBoxes("trace frame $f crops", cropped, rows(frame.get("crop_boxes")))
        val exp = frame.obj("expected")
        val ids = exp.list("ids").map { it?.let { v -> num(v).toInt() } }
        c.ok(out.map { it.trackId } == ids) { "trace frame $f: ids ${out.map { it.trackId }} vs Python $ids" }
        closeBoxes("trace frame $f poses", out.map { p -> DoubleArray(4) { p.box!![it].toDouble() } }, rows(exp.get("boxes")))
        val want = floats(exp.obj("keypoints"))
        if (out.size * meta.skeleton.numKeypoints * 3 == want.size) out.forEachIndexed { i, p ->
            p.keypoints.forEachIndexed { j, kp ->
                val at = (i * p.keypoints.size + j) * 3
                val where = "trace frame $f pose $i keypoint $j"
                c.ok(kp.name == meta.skeleton.keypoints[j]) { "$where: name ${kp.name}" }
                c.close("trace xy (px)", kp.x.toDouble(), want[at].toDouble()) { "$where x" }
                c.close("trace xy (px)", kp.y.toDouble(), want[at + 1].toDouble()) { "$where y" }
                c.close("trace score", kp.score.toDouble(), want[at + 2].toDouble(), 1e-6) { "$where score" }
            }
        }
    }
    c.report("top-down video (pose boxes, distinct, PoseModel.track trace)")
}
