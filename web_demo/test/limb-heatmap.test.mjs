// JS limb heatmap decoding (limb-heatmap.js) against the Python LimbHeatmapCodec.decode,
// step by step as test/paf.test.mjs does for PAFs: the same peaks, limb order and
// candidates (the limb score: the limb's map at the samples), then the same people in the
// same order, on template people and on real ones (coco_mini val2017: exact and perturbed
// maps whose thresholds reject candidates). Then the metadata dispatch: a model's
// codec.type picks the decoder and its limb maps output (bottom-up.js, KposeDetector), an
// unknown type is refused.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { bottomUpCodec, decodeBottomUp } from '../src/bottom-up.js';
import { fitMatrix, limbCandidates, limbOrder, pafPeaks } from '../src/decoders.js';
import { KposeDetector, readMetadata } from '../src/kpose-pose.js';
import { decodeLimbHeatmaps, LIMB_HEATMAP_DEFAULTS, limbHeatmapParams, limbMapSample } from '../src/limb-heatmap.js';
import { assertSamePeople, decodeArray, loadGolden, MaxDiff } from './golden.mjs';

const TOL = 1e-9; // float64 rounding (the contract is 1e-4 px, 1e-5 in scores)
const golden = loadGolden('limb_heatmap');
const coco = loadGolden('limb_heatmap_coco');
const metadata = loadGolden('metadata');
const cases = new Map([...golden.cases, ...coco.cases].map((c) => [c.name, c]));

test('decode parameters default to LimbHeatmapCodec\'s', () => {
  assert.deepEqual(LIMB_HEATMAP_DEFAULTS, golden.defaults);
  const params = limbHeatmapParams({ type: 'limb_heatmap', input_size: [8, 8], heatmap_size: [4, 4], limbs: [[0, 1]] });
  for (const [name, value] of Object.entries(golden.defaults)) assert.equal(params[name], value, name);
});

test('codec settings are checked as LimbHeatmapCodec checks them, naming the field', () => {
  const codec = cases.get('all_parameters').codec;
  assert.throws(() => limbHeatmapParams({ ...codec, paf_threshold: 0.3 }, 'm.json: codec'),
    /m\.json: codec\.paf_threshold is not a setting of the codec/);
  assert.throws(() => limbHeatmapParams({ ...codec, type: 'paf' }), /codec\.type is "paf", not "limb_heatmap"/);
  assert.throws(() => limbHeatmapParams({ ...codec, num_samples: 1 }), /codec\.num_samples must be >= 2/);
  assert.throws(() => limbHeatmapParams({ ...codec, limbs: [[3, 3]] }), /codec\.limbs has \[3,3\]/);
  const { limbs, ...noLimbs } = codec;
  assert.ok(limbs.length);
  assert.throws(() => limbHeatmapParams(noLimbs), /codec\.limbs is missing/);
});

for (const c of cases.values()) {
  test(`limb heatmap decode: ${c.name} (${c.note})`, (t) => {
    const heatmaps = decodeArray(c.heatmaps);
    const limbMaps = decodeArray(c.limb_maps);
    const shape = c.heatmaps.shape;
    const [h, w, K] = shape;
    const params = limbHeatmapParams(c.codec);
    const grouping = { ...params, paf_threshold: params.limb_threshold };
    const exp = c.expected;
    const diff = new MaxDiff();

    const { kp, uv, score, processed, found } = pafPeaks(heatmaps, shape, grouping);
    if (exp.processed) {
      // Blur taps come from Math.exp, which may round differently from NumPy's in the last bit.
      const { every, values } = exp.processed;
      assert.deepEqual(processed.shape, exp.processed.shape);
      decodeArray(values).forEach((v, i) => {
        assert.ok(diff.add('processed', processed.data[i * every], v) <= 1e-6 * Math.max(1, Math.abs(v)), `value ${i}`);
      });
    }
    assert.deepEqual(found.map(({ k, iy, ix }) => [k, iy, ix]), exp.peaks);
    assert.ok(!exp.flat_window.some(Boolean), 'limb heatmap cases are built without flat peak windows');
    uv.forEach(([u, v], i) => {
      assert.ok(diff.add('peak u', u, exp.peak_uv[i][0]) <= TOL, `peak ${i} u`);
      assert.ok(diff.add('peak v', v, exp.peak_uv[i][1]) <= TOL, `peak ${i} v`);
      assert.equal(score[i], exp.peak_score[i], `peak ${i} score`);
    });
    const order = limbOrder(params.limbs, K);
    assert.deepEqual(order, exp.limb_order);

    const L = params.limbs.length;
    const cand = limbCandidates(uv, kp, limbMaps, [h, w, L], params.limbs, order, grouping, limbMapSample);
    const want = exp.candidates;
    assert.deepEqual(cand.map(({ p, a, b }) => [p, a, b]), want.a.map((a, i) => [want.limb_position[i], a, want.b[i]]),
      'candidates (limb position, a-peak, b-peak)');
    cand.forEach(({ score: s }, i) => assert.ok(diff.add('limb score', s, want.score[i]) <= TOL, `candidate ${i}`));

    const decoded = decodeLimbHeatmaps(heatmaps, limbMaps, shape, c.codec);
    assertSamePeople(decoded, exp.people, diff, TOL);
    t.diagnostic(`${decoded.length} people, ${found.length} peaks, ${cand.length} candidates; ` +
      `max |JS - Python| ${diff.report() || '-'}`);
  });
}

const limbModel = metadata.models.find((m) => m.expected.codec_type === 'limb_heatmap');

test('metadata: codec.type picks the bottom-up decoder and its limb maps output', () => {
  for (const m of metadata.models.filter((x) => x.expected.task === 'bottom_up')) {
    const meta = readMetadata({ metadata: { kpose: m.metadata } }, m.name);
    const { output, perLimb } = bottomUpCodec(meta.codec);
    assert.equal(output, m.expected.outputs[1], m.name);
    assert.equal(perLimb * m.expected.codec_limbs.length, m.expected.output_channels[1], m.name);
  }
  assert.equal(bottomUpCodec(limbModel.metadata.codec).decode, decodeLimbHeatmaps);
});

test('metadata: an unknown codec type or setting is refused, naming the file and the field', () => {
  const meta = JSON.parse(metadata.unknown_codec_type);
  assert.throws(() => readMetadata({ metadata: { kpose: meta } }, 'x/model.json'),
    /^Error: x\/model\.json: codec\.type is "limb_heatmap_v2"; .* codec type paf or limb_heatmap/);
  const misspelt = { ...limbModel.metadata, codec: { ...limbModel.metadata.codec, limb_treshold: 0.3 } };
  assert.throws(() => readMetadata({ metadata: { kpose: misspelt } }, 'x/model.json'),
    /^Error: x\/model\.json: codec\.limb_treshold is not a setting of the codec/);
  const c = cases.get(limbModel.expected.decodes);
  assert.throws(() => decodeBottomUp(decodeArray(c.heatmaps), decodeArray(c.limb_maps), c.heatmaps.shape,
    { ...c.codec, type: 'limb_heatmap_v2' }, fitMatrix(c.codec.input_size, c.codec.input_size)),
  /codec\.type is "limb_heatmap_v2"/);
});

test('detector: a limb heatmap model runs from its metadata (output limb_heatmaps, its decoder)', async () => {
  const c = cases.get(limbModel.expected.decodes);
  const meta = readMetadata({ metadata: { kpose: limbModel.metadata } }, limbModel.name);
  assert.deepEqual(meta.codec, c.codec, 'the metadata carries the case\'s codec');
  // A stand-in network returning the golden maps under the names the metadata gives them.
  const maps = { heatmaps: c.heatmaps, limb_heatmaps: c.limb_maps };
  const model = {
    dispose() {},
    execute: (inputs, names) => names.map((n) => tf.tensor(decodeArray(maps[n]), [1, ...maps[n].shape])),
  };
  const detector = new KposeDetector(model, meta);
  assert.deepEqual(detector.outputNames, limbModel.expected.outputs);
  // An image of the input's size: the fit is the identity, the people are Python's.
  const [H, W] = c.codec.input_size;
  const image = tf.zeros([H, W, 3], 'int32');
  const poses = await detector.detect(image);
  image.dispose();
  const want = c.expected.people;
  assert.equal(poses.length, want.length, 'number of people');
  const diff = new MaxDiff();
  poses.forEach((pose, p) => {
    assert.ok(diff.add('score', pose.score, want[p].score) <= TOL);
    pose.keypoints.forEach(({ x, y, score, name }, k) => {
      const [ex, ey, es] = want[p].keypoints[k];
      assert.equal(name, meta.skeleton.keypoints[k]);
      if (es === 0) return assert.deepEqual([x, y, score], [null, null, 0]);
      // float32 keypoints (PoseModel.predict's), mapped by the identity fit.
      assert.ok(diff.add('keypoint (float32)', x, Math.fround(ex)) <= 1e-9 * Math.max(1, W), `person ${p} keypoint ${k} x`);
      assert.ok(diff.add('keypoint (float32)', y, Math.fround(ey)) <= 1e-9 * Math.max(1, H), `person ${p} keypoint ${k} y`);
      return assert.equal(score, Math.fround(es));
    });
  });
});
