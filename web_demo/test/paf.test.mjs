// JS PAF grouping against the Python PafCodec.decode: same peaks, same limb order,
// same people in the same order with the same keypoints and scores.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { darkRefine, decodePafs, findPeaks, limbOrder, pafParams, codecRadius } from '../src/decoders.js';
import { decodeArray, loadGolden, MaxDiff } from './golden.mjs';

const TOL = 1e-9;
const golden = loadGolden('paf');

test('limb order (breadth-first from the best-connected keypoint)', () => {
  for (const { limbs, num_keypoints: k, expected } of golden.limb_orders) {
    assert.deepEqual(limbOrder(limbs, k), expected, JSON.stringify(limbs));
  }
});

for (const c of golden.cases) {
  test(`PAF decode: ${c.name} (${c.note})`, (t) => {
    const heatmaps = decodeArray(c.heatmaps);
    const pafs = decodeArray(c.pafs);
    const shape = c.heatmaps.shape;
    const { peaks, peak_uv: peakUv, flat_window: flat, people } = c.expected;
    const diff = new MaxDiff();

    const found = findPeaks(heatmaps, shape, pafParams(c.codec).peak_threshold);
    assert.deepEqual(found.map(({ k, iy, ix }) => [k, iy, ix]), peaks);
    assert.ok(!flat.some(Boolean), 'PAF cases are built without flat peak windows');
    darkRefine(heatmaps, shape, found, codecRadius(pafParams(c.codec))).forEach(([u, v], i) => {
      assert.ok(diff.add('peak u', u, peakUv[i][0]) <= TOL, `peak ${i} u`);
      assert.ok(diff.add('peak v', v, peakUv[i][1]) <= TOL, `peak ${i} v`);
    });
    assert.deepEqual(limbOrder(c.codec.limbs, shape[2]), c.expected.limb_order);

    const decoded = decodePafs(heatmaps, pafs, shape, c.codec);
    assert.equal(decoded.length, people.length, 'number of people');
    decoded.forEach((person, p) => {
      assert.ok(diff.add('score', person.score, people[p].score) <= TOL, `person ${p} score`);
      person.keypoints.forEach(([x, y, s], k) => {
        const [ex, ey, es] = people[p].keypoints[k];
        assert.equal(s, es, `person ${p} keypoint ${k} score (missing keypoints are 0)`);
        assert.ok(diff.add('x', x, ex) <= TOL, `person ${p} keypoint ${k} x ${x} vs ${ex}`);
        assert.ok(diff.add('y', y, ey) <= TOL, `person ${p} keypoint ${k} y ${y} vs ${ey}`);
      });
    });
    t.diagnostic(`${decoded.length} people, ${found.length} peaks; max |JS - Python| ${diff.report()}`);
  });
}
