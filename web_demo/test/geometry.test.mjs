// Crop geometry, the whole-image fit, PoseModel.predict's top-down and bottom-up
// decoding and instance scores against the Python reference.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { decodeBottomUp } from '../src/bottom-up.js';
import {
  affineMatrix, applyAffine, boxToCenterScale, cropMatrix, decodeTopDown, fitMatrix,
  flipAverage, instanceScore, invertAffine,
} from '../src/decoders.js';
import { decodeArray, loadGolden, MaxDiff } from './golden.mjs';

const TOL = 1e-9;
const golden = loadGolden('geometry');

function close(diff, label, a, b) {
  if (Array.isArray(a)) {
    assert.equal(a.length, b.length, label);
    a.forEach((v, i) => close(diff, label, v, b[i]));
  } else {
    assert.ok(diff.add(label, a, b) <= TOL, `${label}: ${a} vs ${b}`);
  }
}

test('box_to_center_scale, affine_matrix, invert_affine, apply_affine', (t) => {
  const diff = new MaxDiff();
  for (const c of golden.affine) {
    const { center, scale } = boxToCenterScale(c.box, c.aspect_ratio, c.padding);
    close(diff, 'center', center, c.expected.center);
    close(diff, 'scale', scale, c.expected.scale);
    const M = affineMatrix(center, scale, c.output_size, c.rotation, c.flip);
    close(diff, 'matrix', M, c.expected.matrix);
    const inv = invertAffine(M);
    close(diff, 'inverse', inv, c.expected.inverse);
    close(diff, 'mapped', c.points.map((p) => applyAffine(M, p)), c.expected.mapped);
    close(diff, 'unmapped', c.points.map((p) => applyAffine(inv, p)), c.expected.unmapped);
  }
  t.diagnostic(`max |JS - Python| ${diff.report()}`);
});

test('instance scores', () => {
  for (const c of golden.instance_scores) {
    c.keypoints.forEach((kps, i) => assert.equal(instanceScore(kps), c.expected[i], `person ${i}`));
  }
});

for (const c of golden.pose) {
  test(`top-down pipeline (PoseModel.predict with a stand-in network): ${c.name}`, (t) => {
    const diff = new MaxDiff();
    const [imgH, imgW] = c.image_size;
    const inputSize = c.codec.input_size;
    const boxes = c.boxes ?? [[0, 0, imgW, imgH]];
    const padding = c.boxes ? 1.25 : 1.0; // predict: no boxes -> the whole image, no padding
    const [B, h, w, K] = c.heatmaps[0].shape;
    assert.equal(B, boxes.length);
    const raw = c.heatmaps.map(decodeArray);
    const n = h * w * K;
    boxes.forEach((box, b) => {
      let hm = raw[0].subarray(b * n, (b + 1) * n);
      if (c.flip_test) hm = flipAverage(hm, raw[1].subarray(b * n, (b + 1) * n), [h, w, K], c.flip_index);
      const kps = decodeTopDown(hm, [h, w, K], c.codec, cropMatrix(box, inputSize, padding));
      close(diff, 'keypoint', kps, c.expected.keypoints[b]);
      close(diff, 'score', instanceScore(kps), c.expected.scores[b]);
    });
    t.diagnostic(`max |JS - Python| ${diff.report()}`);
  });
}

test('fit_matrix (the whole image in a bottom-up model\'s input)', (t) => {
  const diff = new MaxDiff();
  for (const c of golden.fit) close(diff, 'matrix', fitMatrix(c.image_size, c.input_size), c.expected);
  t.diagnostic(`max |JS - Python| ${diff.report()}`);
});

for (const c of golden.bottom_up) {
  test(`bottom-up pipeline (PoseModel.predict with a stand-in network): ${c.name}`, (t) => {
    const diff = new MaxDiff();
    const M = fitMatrix(c.image_size, c.codec.input_size);
    const people = decodeBottomUp(decodeArray(c.heatmaps), decodeArray(c.pafs), c.heatmaps.shape, c.codec, M);
    const exp = c.expected;
    assert.equal(people.length, exp.keypoints.length, 'number of people');
    people.forEach((person, p) => {
      close(diff, 'score', person.score, exp.scores[p]);
      person.keypoints.forEach(([x, y, s], k) => {
        const [ex, ey, es] = exp.keypoints[p][k];
        if (es === 0) {
          assert.deepEqual([x, y, s], [null, null, 0], `person ${p} keypoint ${k} is missing`);
          return;
        }
        close(diff, 'keypoint', [x, y, s], [ex, ey, es]);
      });
      // Python's box is the extent of its float32 keypoints: equal to float32 rounding.
      person.box.forEach((v, i) => assert.ok(
        diff.add('box (float32)', v, exp.boxes[p][i]) <= 1e-4 * Math.max(1, Math.abs(v)),
        `person ${p} box ${person.box} vs ${exp.boxes[p]}`,
      ));
    });
    t.diagnostic(`${people.length} people; max |JS - Python| ${diff.report() || '-'}`);
  });
}
