// Top-down video against the Python reference (test/golden/person_boxes.json, written by
// tools/golden_person_boxes.py): kpose/person_boxes.py's constants and pose_boxes,
// Tracker.distinct, and PoseModel.track's trace reproduced by the detector's estimatePoses
// over the frames: the same crop boxes (1e-4 px) and number of network calls, the same ids,
// keypoints within 1e-4 px. The stand-in network replays Python's outputs call by call;
// cropping, decoding, box propagation and tracking are the detector's own code.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { KposeDetector, readMetadata } from '../src/kpose-pose.js';
import { BOX_MARGIN, DUPLICATE_SIMILARITY, KEEP_SIZE, poseBoxes } from '../src/person-boxes.js';
import { TRACKER_DEFAULTS, Tracker } from '../src/tracking.js';
import { decodeArray, goldenPoses, loadGolden, MaxDiff, trackerOptions } from './golden.mjs';

const golden = loadGolden('person_boxes');
const TOL = 1e-4;

const closeBoxes = (got, want, diff, what) => {
  assert.equal(got.length, want.length, `${what}: ${got.length} boxes, Python ${want.length}`);
  got.forEach((b, i) => b.forEach((v, j) => assert.ok(diff.add('box', v, want[i][j]) <= TOL, `${what} box ${i}[${j}]: ${v} vs ${want[i][j]}`)));
};

test('constants are kpose/person_boxes.py\'s', () => {
  assert.deepEqual({ BOX_MARGIN, KEEP_SIZE, DUPLICATE_SIMILARITY }, golden.constants);
});

for (const c of golden.pose_boxes) {
  test(`poseBoxes = pose_boxes: ${c.name}`, () => {
    const diff = new MaxDiff();
    closeBoxes(poseBoxes(goldenPoses(c.poses), c.threshold, c.margin, c.keep), c.expected, diff, c.name);
    if (c.margin === BOX_MARGIN && c.keep === KEEP_SIZE) {
      assert.deepEqual(poseBoxes(goldenPoses(c.poses), c.threshold), poseBoxes(goldenPoses(c.poses), c.threshold, c.margin, c.keep));
    }
  });
}

for (const c of golden.distinct) {
  test(`Tracker.distinct = Python's: ${c.name}`, () => {
    const opts = trackerOptions(c.config);
    const tracker = new Tracker(opts.similarity === 'keypoint' ? golden.sigmas : null, opts);
    const poses = goldenPoses(c.poses);
    const kept = tracker.distinct(poses, c.min_similarity);
    assert.deepEqual(kept.map((p) => poses.indexOf(p)), c.expected);
  });
}

/** A detector of the trace's model whose network replays `outputs` (one per crop, in order). */
function replayDetector(options = {}) {
  const meta = readMetadata({ metadata: { kpose: golden.track.metadata } }, 'person_boxes.json');
  const detector = new KposeDetector({ dispose() {} }, meta, options);
  detector.outputs = [];
  detector.run = async () => {
    if (!detector.outputs.length) throw new Error('more network calls than Python made');
    return { heatmaps: detector.outputs.shift() };
  };
  return detector;
}

/** A frame's network outputs, one {data, shape} per crop. */
function outputs(frame) {
  const data = decodeArray(frame.heatmaps);
  const [n, h, w, k] = frame.heatmaps.shape;
  return Array.from({ length: n }, (_, i) => ({ data: data.slice(i * h * w * k, (i + 1) * h * w * k), shape: [h, w, k] }));
}

const [HEIGHT, WIDTH] = golden.track.image_size;
const image = tf.zeros([HEIGHT, WIDTH, 3], 'int32');

test('top-down video = PoseModel.track: the crops where the tracks were, ids, keypoints', async () => {
  const t = golden.track;
  // The trace runs the tracker's defaults, which createDetector's are.
  assert.deepEqual({ ...TRACKER_DEFAULTS, ...trackerOptions(t.config) }, { ...TRACKER_DEFAULTS });
  const detector = replayDetector();
  const diff = new MaxDiff();
  for (const [f, frame] of t.frames.entries()) {
    detector.outputs = outputs(frame);
    const poses = await detector.estimatePoses(image, {}, frame.timestamp_ms);
    assert.equal(detector.outputs.length, 0, `frame ${f}: fewer network calls than Python made`);
    closeBoxes(detector.lastBoxes, frame.crop_boxes, diff, `frame ${f} crops`);
    const exp = frame.expected;
    assert.deepEqual(poses.map((p) => p.id), exp.ids, `frame ${f}: ids`);
    closeBoxes(poses.map((p) => p.box), exp.boxes, diff, `frame ${f} poses`);
    const want = decodeArray(exp.keypoints);
    poses.forEach((p, i) => p.keypoints.forEach((k, j) => {
      const at = (i * p.keypoints.length + j) * 3;
      assert.ok(diff.add('xy', k.x, want[at]) <= TOL && diff.add('xy', k.y, want[at + 1]) <= TOL, `frame ${f} pose ${i} kp ${j}`);
      assert.ok(diff.add('score', k.score, want[at + 2]) <= 1e-6, `frame ${f} pose ${i} kp ${j} score`);
      assert.equal(k.name, detector.skeleton.keypoints[j]);
    }));
  }
  console.log(`# max |JS - Python| top-down video trace (${Object.entries(t.covers).map(([k, v]) => `${k} ${v}`).join(', ')}): ${diff.report()}`);
});

test('given boxes override the tracks\' crops; without a tracker every frame is cropped whole', async () => {
  const [first, second] = golden.track.frames;
  const detector = replayDetector();
  detector.outputs = outputs(first);
  await detector.estimatePoses(image, {}, 0);
  assert.equal(detector.tracker.tracks.length, 1);
  // The user's boxes are cropped as given (padded), and nothing is dropped: an empty crop's pose
  // (score 0) comes back untracked, as PoseModel.predict(image, boxes) gives it.
  const boxes = [[10, 20, 30, 60], [200, 10, 50, 100]];
  const empty = { data: new Float32Array(outputs(first)[0].data.length), shape: outputs(first)[0].shape };
  detector.outputs = [outputs(second)[0], empty];
  const poses = await detector.estimatePoses(image, { boxes }, 200);
  assert.deepEqual(detector.lastBoxes, boxes);
  assert.deepEqual(poses.map((p) => p.box), boxes);
  assert.equal(poses[1].score, 0);
  assert.equal(poses[1].id, null);
  // No tracker (tracking and smoothing off): the whole frame, whoever was found before.
  const plain = replayDetector({ enableTracking: false, enableSmoothing: false });
  for (const [f, frame] of golden.track.frames.slice(0, 3).entries()) {
    plain.outputs = [outputs(frame)[0]];
    assert.equal((await plain.estimatePoses(image, {}, 200 * f)).length, 1);
    assert.deepEqual(plain.lastBoxes, [[0, 0, WIDTH, HEIGHT]]);
  }
  // Smoothing alone runs the tracker: crops follow the tracks, poses carry no id.
  const smooth = replayDetector({ enableTracking: false });
  for (const [f, frame] of golden.track.frames.slice(0, 3).entries()) {
    smooth.outputs = outputs(frame);
    const [pose] = await smooth.estimatePoses(image, {}, frame.timestamp_ms);
    assert.ok(!('id' in pose));
    assert.deepEqual(smooth.lastBoxes.length, frame.crop_boxes.length, `frame ${f}`);
  }
  // reset(): nobody tracked, the whole frame again.
  smooth.reset();
  smooth.outputs = outputs(first);
  await smooth.estimatePoses(image, {}, 1000);
  assert.deepEqual(smooth.lastBoxes, [[0, 0, WIDTH, HEIGHT]]);
});
