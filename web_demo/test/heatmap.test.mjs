// JS heatmap decoding (argmax + DARK) against the Python HeatmapCodec.decode.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { decodeHeatmaps, savgolQuadratic2d } from '../src/decoders.js';
import { decodeArray, loadGolden, MaxDiff } from './golden.mjs';

const TOL = 1e-9; // float64 rounding, far below any pixel
const heatmap = loadGolden('heatmap');
const geometry = loadGolden('geometry');

test('Savitzky-Golay quadratic fit matrix equals numpy pinv', (t) => {
  const diff = new MaxDiff();
  for (const { ry, rx, expected } of geometry.savgol) {
    const rows = savgolQuadratic2d(ry, rx);
    assert.equal(rows.length, expected.length);
    rows.forEach((row, j) => {
      assert.equal(row.length, expected[j].length);
      row.forEach((v, i) => assert.ok(diff.add('pinv', v, expected[j][i]) < 1e-14, `ry ${ry} rx ${rx} [${j}][${i}]`));
    });
  }
  t.diagnostic(`max |JS - numpy| ${diff.report()}`);
});

for (const c of heatmap.cases) {
  test(`heatmap decode: ${c.name} (${c.note})`, (t) => {
    const hm = decodeArray(c.heatmaps);
    const shape = c.heatmaps.shape;
    const { keypoints, keypoints_none: plain, argmax, flat_window: flat } = c.expected;
    const diff = new MaxDiff();

    // refine "none": the integer argmax mapped to input pixels (Python rounds to float32).
    decodeHeatmaps(hm, shape, c.codec, 'none').forEach(([x, y, s], k) => {
      assert.deepEqual([Math.fround(x), Math.fround(y), s], plain[k], `keypoint ${k}`);
    });

    const stride = [c.codec.input_size[1] / shape[1], c.codec.input_size[0] / shape[0]];
    let flatNoise = 0;
    decodeHeatmaps(hm, shape, c.codec).forEach(([x, y, s], k) => {
      assert.equal(s, keypoints[k][2], `keypoint ${k} score`);
      if (flat[k]) {
        // A flat window has no maximum: the documented integer fallback. NumPy's
        // plain-log fit is rounding noise there and may step up to a pixel.
        const [iy, ix] = argmax[k];
        assert.deepEqual([x, y], [(ix + 0.5) * stride[0] - 0.5, (iy + 0.5) * stride[1] - 0.5], `flat ${k}`);
        assert.ok(Math.abs(x - keypoints[k][0]) <= stride[0] + TOL && Math.abs(y - keypoints[k][1]) <= stride[1] + TOL);
        if (x !== keypoints[k][0] || y !== keypoints[k][1]) flatNoise += 1;
        return;
      }
      assert.ok(diff.add('x', x, keypoints[k][0]) <= TOL, `keypoint ${k} x ${x} vs ${keypoints[k][0]}`);
      assert.ok(diff.add('y', y, keypoints[k][1]) <= TOL, `keypoint ${k} y ${y} vs ${keypoints[k][1]}`);
    });
    t.diagnostic(`max |JS - Python| ${diff.report() || '(no refined keypoints)'}` +
      (flat.some(Boolean) ? `; flat windows ${flat.filter(Boolean).length}, Python moved by noise: ${flatNoise}` : ''));
  });
}
