// JS Tracker against kpose/tracking.py's golden traces: the same ids on every frame and
// the same smoothed keypoints within 1e-4 px, for every configuration of the trace file.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { TRACKER_DEFAULTS, Tracker } from '../src/tracking.js';
import { decodeArray, loadGolden, MaxDiff, trackerOptions } from './golden.mjs';

const golden = loadGolden('tracking');

function poses(frame) {
  const kps = decodeArray(frame.keypoints);
  const [n, k] = frame.keypoints.shape;
  return Array.from({ length: n }, (_, i) => ({
    score: frame.scores[i],
    keypoints: Array.from({ length: k }, (_, j) => ({
      x: kps[(i * k + j) * 3], y: kps[(i * k + j) * 3 + 1], score: kps[(i * k + j) * 3 + 2],
    })),
  }));
}

test('defaults are the Python defaults', () => {
  const mine = trackerOptions(golden.defaults);
  assert.equal(mine.similarity, 'keypoint');
  for (const [k, v] of Object.entries(mine)) if (k !== 'similarity') assert.equal(TRACKER_DEFAULTS[k], v, k);
});

for (const c of golden.cases) {
  test(`tracking trace: ${c.name}`, () => {
    const opts = trackerOptions(c.config);
    const tracker = new Tracker(opts.similarity === 'keypoint' ? golden.sigmas : null, opts);
    const diff = new MaxDiff();
    golden.frames.forEach((frame, f) => {
      const out = tracker.update(poses(frame), frame.timestamp_ms);
      const exp = c.expected[f];
      assert.deepEqual(out.map((p) => p.id), exp.ids, `frame ${f}: ids`);
      const want = decodeArray(exp.keypoints);
      out.forEach((p, i) => p.keypoints.forEach((kp, j) => {
        const at = (i * p.keypoints.length + j) * 3;
        assert.ok(diff.add('xy', kp.x, want[at]) <= 1e-4, `frame ${f} pose ${i} kp ${j} x`);
        assert.ok(diff.add('xy', kp.y, want[at + 1]) <= 1e-4, `frame ${f} pose ${i} kp ${j} y`);
        assert.ok(diff.add('score', kp.score, want[at + 2]) <= 1e-6, `frame ${f} pose ${i} kp ${j} score`);
      }));
    });
    console.log(`# max |JS - Python| ${c.name}: ${diff.report()}`);
  });
}
