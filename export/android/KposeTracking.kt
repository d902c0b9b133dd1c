// Pose tracking and smoothing for video in plain Kotlin: a port of kpose/tracking.py (the
// reference), tested against its golden traces (web_demo/test/golden/tracking.json) like the
// JS port (web_demo/src/tracking.js). Same algorithm, same defaults, time in milliseconds
// (SystemClock.elapsedRealtime(), or a video frame's presentation time). Also top-down video
// (kpose/person_boxes.py, PoseModel.track without a detector: an app holds one model): each
// frame cropped where the people tracked on the previous frame were, tested against
// person_boxes.json.
package dev.kpose

import kotlin.math.PI
import kotlin.math.abs
import kotlin.math.exp
import kotlin.math.hypot
import kotlin.math.max
import kotlin.math.min
import kotlin.math.sqrt

/** TrackerConfig's settings and defaults (one set for Python, JS and Kotlin).
 * similarity: "keypoint" (OKS with the skeleton's sigmas) or "box" (IoU of keypoint boxes). */
data class TrackerConfig(
    val similarity: String = "keypoint",
    val minPoseScore: Double = 0.15,
    val minSimilarity: Double = 0.15,
    val maxTracks: Int = 18,
    val maxAgeMs: Double = 1000.0,
    val keypointThreshold: Double = 0.3,
    val minKeypoints: Int = 4,
    val smoothing: Boolean = true,
    val minCutoff: Double = 1.0,
    val beta: Double = 10.0,
    val dCutoff: Double = 1.0,
    val outlier: Double = 0.5,
    val scoreAlpha: Double = 0.5
) {
    init {
        require(similarity == "keypoint" || similarity == "box") {
            "similarity must be 'keypoint' (OKS) or 'box' (IoU), got '$similarity'"
        }
        require(maxTracks >= 1 && maxAgeMs >= 0) { "max_tracks must be >= 1 and max_age_ms >= 0, got $maxTracks, $maxAgeMs" }
        require(min(minCutoff, dCutoff) > 0 && beta >= 0) {
            "One Euro filter: min_cutoff and d_cutoff must be > 0 Hz and beta >= 0"
        }
    }

    /** The settings under TrackerConfig's Python names (tests compare them with Python's defaults). */
    fun settings(): Map<String, Any> = mapOf(
        "similarity" to similarity, "min_pose_score" to minPoseScore, "min_similarity" to minSimilarity,
        "max_tracks" to maxTracks, "max_age_ms" to maxAgeMs, "keypoint_threshold" to keypointThreshold,
        "min_keypoints" to minKeypoints, "smoothing" to smoothing, "min_cutoff" to minCutoff, "beta" to beta,
        "d_cutoff" to dCutoff, "outlier" to outlier, "score_alpha" to scoreAlpha)
}

private fun alpha(cutoff: Double, dtS: Double): Double {
    val tau = 1.0 / (2.0 * PI * cutoff)
    return 1.0 / (1.0 + tau / dtS)
}

/** One Euro filter over n values (a person's keypoint coordinates x0, y0, x1, y1, ...). */
class OneEuroFilter(val minCutoff: Double = 1.0, val beta: Double = 10.0, val dCutoff: Double = 1.0) {
    private var value: DoubleArray? = null
    private var speed = DoubleArray(0)
    private var lastMs = 0.0

    /** Filtered x; scale divides the speeds (person size in px); restart: values whose filter starts again from x. */
    fun filter(x: DoubleArray, timestampMs: Double, scale: Double = 1.0, restart: BooleanArray? = null): DoubleArray {
        val v = value
        if (v == null || timestampMs <= lastMs) {
            // First sample, or a timestamp that does not move forward: nothing to filter against.
            value = x.copyOf()
            speed = DoubleArray(x.size)
            lastMs = timestampMs
            return x.copyOf()
        }
        val dt = (timestampMs - lastMs) / 1000.0
        lastMs = timestampMs
        val aD = alpha(dCutoff, dt)
        val s = max(scale, 1e-6)
        for (i in x.indices) {
            val raw = (x[i] - v[i]) / dt / s
            speed[i] = speed[i] + aD * (raw - speed[i])
            v[i] = v[i] + alpha(minCutoff + beta * abs(speed[i]), dt) * (x[i] - v[i])
            if (restart != null && restart[i]) {
                v[i] = x[i]
                speed[i] = 0.0
            }
        }
        return v.copyOf()
    }
}

/** [x0, y0, x1, y1] of the keypoints scoring at least threshold (zeros when none). */
fun keypointBox(kps: List<Keypoint>, threshold: Double): DoubleArray {
    var x0 = Double.POSITIVE_INFINITY; var y0 = Double.POSITIVE_INFINITY
    var x1 = Double.NEGATIVE_INFINITY; var y1 = Double.NEGATIVE_INFINITY
    for (k in kps) if (k.score >= threshold) {
        x0 = min(x0, k.x.toDouble()); y0 = min(y0, k.y.toDouble())
        x1 = max(x1, k.x.toDouble()); y1 = max(y1, k.y.toDouble())
    }
    return if (x0 == Double.POSITIVE_INFINITY) DoubleArray(4) else doubleArrayOf(x0, y0, x1, y1)
}

/** Object keypoint similarity of a and b, area from b's keypoint box. */
fun oks(a: List<Keypoint>, b: List<Keypoint>, sigmas: DoubleArray, threshold: Double, minKeypoints: Int): Double {
    val box = keypointBox(b, threshold)
    val area = max((box[2] - box[0]) * (box[3] - box[1]), 1.0)
    val terms = DoubleArray(a.size)
    var n = 0
    for (k in a.indices) if (a[k].score >= threshold && b[k].score >= threshold) {
        val dx = a[k].x.toDouble() - b[k].x
        val dy = a[k].y.toDouble() - b[k].y
        val s2 = 2.0 * sigmas[k]
        terms[n++] = exp(-(dx * dx + dy * dy) / (2.0 * area * (s2 * s2)))
    }
    if (n < minKeypoints) return 0.0
    return pairwiseSum(terms, 0, n) / n  // np.mean: the ranking of close pairs depends on its rounding
}

/** IoU of two [x0, y0, x1, y1] boxes. */
fun iou(a: DoubleArray, b: DoubleArray): Double {
    val w = min(a[2], b[2]) - max(a[0], b[0])
    val h = min(a[3], b[3]) - max(a[1], b[1])
    val inter = max(w, 0.0) * max(h, 0.0)
    val union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return if (union > 0) inter / union else 0.0
}

// kpose/person_boxes.py's constants. The golden vectors carry Python's values and the tests
// compare them with these (and JS's), so a change on one side fails until all agree.
/** A keypoint box grown by this fraction of its width and height on each side: keypoints lie
 * inside the body (head top, hands, feet reach past them) and the person moves between frames. */
const val BOX_MARGIN = 0.15
/** A crop box shrinks to at most this fraction of the last one per frame: when a person's lower
 * body scores low, the confident keypoints alone would shrink the crop onto the head. */
const val KEEP_SIZE = 0.9
/** Poses at least this similar (the tracker's OKS, or box IoU) to a stronger one are duplicates. */
const val DUPLICATE_SIMILARITY = 0.7

/** pose_boxes: (x, y, w, h) crop boxes for the next frame from poses (each with the box it was
 * found in): the box around the keypoints scoring at least threshold, grown by margin of its
 * size per side, and at least keep times the width and height of the pose's own box (same
 * centre). A pose with fewer than two such keypoints, or all of them at one spot, gives none. */
fun poseBoxes(poses: List<Pose>, threshold: Double, margin: Double = BOX_MARGIN, keep: Double = KEEP_SIZE): List<DoubleArray> {
    val boxes = ArrayList<DoubleArray>()
    for (pose in poses) {
        if (pose.keypoints.count { it.score >= threshold } < 2) continue
        val (x0, y0, x1, y1) = keypointBox(pose.keypoints, threshold)
        if (x1 - x0 <= 0 && y1 - y0 <= 0) continue
        val prev = requireNotNull(pose.box) { "poseBoxes: a pose needs the box it was found in (Pose.box)" }
        val w = max((x1 - x0) * (1 + 2 * margin), keep * prev[2])
        val h = max((y1 - y0) * (1 + 2 * margin), keep * prev[3])
        boxes.add(doubleArrayOf((x0 + x1 - w) / 2, (y0 + y1 - h) / 2, w, h))
    }
    return boxes
}

/** One video frame of a top-down model, as PoseModel.track without a detector: crops where the
 * people the tracker matched on the previous frame (its last update, tracker.lastUpdateMs) were
 * (the whole image while nobody was), drops poses from those crops that score below
 * minPoseScore (the person has gone) or resemble no track (the crop is left on the background
 * or half a person), and duplicates (two crops on one person), and returns tracker.update's
 * poses. estimate(boxes): the poses of those (x, y, w, h) person boxes, or of the whole image
 * (null); KposePose.track passes its model's. */
fun trackTopDown(tracker: Tracker, timestampMs: Double, estimate: (List<DoubleArray>?) -> List<Pose>): List<Pose> {
    val c = tracker.config
    // Only the people matched on the previous frame give boxes: a lost track's last box stays
    // where the person was and would crop the background or a passer-by.
    val previous = tracker.lastUpdateMs
    val expected = if (previous == null) emptyList() else tracker.expectedPoses(timestampMs, previous)
    val boxes = poseBoxes(expected, c.keypointThreshold)
    // Every box is a track's: a pose there that scores below minPoseScore, or resembles no
    // track, is not a detection (new people come from the whole image).
    val poses = if (boxes.isEmpty()) estimate(null)
                else tracker.distinct(estimate(boxes).filter { it.score >= c.minPoseScore && tracker.resemblesAny(it.keypoints, expected) },
                                      DUPLICATE_SIMILARITY)
    return tracker.update(poses, timestampMs)
}

/** Stable ids and smoothed keypoints for the poses of consecutive frames:
 *
 *     val tracker = Tracker(meta.skeleton.sigmas)   // null sigmas: box similarity
 *     val people = tracker.update(poses, SystemClock.elapsedRealtime().toDouble())
 */
class Tracker(val sigmas: DoubleArray?, val config: TrackerConfig =
                  TrackerConfig(similarity = if (sigmas != null) "keypoint" else "box")) {
    private class Track(val id: Int, var pose: Pose, var lastMs: Double, val filter: OneEuroFilter, val scores: DoubleArray)

    private var tracks = ArrayList<Track>()
    private var nextId = 1
    /** The timestamp of the last update (null: none since the reset): top-down video's previous
     * frame (PoseModel.track's `previous`), whose matched tracks give the next boxes. */
    var lastUpdateMs: Double? = null
        private set

    init {
        require(config.similarity != "keypoint" || sigmas != null) {
            "keypoint (OKS) similarity needs the skeleton's sigmas (metadata skeleton.oks_sigmas); " +
                "use TrackerConfig(similarity = \"box\")"
        }
    }

    /** Forget every track (a new video); ids start again from 1. */
    fun reset() {
        tracks = ArrayList()
        nextId = 1
        lastUpdateMs = null
    }

    /** The tracker's similarity of keypoints a and b: OKS (area from b's box), or IoU of their boxes. */
    fun similarity(a: List<Keypoint>, b: List<Keypoint>): Double {
        val c = config
        if (c.similarity == "keypoint") return oks(a, b, sigmas!!, c.keypointThreshold, c.minKeypoints)
        return iou(keypointBox(a, c.keypointThreshold), keypointBox(b, c.keypointThreshold))
    }

    /** The last raw pose (with the box it was found in) of each track still live at timestampMs
     * (and matched at or after matchedSinceMs, when given), in track order: where a top-down
     * model crops its next frame (poseBoxes). */
    fun expectedPoses(timestampMs: Double, matchedSinceMs: Double? = null): List<Pose> {
        val since = matchedSinceMs ?: Double.NEGATIVE_INFINITY
        return tracks.filter { timestampMs - it.lastMs <= config.maxAgeMs && it.lastMs >= since }.map { it.pose }
    }

    /** Whether keypoints are at least minSimilarity similar to those of one of the poses. */
    fun resemblesAny(keypoints: List<Keypoint>, poses: List<Pose>): Boolean =
        poses.any { similarity(it.keypoints, keypoints) >= config.minSimilarity }

    /** The poses without duplicates, in their order: a pose at least minSimilarity similar to a
     * higher-scoring one (an equal score: an earlier one) is dropped (two crops found one person). */
    fun distinct(poses: List<Pose>, minSimilarity: Double): List<Pose> {
        val kept = ArrayList<Pose>()
        // sortedByDescending is stable: equal scores keep their order, as Python's sorted.
        for (pose in poses.sortedByDescending { it.score }) {
            if (kept.all { similarity(it.keypoints, pose.keypoints) < minSimilarity }) kept.add(pose)
        }
        return poses.filter { p -> kept.any { it === p } }
    }

    /** This frame's poses with trackId set and smoothed keypoints, in the input order; a pose
     * below minPoseScore, or one that neither matches a track nor fits under maxTracks, is
     * returned as it is with trackId null. */
    fun update(poses: List<Pose>, timestampMs: Double): List<Pose> {
        val c = config
        lastUpdateMs = timestampMs
        tracks = ArrayList(tracks.filter { timestampMs - it.lastMs <= c.maxAgeMs })
        class Match(val sim: Double, val ti: Int, val pi: Int)
        val pairs = ArrayList<Match>()
        tracks.forEachIndexed { ti, t ->
            poses.forEachIndexed { pi, p ->
                if (p.score >= c.minPoseScore) pairs.add(Match(similarity(t.pose.keypoints, p.keypoints), ti, pi))
            }
        }
        pairs.sortWith(Comparator { x, y ->
            when {
                x.sim != y.sim -> y.sim.compareTo(x.sim)
                x.ti != y.ti -> x.ti - y.ti
                else -> x.pi - y.pi
            }
        })
        val trackOf = HashMap<Int, Track>()
        val used = HashSet<Int>()
        for (m in pairs) {
            if (m.sim < c.minSimilarity) break
            if (m.ti in used || trackOf.containsKey(m.pi)) continue
            used.add(m.ti)
            trackOf[m.pi] = tracks[m.ti]
        }
        return poses.mapIndexed { pi, pose ->
            var track = trackOf[pi]
            if (track == null) {
                if (tracks.size >= c.maxTracks || pose.score < c.minPoseScore) return@mapIndexed pose.copy(trackId = null)
                track = Track(nextId++, pose, timestampMs, OneEuroFilter(c.minCutoff, c.beta, c.dCutoff),
                              DoubleArray(pose.keypoints.size) { pose.keypoints[it].score.toDouble() })
                tracks.add(track)
            }
            smoothed(track, pose, timestampMs)
        }
    }

    private fun smoothed(track: Track, pose: Pose, timestampMs: Double): Pose {
        val c = config
        var keypoints = pose.keypoints
        if (c.smoothing) {
            val kps = pose.keypoints
            val box = keypointBox(kps, c.keypointThreshold)
            val size = max(hypot(box[2] - box[0], box[3] - box[1]), 1.0)
            val xy = DoubleArray(2 * kps.size)
            val restart = BooleanArray(2 * kps.size)
            kps.forEachIndexed { i, k ->
                val last = track.pose.keypoints[i]
                val dx = k.x.toDouble() - last.x
                val dy = k.y.toDouble() - last.y
                val jump = sqrt(dx * dx + dy * dy) > c.outlier * size  // np.linalg.norm
                val lost = k.score <= 0 || last.score <= 0
                xy[2 * i] = k.x.toDouble()
                xy[2 * i + 1] = k.y.toDouble()
                restart[2 * i] = jump || lost
                restart[2 * i + 1] = jump || lost
            }
            val out = track.filter.filter(xy, timestampMs, size, restart)
            keypoints = kps.mapIndexed { i, k ->
                track.scores[i] = (1 - c.scoreAlpha) * track.scores[i] + c.scoreAlpha * k.score
                val score = if (k.score > 0) track.scores[i].toFloat() else 0f
                k.copy(x = out[2 * i].toFloat(), y = out[2 * i + 1].toFloat(), score = score)
            }
        }
        // The track remembers the raw pose: matching and jump checks compare detections with
        // detections (a smoothed pose lags, and heavy smoothing would lose fast people).
        track.pose = pose
        track.lastMs = timestampMs
        return pose.copy(keypoints = keypoints, trackId = track.id)
    }
}
