// JS PAF grouping against the Python PafCodec.decode, step by step: the same processed
// (blurred, upsampled) maps, peaks, limb order and candidates, then the same people in
// the same order with the same keypoints and scores; and flip_back.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  assemble, darkRefine, decodePafs, flipBackPafs, limbCandidates, limbOrder, PAF_DEFAULTS, pafParams, pafPeakRadius, pafPeaks,
} from '../src/decoders.js';
import { assertSamePeople, decodeArray, loadGolden, MaxDiff } from './golden.mjs';

const TOL = 1e-9;
const golden = loadGolden('paf');

test('decode parameters default to PafCodec\'s; settings are checked as from_dict checks them', () => {
  assert.deepEqual(PAF_DEFAULTS, golden.defaults);
  const codec = { type: 'paf', input_size: [8, 8], heatmap_size: [4, 4], limbs: [[0, 1]] };
  const params = pafParams(codec);
  for (const [name, value] of Object.entries(golden.defaults)) assert.equal(params[name], value, name);
  assert.throws(() => pafParams({ ...codec, limb_threshold: 0.3 }, 'm.json: codec'),
    /m\.json: codec\.limb_threshold is not a setting of the codec \(kpose\.codecs\.paf\.PafCodec/);
  assert.throws(() => pafParams({ ...codec, type: 'limb_heatmap' }), /codec\.type is "limb_heatmap", not "paf"/);
  assert.throws(() => pafParams({ ...codec, limb_width: 0 }), /codec\.limb_width must be > 0/);
  assert.throws(() => pafParams({ ...codec, upsample: 1.5 }), /codec\.upsample must be an integer >= 1/);
  const { heatmap_size: _, ...noGrid } = codec;
  assert.throws(() => pafParams(noGrid), /codec\.heatmap_size is missing/);
});

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
    const params = pafParams(c.codec);
    const exp = c.expected;
    const diff = new MaxDiff();

    const { kp, uv, score, processed, found } = pafPeaks(heatmaps, shape, params);
    if (exp.processed) {
      // Blur taps come from Math.exp, which may round differently from NumPy's exp in
      // the last bit; the float32 maps then differ by an ulp at most.
      const { shape: want, every, values } = exp.processed;
      assert.deepEqual(processed.shape, want);
      decodeArray(values).forEach((v, i) => {
        const got = processed.data[i * every];
        assert.ok(diff.add('processed', got, v) <= 1e-6 * Math.max(1, Math.abs(v)), `map value ${i * every}`);
      });
    }
    assert.deepEqual(found.map(({ k, iy, ix }) => [k, iy, ix]), exp.peaks);
    assert.ok(!exp.flat_window.some(Boolean), 'PAF cases are built without flat peak windows');
    assert.equal(darkRefine(processed.data, processed.shape, found, pafPeakRadius(params)).length, found.length);
    uv.forEach(([u, v], i) => {
      assert.ok(diff.add('peak u', u, exp.peak_uv[i][0]) <= TOL, `peak ${i} u`);
      assert.ok(diff.add('peak v', v, exp.peak_uv[i][1]) <= TOL, `peak ${i} v`);
      assert.equal(score[i], exp.peak_score[i], `peak ${i} score`);
    });
    const order = limbOrder(c.codec.limbs, shape[2]);
    assert.deepEqual(order, exp.limb_order);

    const L = c.codec.limbs.length;
    const cand = limbCandidates(uv, kp, pafs, [shape[0], shape[1], 2 * L], c.codec.limbs, order, params);
    const want = exp.candidates;
    assert.deepEqual(cand.map(({ p, a, b }) => [p, a, b]), want.a.map((a, i) => [want.limb_position[i], a, want.b[i]]));
    cand.forEach(({ score: s }, i) => assert.ok(diff.add('limb score', s, want.score[i]) <= TOL, `candidate ${i}`));
    assert.ok(assemble(cand, kp, shape[2]).people.every((slots) => slots.length === shape[2]));

    const decoded = decodePafs(heatmaps, pafs, shape, c.codec);
    assertSamePeople(decoded, exp.people, diff, TOL);
    t.diagnostic(`${decoded.length} people, ${found.length} peaks, ${cand.length} candidates; ` +
      `max |JS - Python| ${diff.report()}`);
  });
}

for (const c of golden.flip_back) {
  test(`PAF flip back: ${c.name}`, () => {
    const shape = c.heatmaps.shape;
    const out = flipBackPafs(decodeArray(c.heatmaps), decodeArray(c.pafs), shape, c.flip_index, c.limb_perm,
      c.limb_sign);
    assert.deepEqual(out.heatmaps, decodeArray(c.expected.heatmaps));
    assert.deepEqual(out.pafs, decodeArray(c.expected.pafs));
  });
}
