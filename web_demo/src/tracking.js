// Pose tracking and smoothing: the port of kpose/tracking.py (the reference), tested against
// its golden traces (test/tracking.test.mjs). Same algorithm, same defaults, time in ms:
// greedy matching of poses to live tracks by OKS (the skeleton's sigmas) or box IoU, tracks
// ending after maxAgeMs unseen, ids counting up from 1; a One Euro filter per keypoint
// coordinate whose speed is measured in person sizes per second, restarted on a jump of more
// than `outlier` person sizes or a keypoint lost; an exponential average on keypoint scores.
// Poses are {keypoints: [{x, y, score, name?}], score, ...}; tracked poses gain `id`.
// For top-down video (person-boxes.js), expectedPoses gives where each live track's person
// was, resemblesAny whether a pose is like one of them and distinct drops duplicate poses, as
// Tracker.expected_poses / resembles_any / distinct; lastUpdateMs is the previous frame's time.

export const TRACKER_DEFAULTS = Object.freeze({
  similarity: 'keypoint', minPoseScore: 0.15, minSimilarity: 0.15, maxTracks: 18, maxAgeMs: 1000,
  keypointThreshold: 0.3, minKeypoints: 4, smoothing: true, minCutoff: 1.0, beta: 10.0, dCutoff: 1.0,
  outlier: 0.5, scoreAlpha: 0.5,
});

function alpha(cutoff, dtS) {
  const tau = 1 / (2 * Math.PI * cutoff);
  return 1 / (1 + tau / dtS);
}

/** One Euro filter over n values (a person's keypoint coordinates, x0, y0, x1, y1, ...). */
export class OneEuroFilter {
  constructor(minCutoff = 1.0, beta = 10.0, dCutoff = 1.0) {
    Object.assign(this, { minCutoff, beta, dCutoff, value: null, speed: null, lastMs: null });
  }

  /** Filtered values; scale divides speeds (person size in px); restart: per-value flags. */
  filter(x, timestampMs, scale = 1, restart = null) {
    if (this.value === null || this.lastMs === null || timestampMs <= this.lastMs) {
      this.value = Float64Array.from(x);
      this.speed = new Float64Array(x.length);
      this.lastMs = timestampMs;
      return Float64Array.from(x);
    }
    const dt = (timestampMs - this.lastMs) / 1000;
    this.lastMs = timestampMs;
    const aD = alpha(this.dCutoff, dt);
    const s = Math.max(scale, 1e-6);
    for (let i = 0; i < x.length; i++) {
      const raw = (x[i] - this.value[i]) / dt / s;
      this.speed[i] = this.speed[i] + aD * (raw - this.speed[i]);
      const a = alpha(this.minCutoff + this.beta * Math.abs(this.speed[i]), dt);
      this.value[i] = this.value[i] + a * (x[i] - this.value[i]);
      if (restart && restart[i]) {
        this.value[i] = x[i];
        this.speed[i] = 0;
      }
    }
    return Float64Array.from(this.value);
  }
}

/** [x0, y0, x1, y1] of the keypoints scoring at least threshold (zeros when none). */
export function keypointBox(kps, threshold) {
  let x0 = Infinity; let y0 = Infinity; let x1 = -Infinity; let y1 = -Infinity;
  for (const k of kps) {
    if (k.score >= threshold) {
      x0 = Math.min(x0, k.x); y0 = Math.min(y0, k.y); x1 = Math.max(x1, k.x); y1 = Math.max(y1, k.y);
    }
  }
  return x0 === Infinity ? [0, 0, 0, 0] : [x0, y0, x1, y1];
}

/** Object keypoint similarity of a and b, area from b's keypoint box. */
export function oks(a, b, sigmas, threshold, minKeypoints) {
  const terms = [];
  const [x0, y0, x1, y1] = keypointBox(b, threshold);
  const area = Math.max((x1 - x0) * (y1 - y0), 1);
  for (let k = 0; k < a.length; k++) {
    if (a[k].score >= threshold && b[k].score >= threshold) {
      const d2 = (a[k].x - b[k].x) ** 2 + (a[k].y - b[k].y) ** 2;
      terms.push(Math.exp(-d2 / (2 * area * (2 * sigmas[k]) ** 2)));
    }
  }
  if (terms.length < minKeypoints) return 0;
  return terms.reduce((s, v) => s + v, 0) / terms.length;
}

/** IoU of two [x0, y0, x1, y1] boxes. */
export function iou(a, b) {
  const w = Math.min(a[2], b[2]) - Math.max(a[0], b[0]);
  const h = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  const inter = Math.max(w, 0) * Math.max(h, 0);
  const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return union > 0 ? inter / union : 0;
}

// The reference stores keypoints as float32: so does the port, so that later frames compare
// against the same numbers.
const f32 = Math.fround;

export class Tracker {
  /** sigmas: the skeleton's OKS sigmas (keypoint similarity); options: TRACKER_DEFAULTS keys. */
  constructor(sigmas = null, options = {}) {
    const unknown = Object.keys(options).filter((k) => !(k in TRACKER_DEFAULTS));
    if (unknown.length) throw new Error(`unknown tracker options ${unknown}; known: ${Object.keys(TRACKER_DEFAULTS)}`);
    this.config = { ...TRACKER_DEFAULTS, ...options };
    if (!['keypoint', 'boundingBox', 'box'].includes(this.config.similarity)) {
      throw new Error(`similarity must be 'keypoint' (OKS) or 'boundingBox' (IoU), got ${this.config.similarity}`);
    }
    if (this.config.similarity === 'keypoint' && !sigmas) {
      throw new Error("keypoint (OKS) similarity needs the skeleton's sigmas; use similarity: 'boundingBox'");
    }
    this.sigmas = sigmas;
    this.reset();
  }

  /** Forget every track; ids start again from 1. */
  reset() {
    this.tracks = [];
    this.nextId = 1;
    // The timestamp of the last update (null: none since the reset): top-down video's previous
    // frame (PoseModel.track's `previous`), whose matched tracks give the next boxes.
    this.lastUpdateMs = null;
  }

  /** The tracker's similarity of keypoints a and b: OKS (area from b's box), or IoU of their boxes. */
  similarity(a, b) {
    const c = this.config;
    if (c.similarity === 'keypoint') return oks(a, b, this.sigmas, c.keypointThreshold, c.minKeypoints);
    return iou(keypointBox(a, c.keypointThreshold), keypointBox(b, c.keypointThreshold));
  }

  /** The last raw pose (with the `box` it was found in) of each track still live at
   * timestampMs (and matched at or after matchedSinceMs, when given), in track order: where a
   * top-down model crops its next frame. (Python's `motion` option, which moves them by their
   * velocity, is Python-only.) */
  expectedPoses(timestampMs, matchedSinceMs = null) {
    const since = matchedSinceMs ?? -Infinity;
    return this.tracks.filter((t) => timestampMs - t.lastMs <= this.config.maxAgeMs && t.lastMs >= since)
      .map((t) => t.pose);
  }

  /** Whether keypoints are at least minSimilarity similar to those of one of the poses. */
  resemblesAny(keypoints, poses) {
    return poses.some((p) => this.similarity(p.keypoints, keypoints) >= this.config.minSimilarity);
  }

  /** The poses without duplicates, in their order: a pose at least minSimilarity similar to a
   * higher-scoring one (an equal score: an earlier one) is dropped (two crops found one person). */
  distinct(poses, minSimilarity) {
    const kept = [];
    // Array.prototype.sort is stable: equal scores keep their order, as Python's sorted.
    for (const pose of [...poses].sort((a, b) => b.score - a.score)) {
      if (kept.every((k) => this.similarity(k.keypoints, pose.keypoints) < minSimilarity)) kept.push(pose);
    }
    return poses.filter((p) => kept.includes(p));
  }

  /** This frame's poses with `id` (null: untracked) and smoothed keypoints, in input order. */
  update(poses, timestampMs) {
    const c = this.config;
    this.lastUpdateMs = timestampMs;
    this.tracks = this.tracks.filter((t) => timestampMs - t.lastMs <= c.maxAgeMs);
    const pairs = [];
    this.tracks.forEach((t, ti) => poses.forEach((p, pi) => {
      if (p.score >= c.minPoseScore) pairs.push([this.similarity(t.pose.keypoints, p.keypoints), ti, pi]);
    }));
    pairs.sort((a, b) => b[0] - a[0] || a[1] - b[1] || a[2] - b[2]);
    const trackOf = new Map();
    const used = new Set();
    for (const [sim, ti, pi] of pairs) {
      if (sim < c.minSimilarity) break;
      if (used.has(ti) || trackOf.has(pi)) continue;
      used.add(ti);
      trackOf.set(pi, this.tracks[ti]);
    }
    return poses.map((pose, pi) => {
      let track = trackOf.get(pi);
      if (!track) {
        if (this.tracks.length >= c.maxTracks || pose.score < c.minPoseScore) return { ...pose, id: null };
        track = {
          id: this.nextId++,
          pose: { ...pose, keypoints: pose.keypoints.map((k) => ({ ...k, x: f32(k.x), y: f32(k.y), score: f32(k.score) })) },
          lastMs: timestampMs,
          filter: new OneEuroFilter(c.minCutoff, c.beta, c.dCutoff),
          scores: Float64Array.from(pose.keypoints, (k) => f32(k.score)),
        };
        this.tracks.push(track);
      }
      return this.smoothed(track, pose, timestampMs);
    });
  }

  smoothed(track, pose, timestampMs) {
    const c = this.config;
    let keypoints = pose.keypoints.map((k) => ({ ...k, x: f32(k.x), y: f32(k.y), score: f32(k.score) }));
    if (c.smoothing) {
      const [x0, y0, x1, y1] = keypointBox(keypoints, c.keypointThreshold);
      const size = Math.max(Math.hypot(x1 - x0, y1 - y0), 1);
      const xy = new Float64Array(2 * keypoints.length);
      const restart = new Uint8Array(2 * keypoints.length);
      keypoints.forEach((k, i) => {
        const last = track.pose.keypoints[i];
        const jump = Math.hypot(k.x - last.x, k.y - last.y) > c.outlier * size;
        const lost = k.score <= 0 || last.score <= 0;
        xy[2 * i] = k.x; xy[2 * i + 1] = k.y;
        restart[2 * i] = restart[2 * i + 1] = jump || lost ? 1 : 0;
      });
      const out = track.filter.filter(xy, timestampMs, size, restart);
      keypoints = keypoints.map((k, i) => {
        track.scores[i] = (1 - c.scoreAlpha) * track.scores[i] + c.scoreAlpha * k.score;
        return { ...k, x: f32(out[2 * i]), y: f32(out[2 * i + 1]), score: k.score > 0 ? f32(track.scores[i]) : 0 };
      });
    }
    // The track remembers the raw pose (float32, as the reference stores it): matching and
    // jump checks compare detections with detections.
    track.pose = { ...pose, keypoints: pose.keypoints.map((k) => ({ ...k, x: f32(k.x), y: f32(k.y), score: f32(k.score) })) };
    track.lastMs = timestampMs;
    return { ...pose, keypoints, id: track.id };
  }
}
