// Loads the golden vectors written by tools/write_golden.py (Python reference codecs).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { inflateSync } from 'node:zlib';

const DIR = new URL('./golden/', import.meta.url);

export function loadGolden(name) {
  return JSON.parse(readFileSync(new URL(`${name}.json`, DIR), 'utf8'));
}

/** {dtype: "float32", shape, zlib_b64} -> Float32Array (little-endian). */
export function decodeArray({ dtype, shape, zlib_b64: data }) {
  if (dtype !== 'float32') throw new Error(`unsupported dtype ${dtype}`);
  const bytes = inflateSync(Buffer.from(data, 'base64'));
  const out = new Float32Array(bytes.length / 4);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
  if (out.length !== shape.reduce((a, b) => a * b, 1)) throw new Error('array size does not match its shape');
  return out;
}

/** Tracks the largest |a - b| seen under a label, for the test's report. */
export class MaxDiff {
  constructor() { this.max = new Map(); }
  add(label, a, b) {
    const d = Math.abs(a - b);
    if (!(d <= (this.max.get(label) ?? -1))) this.max.set(label, Number.isNaN(d) ? Infinity : d);
    return d;
  }
  report() {
    return [...this.max].map(([k, v]) => `${k}: ${v.toExponential(2)}`).join(', ');
  }
}

// kpose.tracking.TrackerConfig's names (as the golden files hold them) -> tracking.js Tracker options.
const TRACKER_NAMES = {
  similarity: 'similarity', min_pose_score: 'minPoseScore', min_similarity: 'minSimilarity',
  max_tracks: 'maxTracks', max_age_ms: 'maxAgeMs', keypoint_threshold: 'keypointThreshold',
  min_keypoints: 'minKeypoints', smoothing: 'smoothing', min_cutoff: 'minCutoff', beta: 'beta',
  d_cutoff: 'dCutoff', outlier: 'outlier', score_alpha: 'scoreAlpha',
};

/** A golden file's Python TrackerConfig as tracking.js Tracker options (similarity 'box' ->
 * 'boundingBox'); a setting the port does not know raises. */
export function trackerOptions(config) {
  const out = {};
  for (const [k, v] of Object.entries(config)) {
    if (!(k in TRACKER_NAMES)) throw new Error(`Python tracker setting ${k} has no JS name`);
    out[TRACKER_NAMES[k]] = k === 'similarity' && v === 'box' ? 'boundingBox' : v;
  }
  return out;
}

/** Poses {score, box?, keypoints: [{x, y, score}]} from golden poses [{keypoints: [[x, y, s]], score?, box?}]. */
export function goldenPoses(poses) {
  return poses.map((p) => ({
    ...(p.score === undefined ? {} : { score: p.score }), ...(p.box === undefined ? {} : { box: p.box }),
    keypoints: p.keypoints.map(([x, y, score]) => ({ x, y, score })),
  }));
}

/** Asserts that JS-decoded people are the Python reference's, in the same order: person
 * scores and keypoints within tol (diff records the largest differences), missing keypoints
 * (score 0) in the same places, with no peak id. */
export function assertSamePeople(decoded, expected, diff, tol) {
  assert.equal(decoded.length, expected.length, 'number of people');
  decoded.forEach((person, p) => {
    assert.ok(diff.add('person score', person.score, expected[p].score) <= tol, `person ${p} score`);
    person.keypoints.forEach(([x, y, s], k) => {
      const [ex, ey, es] = expected[p].keypoints[k];
      assert.equal(s, es, `person ${p} keypoint ${k} score (missing keypoints are 0)`);
      assert.equal(person.peaks[k] < 0, es === 0, `person ${p} keypoint ${k} peak id`);
      assert.ok(diff.add('x', x, ex) <= tol, `person ${p} keypoint ${k} x ${x} vs ${ex}`);
      assert.ok(diff.add('y', y, ey) <= tol, `person ${p} keypoint ${k} y ${y} vs ${ey}`);
    });
  });
}
