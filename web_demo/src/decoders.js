// Ports of kpose's NumPy reference decoders and crop geometry (no dependencies).
//
// kpose/transforms.py         boxToCenterScale, affineMatrix, invertAffine, applyAffine,
//                             cropMatrix, fitMatrix (fit_matrix)
// kpose/codecs/heatmap.py     savgolQuadratic2d, darkRefine, decodeHeatmaps (HeatmapCodec.decode)
// kpose/codecs/paf.py,        smoothMaps, upsampleMaps, findPeaks, pafPeaks, limbOrder,
//   paf_grouping.py           pafSample, limbCandidates, assemble, groupPeople (PafCodec.group),
//                             decodePafs (PafCodec.decode), flipBackPafs (flip_back)
// kpose/metrics.py            instanceScores
// kpose/pose_model.py         decodeTopDown (PoseModel.predict after the network; bottom-up:
//                             bottom-up.js)
// LimbHeatmapCodec.decode (the same grouping, another limb score) is in limb-heatmap.js.
//
// All arithmetic is float64 on float32 inputs (float32, via Math.fround, where the
// NumPy code computes in float32: upsampleMaps), in the same operation order as the
// NumPy code wherever the order decides a comparison (thresholds, ties, sample
// pixels), so the outputs agree with the Python reference to float64 rounding and
// every discrete decision (argmax, peaks, matching, people order) is identical.
// test/*.test.mjs checks this against vectors written by the Python codecs.
//
// Coordinates: pixel centres at integers (pixel i covers [i-0.5, i+0.5]); heatmap
// coordinate u = (x + 0.5) / stride - 0.5. Heatmaps are channels-last (HWC) arrays,
// exactly what a TF.js model returns: value(k, y, x) = data[(y * w + x) * K + k].

export const LOG_FLOOR = 1e-4;

// ---------------------------------------------------------------------------
// numpy helpers

/** numpy's pairwise summation (add.reduce of float64 along one axis): 8 partial
 * sums for n >= 8, recursive halves above 128. Needed where a sum feeds a
 * ranking (mean PAF score, person score), so the rounding matches NumPy's. */
export function pairwiseSum(a, start = 0, n = a.length - start, stride = 1) {
  if (n < 8) {
    let res = 0;
    for (let i = 0; i < n; i++) res += a[start + i * stride];
    return res;
  }
  if (n <= 128) {
    const r = new Float64Array(8);
    for (let j = 0; j < 8; j++) r[j] = a[start + j * stride];
    let i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (let j = 0; j < 8; j++) r[j] += a[start + (i + j) * stride];
    }
    let res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; i++) res += a[start + i * stride];
    return res;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return pairwiseSum(a, start, n2, stride) + pairwiseSum(a, start + n2 * stride, n - n2, stride);
}

const clip = (x, lo, hi) => Math.min(Math.max(x, lo), hi);

// ---------------------------------------------------------------------------
// crop geometry (kpose/transforms.py)

/** COCO box [x, y, w, h] -> {center: [cx, cy], scale: [sw, sh]}: grown to the
 * crop's aspect ratio (width / height), then multiplied by padding. */
export function boxToCenterScale(box, aspectRatio, padding = 1.25) {
  const [x, y, w, h] = box.map(Number);
  const center = [x + 0.5 * w - 0.5, y + 0.5 * h - 0.5];
  const sw = Math.max(w, h * aspectRatio);
  const sh = Math.max(h, w / aspectRatio);
  return { center, scale: [sw * padding, sh * padding] };
}

/** Image -> crop affine [[a00, a01, tx], [a10, a11, ty]] for a crop of outputSize
 * [H, W]: centre +- scale/2 maps onto the crop's outer pixel edges. rotation in
 * degrees (counter-clockwise as displayed), flip mirrors inside the crop. */
export function affineMatrix(center, scale, outputSize, rotation = 0, flip = false) {
  const [outH, outW] = outputSize;
  const [cx, cy] = center;
  const kx = outW / scale[0];
  const ky = outH / scale[1];
  const theta = rotation * (Math.PI / 180); // numpy's deg2rad: x * (pi / 180)
  const cos = Math.cos(theta);
  const sin = Math.sin(theta);
  let a00 = kx * cos;
  let a01 = kx * sin;
  const a10 = -ky * sin;
  const a11 = ky * cos;
  const sign = flip ? -1 : 1;
  a00 = sign * a00;
  a01 = sign * a01;
  const tx = 0.5 * (outW - 1) - (a00 * cx + a01 * cy);
  const ty = 0.5 * (outH - 1) - (a10 * cx + a11 * cy);
  return [[a00, a01, tx], [a10, a11, ty]];
}

/** Inverse of a [2, 3] affine (crop -> image for a crop matrix). */
export function invertAffine(M) {
  const [[a, b, c], [d, e, f]] = M;
  const det = a * e - b * d;
  const ia = e / det;
  const ib = -b / det;
  const id = -d / det;
  const ie = a / det;
  return [[ia, ib, -(ia * c + ib * f)], [id, ie, -(id * c + ie * f)]];
}

/** Map one point [x, y, ...rest] with M; extra entries (e.g. a score) pass through. */
export function applyAffine(M, point) {
  const [x, y, ...rest] = point;
  return [x * M[0][0] + y * M[0][1] + M[0][2], x * M[1][0] + y * M[1][1] + M[1][2], ...rest];
}

/** The top-down crop of PoseModel.predict: box [x, y, w, h] -> image->crop matrix for
 * a model input of inputSize [H, W]. */
export function cropMatrix(box, inputSize, padding = 1.25) {
  const [H, W] = inputSize;
  const { center, scale } = boxToCenterScale(box, W / H, padding);
  return affineMatrix(center, scale, inputSize);
}

/** kpose.transforms.fit_matrix: image->input matrix for a whole image of imageSize
 * [h, w] in a model input of inputSize [H, W] (bottom-up models): scaled to fit inside
 * the input with its aspect ratio kept, centred; the margins are zero padding. */
export function fitMatrix(imageSize, inputSize) {
  const [h, w] = imageSize;
  return cropMatrix([0, 0, w, h], inputSize, 1.0);
}

// ---------------------------------------------------------------------------
// heatmap codec (kpose/codecs/heatmap.py)

/** The least-squares map (NumPy: pinv of the design matrix) from a row-major
 * (2ry+1) x (2rx+1) window to the coefficients (c, gx, gy, hxx/2, hxy, hyy/2) of
 * a quadratic about its centre: 6 rows of (2ry+1)(2rx+1) weights.
 *
 * Closed form: on a symmetric grid the columns dx, dy, dx*dy are orthogonal to
 * everything else, and 1, dx^2 - mean, dy^2 - mean are mutually orthogonal, so
 * every weight is one integer ratio (exactly rounded; pinv agrees to ~1e-16). */
export function savgolQuadratic2d(ry, rx) {
  const nx = 2 * rx + 1;
  const ny = 2 * ry + 1;
  const n = nx * ny;
  let sx2 = 0; // sum of dx^2 over one row
  let sy2 = 0;
  let qx = 0; // sum of (3 dx^2 - rx(rx+1))^2 over one row
  let qy = 0;
  const ex = (d, r) => 3 * d * d - r * (r + 1); // 3 * (d^2 - mean d^2), an integer
  for (let d = -rx; d <= rx; d++) { sx2 += d * d; qx += ex(d, rx) ** 2; }
  for (let d = -ry; d <= ry; d++) { sy2 += d * d; qy += ex(d, ry) ** 2; }
  const rows = Array.from({ length: 6 }, () => new Float64Array(n));
  let i = 0;
  for (let dy = -ry; dy <= ry; dy++) {
    for (let dx = -rx; dx <= rx; dx++, i++) {
      const a = (3 * ex(dx, rx)) / (ny * qx); // coefficient of dx^2
      const b = (3 * ex(dy, ry)) / (nx * qy); // coefficient of dy^2
      rows[1][i] = dx / (ny * sx2);
      rows[2][i] = dy / (nx * sy2);
      rows[3][i] = a;
      rows[4][i] = (dx * dy) / (sx2 * sy2);
      rows[5][i] = b;
      // Constant term (unused by DARK): mean minus the squares' mean contributions.
      rows[0][i] = 1 / n - (rx * (rx + 1) / 3) * a - (ry * (ry + 1) / 3) * b;
    }
  }
  return rows;
}

const savgolCache = new Map();
function savgolCached(ry, rx) {
  const key = `${ry},${rx}`;
  if (!savgolCache.has(key)) savgolCache.set(key, savgolQuadratic2d(ry, rx));
  return savgolCache.get(key);
}

/** DARK window radius from sigma (default_dark_radius). */
export function defaultDarkRadius(sigma) {
  return Math.max(1, Math.floor(sigma));
}

/** Sub-pixel centres of blobs at integer maxima (kpose's dark_refine).
 *
 * hm: Float32Array channels-last [h, w, K]; peaks: [{k, iy, ix}].
 * Returns [[u, v], ...] in heatmap pixels; the integer position where the fitted
 * quadratic has no maximum. The window is shifted inward at the border.
 *
 * The log-window is fitted relative to the log-peak (the NumPy code fits the
 * plain log). The fit is the same up to rounding (the constant only moves the
 * unused c), but a flat window then gives exactly zero curvature in any summation
 * order, i.e. the documented integer fallback; with the plain log NumPy's BLAS
 * rounding noise decides the step on flat maps (up to a pixel). */
export function darkRefine(hm, shape, peaks, radius) {
  const [h, w, K] = shape;
  const ry = Math.min(radius, Math.floor((h - 1) / 2));
  const rx = Math.min(radius, Math.floor((w - 1) / 2));
  if (ry < 1 || rx < 1) throw new Error(`DARK needs a heatmap of at least 3x3, got ${h}x${w}`);
  const P = savgolCached(ry, rx);
  const size = (2 * ry + 1) * (2 * rx + 1);
  const logw = new Float64Array(size);
  return peaks.map(({ k, iy, ix }) => {
    const cy = clip(iy, ry, h - 1 - ry);
    const cx = clip(ix, rx, w - 1 - rx);
    const peak = hm[(iy * w + ix) * K + k];
    const floor = LOG_FLOOR * Math.max(peak, 1e-30);
    const logPeak = Math.log(Math.max(peak, floor));
    let i = 0;
    for (let dy = -ry; dy <= ry; dy++) {
      for (let dx = -rx; dx <= rx; dx++, i++) {
        logw[i] = Math.log(Math.max(hm[((cy + dy) * w + (cx + dx)) * K + k], floor)) - logPeak;
      }
    }
    const coef = [1, 2, 3, 4, 5].map((j) => {
      let s = 0;
      for (let t = 0; t < size; t++) s += logw[t] * P[j][t];
      return s;
    });
    const [gx, gy] = coef;
    const hxx = 2 * coef[2];
    const hxy = coef[3];
    const hyy = 2 * coef[4];
    const det = hxx * hyy - hxy * hxy;
    if (!(hxx < 0 && det > 0)) return [ix, iy];
    // Newton step to the stationary point of the fitted quadratic: -H^-1 g.
    const ox = -(hyy * gx - hxy * gy) / det;
    const oy = -(hxx * gy - hxy * gx) / det;
    return [clip(cx + ox, ix - 1, ix + 1), clip(cy + oy, iy - 1, iy + 1)];
  });
}

/** A codec dict from metadata ({type: "heatmap" | "paf" | "limb_heatmap", input_size, heatmap_size, ...}). */
export function codecStride(codec) {
  const [H, W] = codec.input_size;
  const [h, w] = codec.heatmap_size;
  return [W / w, H / h];
}

export function codecRadius(codec) {
  return codec.dark_radius ?? defaultDarkRadius(codec.sigma);
}

/** Heatmap (u, v) -> input (x, y). */
export function toInput(codec, u, v) {
  const [sx, sy] = codecStride(codec);
  return [(u + 0.5) * sx - 0.5, (v + 0.5) * sy - 0.5];
}

/** Input (x, y) -> heatmap (u, v). */
export function toHeatmap(codec, x, y) {
  const [sx, sy] = codecStride(codec);
  return [(x + 0.5) / sx - 0.5, (y + 0.5) / sy - 0.5];
}

/** HeatmapCodec.decode for one [h, w, K] map: argmax (first maximum; NumPy returns
 * the first NaN if any) + DARK -> [[x, y, score], ...] in input pixels (float64;
 * Python casts its result to float32). refine: "dark" or "none". */
export function decodeHeatmaps(hm, shape, codec, refine = 'dark') {
  const [h, w, K] = shape;
  const [ch, cw] = codec.heatmap_size;
  if (h !== ch || w !== cw) throw new Error(`heatmaps are ${h}x${w}, codec expects ${ch}x${cw}`);
  if (hm.length !== h * w * K) throw new Error(`heatmap data has ${hm.length} values, shape says ${h * w * K}`);
  const peaks = [];
  const scores = [];
  for (let k = 0; k < K; k++) {
    let best = 0;
    let bestVal = hm[k];
    if (!Number.isNaN(bestVal)) {
      for (let i = 1; i < h * w; i++) {
        const v = hm[i * K + k];
        if (Number.isNaN(v)) { best = i; bestVal = v; break; }
        if (v > bestVal) { best = i; bestVal = v; }
      }
    }
    peaks.push({ k, iy: Math.floor(best / w), ix: best % w });
    scores.push(bestVal);
  }
  let uv;
  if (refine === 'dark') uv = darkRefine(hm, shape, peaks, codecRadius(codec));
  else if (refine === 'none') uv = peaks.map(({ iy, ix }) => [ix, iy]);
  else throw new Error(`refine must be 'dark' or 'none', got ${refine}`);
  return uv.map(([u, v], k) => [...toInput(codec, u, v), scores[k]]);
}

// ---------------------------------------------------------------------------
// PAF codec (kpose/codecs/paf.py and kpose/codecs/paf_grouping.py)

export const PAF_DEFAULTS = {
  limb_width: 1.0, sigma: 2.0, dark_radius: null, peak_threshold: 0.1, smooth_sigma: 0.0, upsample: 1,
  num_samples: 10, paf_threshold: 0.05, min_sample_fraction: 0.8, max_limb_fraction: 0.5, min_keypoints: 3,
};
const CODEC_REQUIRED = ['input_size', 'heatmap_size', 'limbs'];

/** A bottom-up codec dict (metadata's codec) of `type` -> every decode parameter, `defaults`
 * filled in, checked as the Python constructor `pyClass` checks them: the grouping settings
 * every bottom-up codec shares (PafCodec's checks), then `check(p, fail)` for its own.
 * `where` names the codec's place in errors. An unknown key raises, as from_dict does: a
 * misspelt setting would otherwise decode with its default. */
export function bottomUpParams(codec, type, defaults, pyClass, where, check = () => {}) {
  const fail = (field, problem) => {
    throw new Error(`${where}.${field} ${problem} (${pyClass}; re-export the model with kpose)`);
  };
  if ((codec.type ?? type) !== type) fail('type', `is ${JSON.stringify(codec.type)}, not "${type}"`);
  for (const key of Object.keys(codec)) {
    if (key !== 'type' && !CODEC_REQUIRED.includes(key) && !(key in defaults)) fail(key, 'is not a setting of the codec');
  }
  for (const key of CODEC_REQUIRED) if (codec[key] === undefined) fail(key, 'is missing');
  const p = { ...defaults, ...codec, type };
  if (!(p.num_samples >= 2)) fail('num_samples', `must be >= 2 (points on a limb), got ${p.num_samples}`);
  if (!Number.isInteger(p.upsample) || p.upsample < 1) fail('upsample', `must be an integer >= 1 (1: off), got ${p.upsample}`);
  if (!(p.smooth_sigma >= 0)) fail('smooth_sigma', `must be >= 0 (0: off), got ${p.smooth_sigma}`);
  if (!(p.min_keypoints >= 1)) fail('min_keypoints', `must be >= 1, got ${p.min_keypoints}`);
  const bad = p.limbs.find((l) => l.length !== 2 || l[0] === l[1] || !(Math.min(...l) >= 0));
  if (bad) fail('limbs', `has [${bad}]; limbs join two different keypoints (non-negative indices)`);
  check(p, fail);
  return p;
}

/** PafCodec.from_dict: a PAF codec dict -> every decode parameter (bottomUpParams). */
export function pafParams(codec, where = 'codec') {
  return bottomUpParams(codec, 'paf', PAF_DEFAULTS, 'kpose.codecs.paf.PafCodec', where, (p, fail) => {
    if (!(p.limb_width > 0)) fail('limb_width', `must be > 0 (heatmap pixels), got ${p.limb_width}`);
  });
}

/** gaussian_kernel: normalised 1-D Gaussian taps, radius ceil(3 sigma) (at least 1). */
export function gaussianKernel(sigma) {
  const r = Math.max(1, Math.ceil(3 * sigma));
  const k = new Float64Array(2 * r + 1);
  for (let i = 0; i <= 2 * r; i++) {
    const x = i - r;
    k[i] = Math.exp(-(x * x) / (2 * sigma * sigma));
  }
  const total = pairwiseSum(k);
  for (let i = 0; i < k.length; i++) k[i] /= total;
  return k;
}

/** smooth_maps: separable Gaussian blur of channels-last [h, w, C] maps, edges replicated,
 * accumulated in float64 tap by tap (NumPy's order), returned as float32. */
export function smoothMaps(maps, shape, sigma) {
  if (!(sigma > 0)) return maps;
  const [h, w, C] = shape;
  const k = gaussianKernel(sigma);
  const r = (k.length - 1) / 2;
  const rows = new Float64Array(h * w * C);
  for (let y = 0; y < h; y++) {
    for (let i = 0; i < w * C; i++) {
      let acc = k[0] * maps[clip(y - r, 0, h - 1) * w * C + i];
      for (let j = 1; j <= 2 * r; j++) acc += k[j] * maps[clip(y - r + j, 0, h - 1) * w * C + i];
      rows[y * w * C + i] = acc;
    }
  }
  const out = new Float32Array(h * w * C);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < C; c++) {
        const at = (xx) => rows[(y * w + clip(xx, 0, w - 1)) * C + c];
        let acc = k[0] * at(x - r);
        for (let j = 1; j <= 2 * r; j++) acc += k[j] * at(x - r + j);
        out[(y * w + x) * C + c] = acc;
      }
    }
  }
  return out;
}

/** Source rows (lo, hi) and weight t (float32) of the n * factor upsampled rows: fine
 * pixel Y sits at coarse (Y + 0.5) / factor - 0.5, edge values held beyond the outer centres. */
function lerpWeights(n, factor) {
  return Array.from({ length: n * factor }, (_, Y) => {
    const src = (Y + 0.5) / factor - 0.5;
    const i0 = Math.floor(src);
    const t = Math.fround(src - i0);
    return { lo: clip(i0, 0, n - 1), hi: clip(i0 + 1, 0, n - 1), t, s: Math.fround(1 - t) };
  });
}

const f32 = Math.fround;

/** upsample_maps: bilinear x factor upsampling of channels-last [h, w, C] maps (pixel
 * centres aligned; float32 arithmetic, columns first, then rows) -> {data, shape}. */
export function upsampleMaps(maps, shape, factor) {
  const [h, w, C] = shape;
  if (factor === 1) return { data: maps, shape };
  const H = h * factor;
  const W = w * factor;
  const wide = new Float32Array(h * W * C);
  lerpWeights(w, factor).forEach(({ lo, hi, t, s }, X) => {
    for (let y = 0; y < h; y++) {
      for (let c = 0; c < C; c++) {
        wide[(y * W + X) * C + c] = f32(maps[(y * w + lo) * C + c] * s) + f32(maps[(y * w + hi) * C + c] * t);
      }
    }
  });
  const out = new Float32Array(H * W * C);
  lerpWeights(h, factor).forEach(({ lo, hi, t, s }, Y) => {
    for (let i = 0; i < W * C; i++) out[Y * W * C + i] = f32(wide[lo * W * C + i] * s) + f32(wide[hi * W * C + i] * t);
  });
  return { data: out, shape: [H, W, C] };
}

/** 3x3 NMS peaks of a channels-last [h, w, K] map, sorted by (k, iy, ix): >= every
 * neighbour and > every neighbour earlier in raster order (a plateau keeps its
 * first pixel). The threshold compares in float32, as NumPy does for a float32
 * array against a Python float. */
export function findPeaks(hm, shape, threshold) {
  const [h, w, K] = shape;
  const thr = Math.fround(threshold);
  const out = [];
  for (let k = 0; k < K; k++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const v = hm[(y * w + x) * K + k];
        if (!(v >= thr)) continue;
        let keep = true;
        for (let dy = -1; dy <= 1 && keep; dy++) {
          for (let dx = -1; dx <= 1; dx++) {
            if (dy === 0 && dx === 0) continue;
            const yy = y + dy;
            const xx = x + dx;
            const nb = yy < 0 || yy >= h || xx < 0 || xx >= w ? -Infinity : hm[(yy * w + xx) * K + k];
            const earlier = dy < 0 || (dy === 0 && dx < 0);
            if (earlier ? !(v > nb) : !(v >= nb)) { keep = false; break; }
          }
        }
        if (keep) out.push({ k, iy: y, ix: x });
      }
    }
  }
  return out;
}

/** Limb indices breadth-first from the keypoint with most limbs (lowest index on
 * ties); several components one after the other, best-connected first. */
export function limbOrder(limbs, numKeypoints) {
  const adjacency = Array.from({ length: numKeypoints }, () => []);
  limbs.forEach(([a, b], i) => {
    adjacency[a].push([b, i]);
    adjacency[b].push([a, i]);
  });
  const degree = adjacency.map((n) => n.length);
  const roots = [...Array(numKeypoints).keys()].sort((p, q) => degree[q] - degree[p] || p - q);
  const order = [];
  const seenLimb = new Set();
  const seenKp = new Set();
  for (const root of roots) {
    if (seenKp.has(root) || !degree[root]) continue;
    const queue = [root];
    seenKp.add(root);
    while (queue.length) {
      const k = queue.shift();
      for (const [other, i] of adjacency[k]) {
        if (!seenLimb.has(i)) { seenLimb.add(i); order.push(i); }
        if (!seenKp.has(other)) { seenKp.add(other); queue.push(other); }
      }
    }
  }
  return order;
}

/** PafCodec.peak_radius: the DARK radius on the processed maps, in their pixels. */
export function pafPeakRadius(params) {
  const s = params.sigma;
  const b = params.smooth_sigma;
  return (params.dark_radius ?? defaultDarkRadius(Math.sqrt(s * s + b * b))) * params.upsample;
}

/** PafCodec.peaks: blur, upsample, NMS and DARK -> {kp, uv (heatmap grid), score,
 * processed: {data, shape}, found: the NMS peaks on the processed maps}. */
export function pafPeaks(heatmaps, shape, params) {
  const processed = upsampleMaps(smoothMaps(heatmaps, shape, params.smooth_sigma), shape, params.upsample);
  const { data, shape: [, W, K] } = processed;
  const found = findPeaks(data, processed.shape, params.peak_threshold);
  const f = params.upsample;
  const fine = found.length ? darkRefine(data, processed.shape, found, pafPeakRadius(params)) : [];
  const uv = fine.map(([u, v]) => (f > 1 ? [(u + 0.5) / f - 0.5, (v + 0.5) / f - 0.5] : [u, v]));
  return {
    kp: found.map((p) => p.k), uv, score: found.map(({ k, iy, ix }) => data[(iy * W + ix) * K + k]),
    processed, found,
  };
}

/** paf_samples: the PAF limb score at one sample, the field . the pair's unit vector. maps:
 * channels-last [h, w, 2L], at: the sample pixel's first channel, limb: the limb's index. */
export function pafSample(maps, at, limb, ux, uy) {
  return maps[at + 2 * limb] * ux + maps[at + 2 * limb + 1] * uy;
}

/** limb_candidates: scored candidate connections of all limbs, in greedy order (limb
 * position in `order`, then descending score, then peak ids). uv: peak positions on the
 * limb maps' grid, kp: their keypoints (ascending); maps channels-last [h, w, C] (shape).
 * sample(maps, at, limb, ux, uy) gives the limb's evidence at one sample pixel (at: its
 * first channel): pafSample (PafCodec), limbMapSample (limb-heatmap.js, LimbHeatmapCodec).
 * Returns [{p, a, b, score}] (a, b: peak ids). A pair stops being sampled once more
 * samples failed than min_sample_fraction allows: the outcome is the same. */
export function limbCandidates(uv, kp, maps, shape, limbs, order, params, sample = pafSample) {
  const [h, w, C] = shape;
  const n = params.num_samples;
  const step = 1 / (n - 1);
  const t = Float64Array.from({ length: n }, (_, s) => (s === n - 1 ? 1 : s * step)); // np.linspace
  let need = -1;
  for (let c = 0; c <= n && need < 0; c++) if (c / n >= params.min_sample_fraction) need = c;
  if (need < 0) return [];
  const misses = n - need;
  const byKp = new Map();
  kp.forEach((k, id) => { if (!byKp.has(k)) byKp.set(k, []); byKp.get(k).push(id); });
  const out = [];
  order.forEach((li, p) => {
    const [a, b] = limbs[li];
    for (const ia of byKp.get(a) ?? []) {
      for (const ib of byKp.get(b) ?? []) {
        const ax = uv[ia][0];
        const ay = uv[ia][1];
        const dx = uv[ib][0] - ax;
        const dy = uv[ib][1] - ay;
        const length = Math.sqrt(dx * dx + dy * dy);
        if (!(length > 1e-6)) continue;
        const denom = Math.max(length, 1e-9);
        const ux = dx / denom;
        const uy = dy / denom;
        let sum = 0;
        let above = 0;
        let failed = 0;
        for (let s = 0; s < n && failed <= misses; s++) {
          const ix = clip(Math.floor(ax + t[s] * dx + 0.5), 0, w - 1);
          const iy = clip(Math.floor(ay + t[s] * dy + 0.5), 0, h - 1);
          const d = sample(maps, (iy * w + ix) * C, li, ux, uy);
          sum = s === 0 ? d : sum + d; // NumPy sums the samples in order
          if (d > params.paf_threshold) above += 1;
          else failed += 1;
        }
        if (failed > misses) continue;
        let score = sum / n;
        if (params.max_limb_fraction > 0) score += Math.min(0, (params.max_limb_fraction * h) / denom - 1);
        if (score > 0 && above / n >= params.min_sample_fraction) out.push({ p, a: ia, b: ib, score });
      }
    }
  });
  out.sort((x, y) => x.p - y.p || (x.score > y.score ? -1 : x.score < y.score ? 1 : 0) || x.a - y.a || x.b - y.b);
  return out;
}

/** assemble: greedy matching per limb (each peak once per limb), then people: a match
 * extends the person owning one of its peaks (unless it has another peak of the other
 * keypoint), starts a person, merges two people whose slots do not collide, or closes
 * a cycle. Returns {people: [Int32Array K of peak ids, -1 empty], totals: limb score sums}. */
export function assemble(candidates, kp, K) {
  const owner = new Int32Array(kp.length).fill(-1);
  const people = [];
  const totals = [];
  let current = -1;
  let used = new Set();
  for (const { p, a: pa, b: pb, score } of candidates) {
    if (p !== current) { current = p; used = new Set(); }
    if (used.has(pa) || used.has(pb)) continue;
    used.add(pa);
    used.add(pb);
    const a = kp[pa];
    const b = kp[pb];
    let oa = owner[pa];
    const ob = owner[pb];
    if (oa < 0 && ob < 0) {
      people.push(new Int32Array(K).fill(-1));
      totals.push(0);
      oa = people.length - 1;
    } else if (oa >= 0 && ob >= 0) {
      if (oa !== ob) {
        const sa = people[oa];
        const sb = people[ob];
        let clash = false;
        for (let k = 0; k < K; k++) if (sa[k] >= 0 && sb[k] >= 0) clash = true;
        if (clash) continue; // two different people
        for (let k = 0; k < K; k++) if (sb[k] >= 0) { sa[k] = sb[k]; owner[sb[k]] = oa; }
        totals[oa] += totals[ob];
        people[ob] = null;
      }
    } else if ((oa < 0 ? people[ob][a] : people[oa][b]) >= 0) {
      continue; // the owner already has another peak of the other keypoint
    } else if (oa < 0) {
      oa = ob;
    }
    people[oa][a] = pa;
    people[oa][b] = pb;
    owner[pa] = oa;
    owner[pb] = oa;
    totals[oa] += score;
  }
  const kept = people.map((s, i) => i).filter((i) => people[i] !== null);
  return { people: kept.map((i) => people[i]), totals: kept.map((i) => totals[i]) };
}

/** PafCodec.decode: heatmaps [h, w, K] and pafs [h, w, 2L] (channels-last Float32Arrays)
 * -> people sorted by descending score:
 * [{keypoints: [[x, y, score], ...] (missing: [0, 0, 0]), score, peaks: [peak id or -1]}].
 * codec: PafCodec.to_dict() (input_size, heatmap_size, limbs, sigma, ...). */
export function decodePafs(heatmaps, pafs, shape, codec) {
  const params = pafParams(codec);
  const [h, w, K] = shape;
  const limbs = params.limbs;
  const L = limbs.length;
  const [ch, cw] = params.heatmap_size;
  if (h !== ch || w !== cw || heatmaps.length !== h * w * K || pafs.length !== h * w * 2 * L) {
    throw new Error(`expected heatmaps ${ch}x${cw}xK and pafs ${ch}x${cw}x${2 * L} (heatmap_size, 2 x limbs), ` +
      `got shape ${shape} with ${heatmaps.length} and ${pafs.length} values`);
  }
  if (limbs.some(([a, b]) => Math.max(a, b) >= K)) {
    throw new Error(`limbs use keypoints beyond the ${K} heatmap channels; pass the skeleton's limbs for this model`);
  }
  return groupPeople(pafPeaks(heatmaps, shape, params), pafs, [h, w, 2 * L], K, params, pafSample);
}

/** PafCodec.group, steps 3-6 on pafPeaks' output: limb candidates scored by sample() on the
 * limb maps ([h, w, C] mapShape; pafSample, or limb-heatmap.js's limbMapSample), greedy
 * matching, assembly, min_keypoints, person scores and order -> decodePafs' people. */
export function groupPeople({ kp, uv, score: peakScore }, maps, mapShape, K, params, sample) {
  const limbs = params.limbs;
  const candidates = limbCandidates(uv, kp, maps, mapShape, limbs, limbOrder(limbs, K), params, sample);
  const { people, totals } = assemble(candidates, kp, K);
  if (params.min_keypoints === 1) {
    // A peak no limb joined to anything is a person of one keypoint.
    const owned = new Set(people.flatMap((s) => Array.from(s).filter((id) => id >= 0)));
    kp.forEach((k, id) => {
      if (owned.has(id)) return;
      const slots = new Int32Array(K).fill(-1);
      slots[k] = id;
      people.push(slots);
      totals.push(0);
    });
  }
  const found = [];
  people.forEach((slots, p) => {
    const ids = Array.from(slots).filter((id) => id >= 0);
    if (ids.length < params.min_keypoints) return;
    const kpScores = new Float64Array(K);
    const keypoints = Array.from(slots, (id, k) => {
      if (id < 0) return [0, 0, 0];
      kpScores[k] = peakScore[id];
      return [...toInput(params, uv[id][0], uv[id][1]), peakScore[id]];
    });
    const score = (pairwiseSum(kpScores) + totals[p]) / (K + limbs.length);
    found.push({ keypoints, score, peaks: Array.from(slots), first: Math.min(...ids) });
  });
  // np.lexsort((firsts, -scores)): descending score, then lowest first peak id.
  found.sort((p, q) => (p.score > q.score ? -1 : p.score < q.score ? 1 : p.first - q.first));
  return found.map(({ keypoints, score, peaks: ids }) => ({ keypoints, score, peaks: ids }));
}

/** flip_back: outputs for the mirrored image -> the original frame. Heatmaps: width
 * reversed, channel k from flipIndex[k]; PAFs: width reversed, limb l from limbPerm[l],
 * x negated, times limbSign[l] (Skeleton.limb_flip()). Channels-last float32 maps. */
export function flipBackPafs(heatmaps, pafs, shape, flipIndex, limbPerm, limbSign) {
  const [h, w, K] = shape;
  const L = limbPerm.length;
  const hm = new Float32Array(h * w * K);
  const pf = new Float32Array(h * w * 2 * L);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      const j = y * w + (w - 1 - x);
      for (let k = 0; k < K; k++) hm[i * K + k] = heatmaps[j * K + flipIndex[k]];
      for (let l = 0; l < L; l++) {
        pf[i * 2 * L + 2 * l] = pafs[j * 2 * L + 2 * limbPerm[l]] * -limbSign[l];
        pf[i * 2 * L + 2 * l + 1] = pafs[j * 2 * L + 2 * limbPerm[l] + 1] * limbSign[l];
      }
    }
  }
  return { heatmaps: hm, pafs: pf };
}

// ---------------------------------------------------------------------------
// scores and the top-down pipeline

/** kpose.metrics.instance_scores for one person: mean score of the keypoints
 * scoring > threshold (0 when none). */
export function instanceScore(keypoints, threshold = 0.2) {
  const s = new Float64Array(keypoints.length);
  let count = 0;
  keypoints.forEach((kp, i) => {
    if (kp[2] > threshold) { s[i] = kp[2]; count += 1; }
  });
  return count > 0 ? pairwiseSum(s) / count : 0;
}

/** PoseModel.decode_crops for one crop: heatmaps [h, w, K] of the crop made with
 * image->crop matrix M -> keypoints [[x, y, score], ...] in image pixels. The crop
 * coordinates are rounded to float32 first, as HeatmapCodec.decode returns them. */
export function decodeTopDown(hm, shape, codec, M, refine = 'dark') {
  const inv = invertAffine(M);
  return decodeHeatmaps(hm, shape, codec, refine)
    .map((kp) => applyAffine(inv, kp.map(Math.fround)));
}

/** PoseModel.heatmaps' flip test on channels-last [h, w, K] float32 maps: average
 * the crop's output with the mirrored crop's output, mirrored back and with
 * left/right channels swapped (flipIndex). float32 arithmetic, as NumPy's. */
export function flipAverage(out, mirroredOut, shape, flipIndex) {
  const [h, w, K] = shape;
  const res = new Float32Array(h * w * K);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * K;
      const j = (y * w + (w - 1 - x)) * K;
      for (let k = 0; k < K; k++) {
        res[i + k] = 0.5 * Math.fround(out[i + k] + mirroredOut[j + flipIndex[k]]);
      }
    }
  }
  return res;
}

/** Skeleton.flip_index(): channel permutation that swaps every flip pair. */
export function flipIndex(numKeypoints, flipPairs) {
  const perm = [...Array(numKeypoints).keys()];
  for (const [a, b] of flipPairs) { perm[a] = b; perm[b] = a; }
  return perm;
}
