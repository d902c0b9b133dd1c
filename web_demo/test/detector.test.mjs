// kpose-pose.js's pose-detection API (createDetector options, estimatePoses(image, config,
// timestampMs), reset, dispose) around a stand-in network: the detector's `detect` step returns
// given poses, everything after it (threshold, maxPoses, tracking, smoothing, flipHorizontal)
// is the detector's own code. The stand-in is a bottom-up model's, whose poses go to the
// tracker as found (a top-down model's video frames are cropped where the tracks were:
// test/person-boxes.test.mjs). Its tracking must reproduce kpose/tracking.py's golden traces
// through the tfjs-style options, i.e. give what the Tracker gives fed directly.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { createDetector, KposeDetector, readMetadata } from '../src/kpose-pose.js';
import { frameTimestamp, keepBest, makeTracking, mirrorPose } from '../src/pose-options.js';
import { Tracker } from '../src/tracking.js';
import { decodeArray, loadGolden } from './golden.mjs';

const golden = loadGolden('tracking');
const COCO17 = ['nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder', 'right_shoulder',
  'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist', 'left_hip', 'right_hip', 'left_knee', 'right_knee',
  'left_ankle', 'right_ankle'];
const WIDTH = 640;
const HEIGHT = 480;

function metadata({ task = 'top_down', sigmas = golden.sigmas } = {}) {
  const meta = {
    format: 'kpose', schema_version: 1, model: { name: 'stand_in', task },
    codec: task === 'top_down' ? { type: 'heatmap', input_size: [64, 48] } : { type: 'paf', input_size: [64, 48], heatmap_size: [8, 6], limbs: [[0, 1]] },
    input: { name: 'image', shape: [1, 64, 48, 3] }, outputs: [],
    skeleton: { name: 'coco17', keypoints: COCO17, limbs: [[0, 1]], flip_pairs: [[1, 2]], oks_sigmas: sigmas },
  };
  return readMetadata({ metadata: { kpose: meta } });
}

/** A detector whose network is replaced by `frames` (one list of poses per call). */
function standIn(options = {}, meta = metadata({ task: 'bottom_up' })) {
  const model = { disposed: 0, dispose() { this.disposed += 1; } };
  const detector = new KposeDetector(model, meta, options);
  detector.frames = [];
  detector.detect = async () => structuredClone(detector.frames.shift());
  return detector;
}

function framePoses(frame) {
  const kps = decodeArray(frame.keypoints);
  const [n, k] = frame.keypoints.shape;
  return Array.from({ length: n }, (_, i) => ({
    score: frame.scores[i], box: [i, i, 10, 10],
    keypoints: Array.from({ length: k }, (_, j) => ({
      x: kps[(i * k + j) * 3], y: kps[(i * k + j) * 3 + 1], score: kps[(i * k + j) * 3 + 2], name: COCO17[j],
    })),
  }));
}

// A golden case's Python TrackerConfig as the detector's tfjs-style options (every value set).
function detectorTracking(c) {
  const type = c.similarity === 'box' ? 'boundingBox' : 'keypoint';
  const params = type === 'keypoint'
    ? { keypointTrackerParams: { keypointConfidenceThreshold: c.keypoint_threshold, minNumberOfKeypoints: c.min_keypoints } }
    : { boundingBoxTrackerParams: { keypointConfidenceThreshold: c.keypoint_threshold } };
  return {
    enableTracking: true, trackerType: type, enableSmoothing: c.smoothing,
    trackerConfig: { maxTracks: c.max_tracks, maxAge: c.max_age_ms, minSimilarity: c.min_similarity, minPoseScore: c.min_pose_score, ...params },
    ...(c.smoothing ? { smoothingConfig: { minCutoff: c.min_cutoff, beta: c.beta, dCutoff: c.d_cutoff, outlier: c.outlier, scoreAlpha: c.score_alpha } } : {}),
  };
}

const image = tf.zeros([HEIGHT, WIDTH, 3], 'int32');

async function run(detector, frames = golden.frames, config = {}) {
  const out = [];
  for (const frame of frames) {
    detector.frames.push(framePoses(frame));
    out.push(await detector.estimatePoses(image, config, frame.timestamp_ms));
  }
  return out;
}

for (const c of golden.cases) {
  test(`detector tracking = kpose/tracking.py golden trace: ${c.name}`, async () => {
    const detector = standIn(detectorTracking(c.config));
    assert.equal(detector.tracker.config.similarity, c.config.similarity === 'box' ? 'boundingBox' : 'keypoint');
    const frames = await run(detector);
    let worst = 0;
    frames.forEach((poses, f) => {
      const exp = c.expected[f];
      assert.deepEqual(poses.map((p) => p.id), exp.ids, `frame ${f}: ids`);
      const want = decodeArray(exp.keypoints);
      poses.forEach((p, i) => p.keypoints.forEach((k, j) => {
        const at = (i * p.keypoints.length + j) * 3;
        worst = Math.max(worst, Math.abs(k.x - want[at]), Math.abs(k.y - want[at + 1]));
        assert.ok(Math.abs(k.score - want[at + 2]) <= 1e-6, `frame ${f} pose ${i} kp ${j} score`);
        assert.equal(k.name, COCO17[j]);
      }));
    });
    assert.ok(worst <= 1e-4, `max |detector - Python| ${worst}`);
    if (c.name.startsWith('keypoint, smoothed')) {
      // The defaults of createDetector are kpose's: the same trace as the Tracker fed directly.
      const plain = await run(standIn());
      const direct = new Tracker(golden.sigmas);
      golden.frames.forEach((frame, f) => {
        assert.deepEqual(plain[f], direct.update(framePoses(frame), frame.timestamp_ms), `frame ${f}`);
      });
    }
    console.log(`# max |detector - Python| ${c.name}: ${worst.toExponential(2)} px`);
  });
}

test('tracking without smoothing keeps the detector keypoints; smoothing without tracking has no ids', async () => {
  const raw = golden.frames.map(framePoses);
  const ids = await run(standIn({ enableSmoothing: false }));
  ids.forEach((poses, f) => poses.forEach((p, i) => {
    assert.deepEqual(p.keypoints, raw[f][i].keypoints);
    assert.ok(p.id === null || Number.isInteger(p.id));
  }));
  const smoothOnly = await run(standIn({ enableTracking: false }));
  const both = await run(standIn());
  smoothOnly.forEach((poses, f) => poses.forEach((p, i) => {
    assert.ok(!('id' in p), `frame ${f}: id without tracking`);
    assert.deepEqual(p.keypoints, both[f][i].keypoints);
  }));
  const neither = await run(standIn({ enableTracking: false, enableSmoothing: false }));
  assert.equal(standIn({ enableTracking: false, enableSmoothing: false }).tracker, null);
  neither.forEach((poses, f) => poses.forEach((p, i) => {
    assert.ok(!('id' in p));
    assert.deepEqual(p, raw[f][i]);
  }));
});

test('reset: tracks forgotten, ids start again from 1', async () => {
  const detector = standIn();
  const first = await run(detector, golden.frames.slice(0, 3));
  const firstIds = first[0].map((p) => p.id).filter((id) => id !== null).sort();
  assert.deepEqual(firstIds, firstIds.map((_, i) => i + 1));
  // Without reset the same people keep their ids on a later frame...
  const later = await run(detector, golden.frames.slice(3, 4));
  assert.ok(later[0].some((p) => p.id !== null) && later[0].every((p) => p.id === null || p.id <= firstIds.length));
  // ... after reset they are new tracks numbered from 1, and unsmoothed (= the raw keypoints, float32).
  detector.reset();
  const again = await run(detector, golden.frames.slice(3, 4));
  const raw = framePoses(golden.frames[3]);
  assert.deepEqual(again[0].map((p) => p.id), new Tracker(golden.sigmas).update(raw, 0).map((p) => p.id));
  again[0].forEach((p, i) => p.keypoints.forEach((k, j) => assert.equal(k.x, Math.fround(raw[i].keypoints[j].x))));
  // A detector's setTracking replaces the options and starts a new tracker.
  detector.setTracking({ trackerType: 'boundingBox', enableSmoothing: false });
  assert.deepEqual(detector.trackingOptions, { enableTracking: true, enableSmoothing: false, trackerType: 'boundingBox' });
  assert.equal(detector.tracker.nextId, 1);
});

test('maxPoses keeps the best-scoring poses in their order; estimatePoses overrides the detector', async () => {
  const poses = [0.3, 0.9, 0.1, 0.9, 0.5].map((score, i) => ({ score, i, keypoints: [] }));
  assert.deepEqual(keepBest(poses, 3).map((p) => p.i), [1, 3, 4]);
  assert.deepEqual(keepBest(poses, 10).map((p) => p.i), [0, 1, 2, 3, 4]);
  const frame = framePoses(golden.frames[2]); // 4 people, one of them weak
  const best = [...frame.keys()].sort((a, b) => frame[b].score - frame[a].score).slice(0, 2).sort();
  const detector = standIn({ maxPoses: 2, enableTracking: false, enableSmoothing: false });
  detector.frames.push(frame, frame, frame);
  assert.deepEqual((await detector.estimatePoses(image)).map((p) => p.score), best.map((i) => frame[i].score));
  assert.equal((await detector.estimatePoses(image, { maxPoses: 1 })).length, 1);
  assert.equal((await detector.estimatePoses(image, { maxPoses: Infinity })).length, frame.length);
  // The threshold applies first; tracking sees only the poses returned.
  const tracked = standIn({ maxPoses: 1, scoreThreshold: 0.5 });
  tracked.frames.push(frame);
  const [one] = await tracked.estimatePoses(image, {}, 0);
  assert.equal(one.id, 1);
  assert.equal(tracked.tracker.tracks.length, 1);
});

test('flipHorizontal mirrors x (x -> width - 1 - x) and boxes, after tracking; names and ids kept', async () => {
  const plain = await run(standIn(), golden.frames.slice(0, 5));
  const flipped = await run(standIn(), golden.frames.slice(0, 5), { flipHorizontal: true });
  flipped.forEach((poses, f) => poses.forEach((p, i) => {
    const q = plain[f][i];
    assert.equal(p.id, q.id);
    assert.deepEqual(p.box, [WIDTH - q.box[0] - q.box[2], q.box[1], q.box[2], q.box[3]]);
    p.keypoints.forEach((k, j) => {
      assert.equal(k.x, WIDTH - 1 - q.keypoints[j].x);
      assert.equal(k.y, q.keypoints[j].y);
      assert.equal(k.name, q.keypoints[j].name);
    });
  }));
  // A bottom-up model's missing keypoints (x = y = null) stay null, flipped, tracked or smoothed.
  const pose = { score: 0.9, box: [10, 20, 30, 40], keypoints: COCO17.map((name, j) => (j % 3
    ? { x: 100 + j, y: 50 + 2 * j, score: 0.9, name } : { x: null, y: null, score: 0, name })) };
  assert.deepEqual(mirrorPose(pose, 200).keypoints.map((k) => k.x).slice(0, 3), [null, 200 - 1 - 101, 200 - 1 - 102]);
  const bottomUp = standIn({}, metadata({ task: 'bottom_up', sigmas: null }));
  assert.equal(bottomUp.tracker.config.similarity, 'boundingBox'); // no OKS sigmas: box IoU, as Tracker.for_skeleton
  for (const t of [0, 33, 67]) {
    bottomUp.frames.push([structuredClone(pose)]);
    const [p] = await bottomUp.estimatePoses(image, { flipHorizontal: t === 67 }, t);
    assert.equal(p.id, 1);
    p.keypoints.forEach((k, j) => assert.ok(j % 3 ? k.x !== null && k.score > 0 : k.x === null && k.y === null && k.score === 0));
  }
});

test('options: unknown keys and unusable values raise', async () => {
  const raises = (fn, re) => assert.throws(fn, re);
  raises(() => standIn({ enableTracker: true }), /unknown option enableTracker/);
  raises(() => standIn({ trackerType: 'iou' }), /trackerType must be 'keypoint' or 'boundingBox'/);
  raises(() => standIn({ maxPoses: 0 }), /maxPoses must be an integer >= 1/);
  raises(() => standIn({ enableTracking: 'yes' }), /enableTracking must be true or false/);
  raises(() => standIn({ trackerConfig: { maxAge: -1 } }), /maxAge must be a number of milliseconds >= 0/);
  raises(() => standIn({ trackerConfig: { maxTrack: 3 } }), /trackerConfig: unknown option maxTrack/);
  raises(() => standIn({ trackerConfig: { keypointTrackerParams: { keypointFalloff: [0.1, 0.2] } } }), /17 numbers > 0/);
  raises(() => standIn({ trackerConfig: { keypointTrackerParams: { falloff: [] } } }), /keypointTrackerParams: unknown option falloff/);
  raises(() => standIn({ trackerType: 'boundingBox', trackerConfig: { keypointTrackerParams: {} } }),
    /keypointTrackerParams is for trackerType 'keypoint'/);
  raises(() => standIn({ enableTracking: false, enableSmoothing: false, trackerType: 'keypoint' }), /both are off/);
  raises(() => standIn({ enableSmoothing: false, smoothingConfig: { beta: 1 } }), /smoothingConfig needs enableSmoothing/);
  raises(() => standIn({ smoothingConfig: { minCutoff: 0 } }), /minCutoff must be a number > 0/);
  raises(() => standIn({ trackerType: 'keypoint' }, metadata({ sigmas: null })), /needs the skeleton's OKS sigmas/);
  // keypointFalloff stands in for missing sigmas, as tfjs's keypoint tracker takes them.
  const sigmas = COCO17.map(() => 0.05);
  assert.deepEqual(standIn({ trackerConfig: { keypointTrackerParams: { keypointFalloff: sigmas } } }, metadata({ sigmas: null }))
    .tracker.sigmas, sigmas);
  raises(() => makeTracking({ enableTracking: true, smoothing: true }, null, 17), /tracking options: unknown option smoothing/);
  raises(() => standIn({ flipTest: true }, metadata({ task: 'bottom_up', sigmas: null })), /flipTest: the flip test is for top-down/);
  const detector = standIn();
  detector.frames.push([], [], []);
  await assert.rejects(detector.estimatePoses(image, { flipHorizontl: true }), /estimatePoses config: unknown option flipHorizontl/);
  await assert.rejects(detector.estimatePoses(image, { maxPoses: 1.5 }), /maxPoses must be an integer/);
  await assert.rejects(detector.estimatePoses(image, {}, Number.NaN), /timestampMs must be a finite number/);
  // undefined counts as unset, as the page passes it.
  assert.deepEqual(await detector.estimatePoses(image, { boxes: undefined, flipHorizontal: undefined }, 5), []);
  // createDetector refuses an unknown option before it loads anything (no fetch of the URL).
  await assert.rejects(createDetector('http://127.0.0.1:9/none/model.json', { maxPose: 2 }), /unknown option maxPose; known: backend/);
  await assert.rejects(createDetector('http://127.0.0.1:9/none/model.json', { backend: 'gpu' }), /backend must be webgl/);
});

test('timestamps: given in ms, else performance.now(); dispose releases the model once', async () => {
  assert.equal(frameTimestamp(image, 1234.5), 1234.5);
  const before = performance.now();
  const t = frameTimestamp(image);
  assert.ok(t >= before && t <= performance.now());
  const detector = standIn();
  detector.dispose();
  detector.dispose();
  assert.equal(detector.model.disposed, 1);
  await assert.rejects(detector.estimatePoses(image), /disposed/);
});
