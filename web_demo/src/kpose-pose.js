// kpose-pose: run exported kpose TF.js models in the browser, with the API of
// @tensorflow-models/pose-detection (createDetector / estimatePoses / reset / dispose; the
// options keep its names: pose-options.js maps and checks them).
//
//   import { createDetector } from './kpose-pose.js';
//   const detector = await createDetector('models/efficientpose_rt/model.json',
//     { backend: 'webgl', enableTracking: true, trackerType: 'keypoint', enableSmoothing: true, maxPoses: 6 });
//   const poses = await detector.estimatePoses(videoElement, { flipHorizontal: true });   // timestamp: video.currentTime
//   const poses = await detector.estimatePoses(img, { boxes: [[x, y, w, h]] }, performance.now());
//   // [{score, box: [x, y, w, h], keypoints: [{x, y, score, name}], id}] in image pixels; id when tracking
//   detector.lastBoxes    // top-down: the person boxes that frame was cropped at
//   detector.reset();     // a new video: tracks forgotten, ids start again from 1
//   detector.dispose();
//
// Everything a model needs is read from its model.json (userDefinedMetadata.kpose,
// written by kpose's exporter): input size, skeleton (its OKS sigmas for keypoint tracking),
// codec, crop padding.
//
// Top-down models (task "top_down") follow kpose's PoseModel.predict exactly: each
// person box (default: the whole image, no padding) is grown to the input's aspect
// ratio, padded, and warped into the input with the same affine map and bilinear
// sampling (tf.image.transform is TF's ImageProjectiveTransformV3: outside pixels
// read 0), rounded back to 8-bit like kpose's warp of uint8 images; the heatmaps are
// decoded with argmax + DARK (decoders.js) and mapped back through the inverse affine.
// Pose score = mean score of the keypoints scoring > 0.2 (kpose.metrics.instance_scores).
// On video (a tracker running: tracking or smoothing on) a top-down model follows
// PoseModel.track without a detector (person-boxes.js): each frame is cropped where the
// people the tracker matched on the previous frame were (their keypoint boxes grown by
// BOX_MARGIN per side, at least KEEP_SIZE of the last crop); a crop's pose is dropped when it
// scores below the tracker's minPoseScore or resembles no track (minSimilarity), and
// duplicates too; while nobody was matched the whole frame is the box. Boxes given to
// estimatePoses override it.
//
// Bottom-up models (task "bottom_up", outputs heatmaps + the codec's limb maps: pafs for
// a PAF codec, limb_heatmaps for a limb heatmap codec) see the whole image fitted into the
// input exactly as kpose.transforms.fit_matrix does it (decoders.js fitMatrix: uniform
// scale to fit, centred, margins 0), with the same warp. The people found by the codec's
// grouping (bottom-up.js decodeBottomUp: the metadata's codec.type picks PafCodec's or
// LimbHeatmapCodec's decode; limbs and thresholds from the metadata; another type is
// refused) are mapped back to the image in the codec's order; pose score = the codec's
// person score; missing keypoints have score 0 and x = y = null; the box is the found
// keypoints' extent. Person boxes and the flip test are top-down options: passing them
// to a bottom-up detector raises, as PoseModel.predict does.
//
// After decoding (pose-options.js postprocess): poses below scoreThreshold are dropped, the
// maxPoses best kept, then kpose's Tracker (tracking.js = kpose/tracking.py) gives ids and
// smooths keypoints, and flipHorizontal mirrors x last.
import * as tf from '@tensorflow/tfjs';

import { bottomUpCodec, decodeBottomUp } from './bottom-up.js';
import {
  cropMatrix, decodeTopDown, fitMatrix, flipAverage, flipIndex, instanceScore, invertAffine,
} from './decoders.js';
import { topDownFrame } from './person-boxes.js';
import { detectorOptions, estimationConfig, frameTimestamp, makeTracking, postprocess } from './pose-options.js';

export const SCHEMA_VERSION = 1;
// kpose.metrics.instance_scores: keypoints above this count towards the pose score.
export const INSTANCE_SCORE_THRESHOLD = 0.2;
// PoseModel.predict raises for both on bottom-up models; so does the detector.
const BOTTOM_UP_NO_FLIP = 'flipTest: the flip test is for top-down models; bottom-up models have none yet ' +
  '(PoseModel.predict); leave flipTest unset';
const TRACKING_KEYS = ['enableTracking', 'trackerType', 'trackerConfig', 'enableSmoothing', 'smoothingConfig'];
const BOTTOM_UP_NO_BOXES = 'boxes: person boxes are for top-down models; a bottom-up model finds every person ' +
  'in the whole image; leave boxes unset';

/** Validates and returns the kpose metadata of a loaded GraphModel. */
export function readMetadata(model, where = 'model.json') {
  const meta = model.metadata?.kpose;
  if (!meta) {
    throw new Error(`${where}: no userDefinedMetadata.kpose; export the model with kpose's exporter ` +
      '(kpose.export(model, "tfjs"))');
  }
  if (meta.format !== 'kpose' || meta.schema_version !== SCHEMA_VERSION) {
    throw new Error(`${where}: kpose metadata format ${meta.format} schema ${meta.schema_version}; ` +
      `this demo reads schema ${SCHEMA_VERSION}`);
  }
  const task = meta.model?.task ?? 'top_down';
  if (!['top_down', 'bottom_up'].includes(task)) throw new Error(`${where}: unknown task ${task}`);
  const type = meta.codec?.type;
  if (task === 'top_down' && type !== 'heatmap') {
    throw new Error(`${where}: codec.type is ${JSON.stringify(type)}; a top_down model's codec is "heatmap" ` +
      '(re-export the model with kpose)');
  }
  // A bottom-up codec type this page has no decoder for, or settings its codec does not
  // have, raise here, before anything runs.
  const limbOutput = task === 'bottom_up' ? bottomUpCodec(meta.codec, where) : null;
  limbOutput?.params(meta.codec, `${where}: codec`);
  const [, H, W, C] = meta.input.shape;
  if (C !== 3 || H !== meta.codec.input_size[0] || W !== meta.codec.input_size[1]) {
    throw new Error(`${where}: input shape ${meta.input.shape} does not match codec input_size ${meta.codec.input_size}`);
  }
  const K = meta.skeleton?.keypoints?.length;
  if (!K) throw new Error(`${where}: kpose metadata has no skeleton.keypoints; re-export the model with kpose`);
  const outOfRange = (limbs) => (limbs ?? []).find((l) => l.length !== 2 || l.some((k) => !(k >= 0 && k < K)));
  const badLimb = outOfRange(meta.skeleton.limbs);
  if (badLimb) {
    throw new Error(`${where}: skeleton.limbs has [${badLimb}]; limbs join 2 of the ${K} keypoints ` +
      '(re-export the model with kpose)');
  }
  // What the network puts out must be what the decoder reads: K heatmap channels (and 2 PAF
  // channels or 1 limb heatmap per codec limb), or every person would be decoded from the
  // wrong maps.
  const shapes = Object.fromEntries((meta.outputs ?? []).map((o) => [o.name, o.shape]));
  if (shapes.heatmaps && shapes.heatmaps.at(-1) !== K) {
    throw new Error(`${where}: output heatmaps has ${shapes.heatmaps.at(-1)} channels, skeleton ` +
      `${meta.skeleton.name} ${K} keypoints (re-export the model with kpose)`);
  }
  if (task === 'bottom_up') {
    const limbs = meta.codec.limbs;
    if (!Array.isArray(limbs) || !limbs.length || outOfRange(limbs)) {
      throw new Error(`${where}: codec.limbs ${JSON.stringify(limbs)}: a ${type} codec needs limbs joining 2 of the ` +
        `${K} keypoints (re-export the model with kpose)`);
    }
    const { output, perLimb } = limbOutput;
    if (shapes[output] && shapes[output].at(-1) !== perLimb * limbs.length) {
      throw new Error(`${where}: output ${output} has ${shapes[output].at(-1)} channels; codec.limbs needs ` +
        `${perLimb * limbs.length} (${perLimb} per limb; re-export the model with kpose)`);
    }
  }
  return meta;
}

/** Loads model.json (+ weights) and returns a detector. Options (unknown ones raise):
 *   backend ('webgl' | 'wasm' | 'webgpu' | 'cpu'; default: TF.js's current), loadOptions (tf.loadGraphModel's),
 *   flipTest (top-down: average with the mirrored crop; default false; a bottom-up model raises),
 *   scoreThreshold (drop poses scoring below it; default 0), maxPoses (keep the best; default all),
 *   padding (box padding for top-down crops; default: the metadata's crop.padding, 1.25),
 *   refine ('dark' | 'none'),
 *   enableTracking (ids; default true), trackerType ('keypoint': OKS with the skeleton's sigmas,
 *   the default when it has them | 'boundingBox': IoU), trackerConfig ({maxTracks, maxAge (ms),
 *   minSimilarity, minPoseScore, keypointTrackerParams: {keypointConfidenceThreshold, keypointFalloff,
 *   minNumberOfKeypoints}, boundingBoxTrackerParams: {keypointConfidenceThreshold}}),
 *   enableSmoothing (One Euro filter per track; default true), smoothingConfig ({minCutoff, beta,
 *   dCutoff, outlier, scoreAlpha}). Defaults: kpose's (tracking.js TRACKER_DEFAULTS). */
export async function createDetector(modelUrl, options = {}) {
  detectorOptions(options); // unknown options raise before anything loads
  if (options.backend) {
    // setBackend resolves false (it does not throw) when a backend cannot start.
    if (!(await tf.setBackend(options.backend))) throw new Error(`TF.js backend ${options.backend} failed to start`);
  }
  await tf.ready();
  const model = await tf.loadGraphModel(modelUrl, options.loadOptions);
  try {
    return new KposeDetector(model, readMetadata(model, String(modelUrl)), options);
  } catch (e) {
    model.dispose(); // a model the detector refuses (metadata, options) is not kept
    throw e;
  }
}

export class KposeDetector {
  #tracking = null;

  constructor(model, metadata, options = {}) {
    this.model = model;
    this.metadata = metadata;
    this.task = metadata.model?.task ?? 'top_down';
    const o = detectorOptions(options);
    if (this.task === 'bottom_up' && o.flipTest) throw new Error(BOTTOM_UP_NO_FLIP);
    this.codec = metadata.codec;
    this.skeleton = metadata.skeleton;
    this.inputSize = metadata.codec.input_size;
    const tracking = Object.fromEntries(TRACKING_KEYS.map((k) => [k, o[k]]).filter(([, v]) => v !== undefined));
    for (const k of TRACKING_KEYS) delete o[k];
    this.options = { padding: metadata.crop?.padding ?? 1.25, ...o };
    this.setTracking(tracking);
    this.flipIndex = flipIndex(this.skeleton.keypoints.length, this.skeleton.flip_pairs ?? []);
    const names = (metadata.outputs ?? []).map((o) => o.name);
    this.outputNames = this.task === 'bottom_up' ? ['heatmaps', bottomUpCodec(metadata.codec).output] : ['heatmaps'];
    for (const n of this.outputNames) {
      if (names.length && !names.includes(n)) throw new Error(`model metadata lists outputs ${names}, no ${n}`);
    }
    this.inputName = metadata.input?.name ?? 'image';
    this.lastTimings = null;
    // Top-down: the person boxes [[x, y, w, h]] the last frame was cropped at; null for bottom-up.
    this.lastBoxes = null;
    this.disposed = false;
  }

  /** Replaces the tracking options ({enableTracking, trackerType, trackerConfig, enableSmoothing,
   * smoothingConfig}, createDetector's; unset ones take their defaults) and starts a new tracker
   * (ids from 1). Not in tfjs: the demo page's tracking and smoothing switches use it. */
  setTracking(options = {}) {
    const tracking = makeTracking(options, this.skeleton.oks_sigmas ?? null, this.skeleton.keypoints.length);
    this.#tracking = tracking;
    this.trackingOptions = {
      enableTracking: tracking?.ids ?? false, enableSmoothing: tracking?.smoothing ?? false,
      trackerType: tracking?.tracker.config.similarity,
      ...Object.fromEntries(Object.entries(options).filter(([k]) => k.endsWith('Config'))),
    };
  }

  /** The tracker in use (tracking.js Tracker), or null when tracking and smoothing are off. */
  get tracker() { return this.#tracking?.tracker ?? null; }

  /** Forgets every track (a new video): the next poses get ids from 1 again, unsmoothed.
   * (tfjs pose-detection keeps counting ids after reset; kpose's Tracker.reset restarts them.) */
  reset() {
    this.#tracking?.tracker.reset();
  }

  get backend() { return tf.getBackend(); }

  /** Poses in an image: HTMLImageElement | HTMLVideoElement | HTMLCanvasElement |
   * ImageBitmap | ImageData | tf.Tensor3D (RGB 0..255, [H, W, 3]).
   * config (unknown keys raise): boxes (person boxes [[x, y, w, h], ...], top-down; default: where
   * the people tracked on the previous frame were on video, else the whole image), flipTest (overrides the detector's), padding (for boxes), flipHorizontal
   * (mirror the output: x -> width - 1 - x, for a mirrored webcam view; default false),
   * maxPoses (overrides the detector's).
   * timestampMs: the frame's time in milliseconds, for tracking and smoothing; default a video's
   * currentTime * 1000, else performance.now(). */
  async estimatePoses(image, config = {}, timestampMs = undefined) {
    if (this.disposed) throw new Error('estimatePoses: the detector was disposed');
    const t0 = performance.now();
    const cfg = estimationConfig(config);
    if (this.task === 'bottom_up') {
      if (cfg.boxes) throw new Error(BOTTOM_UP_NO_BOXES);
      if (cfg.flipTest) throw new Error(BOTTOM_UP_NO_FLIP);
    }
    const timestamp = frameTimestamp(image, timestampMs);
    const owned = !(image instanceof tf.Tensor);
    const pixels = owned ? tf.browser.fromPixels(image, 3) : image;
    if (pixels.rank !== 3 || pixels.shape[2] !== 3) {
      if (owned) pixels.dispose();
      throw new Error(`image tensor must be [H, W, 3], got [${pixels.shape}]`);
    }
    const timings = { crop: 0, inference: 0, decode: 0, tracking: 0 };
    try {
      const poses = await this.#framePoses(pixels, cfg, timings, timestamp);
      const t = performance.now();
      const out = postprocess(poses, {
        scoreThreshold: this.options.scoreThreshold, maxPoses: cfg.maxPoses ?? this.options.maxPoses,
        flipHorizontal: cfg.flipHorizontal ?? false, width: pixels.shape[1],
      }, this.#tracking, timestamp);
      timings.tracking = performance.now() - t;
      this.lastTimings = { ...timings, total: performance.now() - t0 };
      return out;
    } finally {
      if (owned) pixels.dispose();
    }
  }

  /** The decoded poses of one frame for the tracker. A top-down model with a tracker running and
   * no boxes given crops where the people tracked on the previous frame were, as PoseModel.track
   * (person-boxes.js). */
  async #framePoses(pixels, config, timings, timestampMs) {
    if (this.task !== 'top_down' || !this.#tracking || config.boxes) return this.detect(pixels, config, timings);
    const { poses } = await topDownFrame(this.#tracking.tracker, timestampMs,
      (boxes) => this.detect(pixels, boxes ? { ...config, boxes } : config, timings));
    return poses;
  }

  /** Every pose the model finds in pixels ([H, W, 3] tensor), as decoded: no threshold,
   * maxPoses, tracking or mirroring (estimatePoses adds those). config: estimatePoses's. */
  async detect(pixels, config = {}, timings = { crop: 0, inference: 0, decode: 0 }) {
    return this.task === 'bottom_up' ? this.#bottomUp(pixels, timings) : this.#topDown(pixels, config, timings);
  }

  /** The crop fed to the model for image->crop matrix M, as PoseModel.predict makes it. */
  crop(pixels, M) {
    const [H, W] = this.inputSize;
    const inv = invertAffine(M);
    return tf.tidy(() => {
      const img = pixels.toFloat().expandDims(0);
      // tf.image.transform maps each output pixel through the 3x3 [a0 a1 a2; b0 b1 b2; c0 c1 1]
      // to an input position: here the crop->image affine.
      const transform = tf.tensor2d([[inv[0][0], inv[0][1], inv[0][2], inv[1][0], inv[1][1], inv[1][2], 0, 0]]);
      const warped = tf.image.transform(img, transform, 'bilinear', 'constant', 0, [H, W]);
      // kpose warps uint8 images and rounds back to uint8 (half to even, as tf.round).
      return warped.round().clipByValue(0, 255);
    });
  }

  /** Runs the network on one crop [1, H, W, 3]: {name: {data: Float32Array, shape}}. */
  async run(crop) {
    let out = this.model.execute({ [this.inputName]: crop }, this.outputNames);
    if (!Array.isArray(out)) out = [out];
    try {
      const result = {};
      for (let i = 0; i < out.length; i++) {
        result[this.outputNames[i]] = { data: await out[i].data(), shape: out[i].shape.slice(1) };
      }
      return result;
    } finally {
      out.forEach((t) => t.dispose());
    }
  }

  async #heatmaps(crop, flipTest, timings) {
    const t = performance.now();
    const { heatmaps } = await this.run(crop);
    if (flipTest) {
      const mirrored = tf.reverse(crop, 2);
      try {
        const other = (await this.run(mirrored)).heatmaps;
        heatmaps.data = flipAverage(heatmaps.data, other.data, heatmaps.shape, this.flipIndex);
      } finally {
        mirrored.dispose();
      }
    }
    timings.inference += performance.now() - t;
    return heatmaps;
  }

  async #topDown(pixels, config, timings) {
    const [imgH, imgW] = pixels.shape;
    const boxes = config.boxes ?? [[0, 0, imgW, imgH]];
    // PoseModel.predict: without boxes, the whole image with no padding.
    const padding = config.boxes ? (config.padding ?? this.options.padding) : 1.0;
    const flipTest = config.flipTest ?? this.options.flipTest;
    this.lastBoxes = boxes.map((b) => b.map(Number));
    const poses = [];
    for (const box of boxes) {
      let t = performance.now();
      const M = cropMatrix(box, this.inputSize, padding);
      const crop = this.crop(pixels, M);
      timings.crop += performance.now() - t;
      let hm;
      try {
        hm = await this.#heatmaps(crop, flipTest, timings);
      } finally {
        crop.dispose();
      }
      t = performance.now();
      const kps = decodeTopDown(hm.data, hm.shape, this.codec, M, this.options.refine);
      poses.push({
        score: instanceScore(kps, INSTANCE_SCORE_THRESHOLD),
        box: box.map(Number),
        keypoints: kps.map(([x, y, score], k) => ({ x, y, score, name: this.skeleton.keypoints[k] })),
      });
      timings.decode += performance.now() - t;
    }
    return poses;
  }

  async #bottomUp(pixels, timings) {
    this.lastBoxes = null;
    let t = performance.now();
    const M = fitMatrix(pixels.shape.slice(0, 2), this.inputSize);
    const input = this.crop(pixels, M);
    timings.crop += performance.now() - t;
    t = performance.now();
    let out;
    try {
      out = await this.run(input);
    } finally {
      input.dispose();
    }
    timings.inference += performance.now() - t;
    t = performance.now();
    const limbMaps = out[this.outputNames[1]].data;
    const people = decodeBottomUp(out.heatmaps.data, limbMaps, out.heatmaps.shape, this.codec, M);
    const poses = people.map(({ score, keypoints, box }) => ({
      score, box, keypoints: keypoints.map(([x, y, s], k) => ({ x, y, score: s, name: this.skeleton.keypoints[k] })),
    }));
    timings.decode += performance.now() - t;
    return poses;
  }

  dispose() {
    if (this.disposed) return;
    this.disposed = true;
    this.#tracking = null;
    this.model.dispose();
  }
}

export { tf };
