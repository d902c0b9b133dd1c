// The options of kpose-pose.js's detector, named as in @tensorflow-models/pose-detection
// (createDetector's model config and estimatePoses's estimation config), checked here, and
// the post-processing they ask for: score threshold, maxPoses, tracking and smoothing
// (kpose's Tracker, tracking.js, unchanged: the port of kpose/tracking.py), flipHorizontal.
// No TF.js in here: the post-processing runs on plain pose objects (test/detector.test.mjs).
//
// An option this module does not know, or a value it cannot use, raises: nothing is
// silently ignored. Time is in milliseconds everywhere.
import { TRACKER_DEFAULTS, Tracker } from './tracking.js';

export const BACKENDS = ['webgl', 'wasm', 'webgpu', 'cpu'];
export const TRACKER_TYPES = ['keypoint', 'boundingBox'];

// createDetector(url, options): the keys and what each must be.
const DETECTOR_KEYS = [
  'backend', 'loadOptions', 'flipTest', 'scoreThreshold', 'padding', 'refine', 'maxPoses',
  'enableTracking', 'trackerType', 'trackerConfig', 'enableSmoothing', 'smoothingConfig',
];
// estimatePoses(image, config, timestampMs): the keys of config.
const ESTIMATION_KEYS = ['boxes', 'flipTest', 'padding', 'flipHorizontal', 'maxPoses'];
const TRACKING_KEYS = ['enableTracking', 'trackerType', 'trackerConfig', 'enableSmoothing', 'smoothingConfig'];

// trackerConfig (tfjs names) -> kpose Tracker options (tracking.js names).
const TRACKER_CONFIG = { maxTracks: 'maxTracks', maxAge: 'maxAgeMs', minSimilarity: 'minSimilarity', minPoseScore: 'minPoseScore' };
const KEYPOINT_PARAMS = { keypointConfidenceThreshold: 'keypointThreshold', minNumberOfKeypoints: 'minKeypoints', keypointFalloff: null };
const BOX_PARAMS = { keypointConfidenceThreshold: 'keypointThreshold' };
const SMOOTHING_CONFIG = { minCutoff: 'minCutoff', beta: 'beta', dCutoff: 'dCutoff', outlier: 'outlier', scoreAlpha: 'scoreAlpha' };

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Raises for keys of obj outside known (undefined values count as absent). */
export function checkKeys(obj, known, where) {
  if (obj === undefined) return;
  if (!isObject(obj)) throw new Error(`${where} must be an object, got ${JSON.stringify(obj)}`);
  const unknown = Object.keys(obj).filter((k) => obj[k] !== undefined && !known.includes(k));
  if (unknown.length) throw new Error(`${where}: unknown option${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}; known: ${known.join(', ')}`);
}

function check(ok, where, value, what) {
  if (!ok) throw new Error(`${where} must be ${what}, got ${JSON.stringify(value)}`);
}
const bool = (v, where) => check(typeof v === 'boolean', where, v, 'true or false');
const number = (v, where, lo, hi, what) => check(typeof v === 'number' && v >= lo && v <= hi, where, v, what);
const maxPosesOk = (v, where) => check(v === Infinity || (Number.isInteger(v) && v >= 1), where, v, 'an integer >= 1 (or Infinity)');

/** createDetector's options checked (tracking ones included) and with defaults. */
export function detectorOptions(options = {}) {
  checkKeys(options, DETECTOR_KEYS, 'createDetector options');
  const o = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  if (o.backend !== undefined) check(BACKENDS.includes(o.backend), 'backend', o.backend, BACKENDS.join(' | '));
  if (o.flipTest !== undefined) bool(o.flipTest, 'flipTest');
  if (o.scoreThreshold !== undefined) number(o.scoreThreshold, 'scoreThreshold', 0, Infinity, 'a number >= 0');
  if (o.padding !== undefined) number(o.padding, 'padding', Number.MIN_VALUE, Infinity, 'a number > 0');
  if (o.refine !== undefined) check(['dark', 'none'].includes(o.refine), 'refine', o.refine, "'dark' or 'none'");
  if (o.maxPoses !== undefined) maxPosesOk(o.maxPoses, 'maxPoses');
  return { flipTest: false, scoreThreshold: 0, refine: 'dark', maxPoses: Infinity, ...o };
}

/** estimatePoses's config checked; the caller checks boxes and flipTest against the task. */
export function estimationConfig(config = {}) {
  checkKeys(config, ESTIMATION_KEYS, 'estimatePoses config');
  const c = Object.fromEntries(Object.entries(config ?? {}).filter(([, v]) => v !== undefined));
  if (c.flipTest !== undefined) bool(c.flipTest, 'flipTest');
  if (c.flipHorizontal !== undefined) bool(c.flipHorizontal, 'flipHorizontal');
  if (c.maxPoses !== undefined) maxPosesOk(c.maxPoses, 'maxPoses');
  if (c.padding !== undefined) number(c.padding, 'padding', Number.MIN_VALUE, Infinity, 'a number > 0');
  if (c.boxes !== undefined) {
    check(Array.isArray(c.boxes) && c.boxes.every((b) => Array.isArray(b) && b.length === 4 && b.every(Number.isFinite)),
      'boxes', c.boxes, 'an array of [x, y, w, h] boxes');
  }
  return c;
}

/** {tracker, ids, smoothing} (or null: no tracker) for the tracking options: {enableTracking, trackerType, trackerConfig,
 * enableSmoothing, smoothingConfig}; sigmas: the skeleton's OKS sigmas (null when it has none). */
export function makeTracking(options, sigmas, numKeypoints) {
  checkKeys(options, TRACKING_KEYS, 'tracking options');
  const { enableTracking = true, enableSmoothing = true, trackerType, trackerConfig, smoothingConfig } = options;
  bool(enableTracking, 'enableTracking');
  bool(enableSmoothing, 'enableSmoothing');
  if (!enableTracking && !enableSmoothing) {
    for (const [k, v] of Object.entries({ trackerType, trackerConfig, smoothingConfig })) {
      if (v !== undefined) throw new Error(`${k} is for tracking or smoothing; both are off (enableTracking and enableSmoothing false)`);
    }
    return null;
  }
  if (!enableSmoothing && smoothingConfig !== undefined) throw new Error('smoothingConfig needs enableSmoothing: true');
  const tc = trackerConfig ?? {};
  checkKeys(tc, [...Object.keys(TRACKER_CONFIG), 'keypointTrackerParams', 'boundingBoxTrackerParams'], 'trackerConfig');
  const falloff = tc.keypointTrackerParams?.keypointFalloff;
  // kpose.tracking.Tracker.for_skeleton: OKS with the skeleton's sigmas, box IoU without.
  const type = trackerType ?? (sigmas || falloff ? 'keypoint' : 'boundingBox');
  check(TRACKER_TYPES.includes(type), 'trackerType', type, "'keypoint' or 'boundingBox'");
  const out = { similarity: type, smoothing: enableSmoothing };
  for (const [k, v] of Object.entries(tc)) {
    if (v === undefined || k.endsWith('TrackerParams')) continue;
    if (k === 'maxTracks') check(Number.isInteger(v) && v >= 1, 'trackerConfig.maxTracks', v, 'an integer >= 1');
    else if (k === 'maxAge') number(v, 'trackerConfig.maxAge', 0, Infinity, 'a number of milliseconds >= 0');
    else number(v, `trackerConfig.${k}`, 0, 1, 'a number in [0, 1]');
    out[TRACKER_CONFIG[k]] = v;
  }
  const own = type === 'keypoint' ? 'keypointTrackerParams' : 'boundingBoxTrackerParams';
  const other = type === 'keypoint' ? 'boundingBoxTrackerParams' : 'keypointTrackerParams';
  if (tc[other] !== undefined) throw new Error(`trackerConfig.${other} is for trackerType '${type === 'keypoint' ? 'boundingBox' : 'keypoint'}', not '${type}'`);
  const params = tc[own] ?? {};
  const table = type === 'keypoint' ? KEYPOINT_PARAMS : BOX_PARAMS;
  checkKeys(params, Object.keys(table), `trackerConfig.${own}`);
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || k === 'keypointFalloff') continue;
    if (k === 'minNumberOfKeypoints') check(Number.isInteger(v) && v >= 0, `${own}.${k}`, v, 'an integer >= 0');
    else number(v, `${own}.${k}`, 0, 1, 'a number in [0, 1]');
    out[table[k]] = v;
  }
  let keypointSigmas = null;
  if (type === 'keypoint') {
    keypointSigmas = falloff ?? sigmas;
    if (!keypointSigmas) {
      throw new Error("trackerType 'keypoint' (OKS) needs the skeleton's OKS sigmas, and this model's skeleton has none: " +
        "use trackerType 'boundingBox' or give trackerConfig.keypointTrackerParams.keypointFalloff");
    }
    check(Array.isArray(keypointSigmas) && keypointSigmas.length === numKeypoints && keypointSigmas.every((s) => s > 0),
      'keypointTrackerParams.keypointFalloff', keypointSigmas, `${numKeypoints} numbers > 0 (one per keypoint)`);
  }
  checkKeys(smoothingConfig, Object.keys(SMOOTHING_CONFIG), 'smoothingConfig');
  for (const [k, v] of Object.entries(smoothingConfig ?? {})) {
    if (v === undefined) continue;
    if (k === 'scoreAlpha') number(v, `smoothingConfig.${k}`, Number.MIN_VALUE, 1, 'a number in (0, 1]');
    else if (k === 'beta') number(v, `smoothingConfig.${k}`, 0, Infinity, 'a number >= 0');
    else number(v, `smoothingConfig.${k}`, Number.MIN_VALUE, Infinity, 'a number > 0');
    out[SMOOTHING_CONFIG[k]] = v;
  }
  return { tracker: new Tracker(keypointSigmas, out), ids: enableTracking, smoothing: enableSmoothing };
}

/** The maxPoses highest-scoring poses, in their original order (ties: the earlier first). */
export function keepBest(poses, maxPoses) {
  if (!(poses.length > maxPoses)) return poses;
  const keep = new Set(poses.map((p, i) => [p.score, i]).sort((a, b) => b[0] - a[0] || a[1] - b[1])
    .slice(0, maxPoses).map(([, i]) => i));
  return poses.filter((_, i) => keep.has(i));
}

/** A pose mirrored left-right in an image `width` pixels wide, kpose's pixel centres at integers
 * (x -> width - 1 - x; box [x, y, w, h] -> [width - x - w, y, w, h]); names are kept, as tfjs does. */
export function mirrorPose(pose, width) {
  const out = {
    ...pose,
    keypoints: pose.keypoints.map((k) => ({ ...k, x: k.x === null ? null : width - 1 - k.x })),
  };
  if (Array.isArray(pose.box)) out.box = [width - pose.box[0] - pose.box[2], ...pose.box.slice(1)];
  return out;
}

/** What estimatePoses returns for the detected poses: those scoring >= scoreThreshold, the
 * maxPoses best of them, tracked and smoothed by `tracking` (makeTracking; null: neither) at timestampMs, and
 * mirrored when flipHorizontal (after tracking: ids and smoothing do not depend on it). */
export function postprocess(poses, { scoreThreshold = 0, maxPoses = Infinity, flipHorizontal = false, width },
  tracking, timestampMs) {
  let out = keepBest(poses.filter((p) => p.score >= scoreThreshold), maxPoses);
  if (tracking) {
    const tracked = tracking.tracker.update(out, timestampMs);
    out = out.map((raw, i) => {
      const t = tracked[i];
      // Without smoothing the keypoints are the detector's own (not the tracker's float32 copies).
      const pose = tracking.smoothing ? {
        ...t,
        // A bottom-up model's missing keypoints have no position (x = y = null): the tracker
        // reads them as 0 with score 0, as Python's arrays hold them; they stay null.
        keypoints: t.keypoints.map((k, j) => (raw.keypoints[j].x === null ? { ...k, x: null, y: null, score: 0 } : k)),
      } : { ...raw, id: t.id };
      if (!tracking.ids) delete pose.id;
      return pose;
    });
  }
  if (flipHorizontal) {
    if (!(width > 0)) throw new Error('flipHorizontal needs the image width');
    out = out.map((p) => mirrorPose(p, width));
  }
  return out;
}

/** The default timestamp of a frame in ms, as tfjs pose-detection takes it: a video's
 * currentTime, else the clock (performance.now()). */
export function frameTimestamp(image, timestampMs) {
  if (timestampMs !== undefined && timestampMs !== null) {
    check(Number.isFinite(timestampMs), 'timestampMs', timestampMs, 'a finite number of milliseconds');
    return timestampMs;
  }
  if (typeof HTMLVideoElement !== 'undefined' && image instanceof HTMLVideoElement) return image.currentTime * 1000;
  return performance.now();
}

export { TRACKER_DEFAULTS };
