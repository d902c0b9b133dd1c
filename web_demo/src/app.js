// The demo page: pick a model and a TF.js backend, run on the webcam, an uploaded
// image/video or ?image=URL, draw every person found with the skeleton of the model's
// metadata and its track id, show the person count, live FPS and the active backend.
// Tracking (ids) and smoothing (kpose's Tracker, through the detector's enableTracking /
// enableSmoothing) are switched on the page; a still image is a video of one frame
// (the tracker is reset before it: ids from 1, nothing smoothed).
//
// URL parameters: model (model.json URL; default the first entry of models/index.json),
// backend (webgl | wasm | webgpu | cpu; default webgl), image (run once on this image),
// boxes (JSON [[x, y, w, h], ...]: person boxes for top-down models on that image),
// flip (1: flip test, top-down models), tracking=0 / smoothing=0 (start with them off),
// names=1 (start with keypoint names drawn). On video a top-down model crops each frame where
// the people tracked on the previous frame were (kpose-pose.js), the whole frame while nobody was.
// Bottom-up models find every person in the whole
// image themselves: boxes or flip=1 with one is reported as an error.
// window.kposeDemo exposes the state for scripted runs (test/e2e.mjs): the last result, and
// what was drawn (drawn: per pose, the limbs [a, b], keypoint indices and names [k, name]; labels).
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import '@tensorflow/tfjs-backend-webgpu';

import { drawPlan, keypointSides } from './drawing.js';
import { createDetector } from './kpose-pose.js';

// The wasm binaries are copied beside the bundle by `npm run build`: no CDN, works offline.
setWasmPaths(new URL('wasm/', document.baseURI).href);

// Tried in this order after the requested backend fails to start or to run.
const FALLBACKS = ['webgl', 'wasm', 'cpu'];
// Top-down keypoints (and limbs between them) scoring above this are drawn: a top-down
// model marks every keypoint, confident or not (the pose-score threshold). A bottom-up
// model's missing keypoints have no position; every found one passed its codec's peak
// threshold and is drawn.
const DRAW_THRESHOLD = 0.2;

const $ = (id) => document.getElementById(id);
const ui = {
  model: $('model-select'), backend: $('backend-select'), webcam: $('webcam-button'), file: $('file-input'),
  flip: $('flip-input'), tracking: $('tracking-input'), smoothing: $('smoothing-input'), names: $('names-input'), fps: $('fps'), backendLabel: $('backend'), timing: $('timing'), info: $('model-info'),
  people: $('people'),
  status: $('status'), canvas: $('view'), video: $('video'),
};
const ctx = ui.canvas.getContext('2d');
const params = new URLSearchParams(location.search);

const demo = {
  state: 'loading', error: null, result: null, detector: null, modelUrl: null,
  requestedBackend: params.get('backend') || 'webgl', fallbacks: [], source: null, generation: 0,
  fps: null, labels: [], drawn: [], sides: [], runImage, processFrame, boxes: params.get('boxes') ? JSON.parse(params.get('boxes')) : undefined,
};
window.kposeDemo = demo;

function setState(state, message) {
  demo.state = state;
  document.body.dataset.state = state;
  if (message !== undefined) ui.status.textContent = message;
}

function fail(error) {
  console.error(error);
  demo.error = String(error?.message ?? error);
  setState('error', demo.error);
}

// ---------------------------------------------------------------------------
// models and backends

async function listModels() {
  try {
    const res = await fetch('models/index.json');
    if (!res.ok) return [];
    const index = await res.json();
    const entries = Array.isArray(index) ? index : index.models ?? [];
    // Entries: "models/x/model.json" or {name, url}.
    return entries.map((e) => (typeof e === 'string' ? { name: e, url: e } : { name: e.name ?? e.url, url: e.url }));
  } catch {
    return [];
  }
}

async function startBackend(name) {
  try {
    if (await tf.setBackend(name)) {
      await tf.ready();
      return true;
    }
  } catch (e) {
    demo.fallbacks.push(`${name}: ${e.message}`);
    return false;
  }
  demo.fallbacks.push(`${name}: failed to start`);
  return false;
}

/** Loads the model on the requested backend, falling back (webgl -> wasm -> cpu) when a
 * backend does not start or fails its first inference (e.g. no usable WebGL). */
async function loadDetector(modelUrl, requested) {
  const generation = ++demo.generation;
  demo.detector?.dispose();
  demo.detector = null;
  demo.fallbacks = [];
  demo.fps = null;
  demo.lastFrameAt = undefined;
  // Problems with the model itself are reported as they are, not as backend failures.
  const res = await fetch(modelUrl);
  if (!res.ok) throw new Error(`${modelUrl}: HTTP ${res.status}`);
  if (!(await res.json()).userDefinedMetadata?.kpose) {
    throw new Error(`${modelUrl}: no userDefinedMetadata.kpose; export the model with kpose's exporter`);
  }
  const order = [requested, ...FALLBACKS.filter((b) => b !== requested)];
  for (const backend of order) {
    setState('loading', `Loading ${modelUrl} on ${backend}…`);
    if (!(await startBackend(backend))) continue;
    let detector;
    try {
      detector = await createDetector(modelUrl, trackingOptions());
      // A warm-up run compiles the kernels (shaders) now, and proves the backend works.
      const [H, W] = detector.inputSize;
      const blank = tf.zeros([H, W, 3], 'int32');
      try { await detector.estimatePoses(blank, {}, 0); } finally { blank.dispose(); }
      detector.reset();
    } catch (e) {
      detector?.dispose();
      demo.fallbacks.push(`${backend}: ${e.message}`);
      continue;
    }
    if (generation !== demo.generation) { detector.dispose(); return null; }
    demo.detector = detector;
    demo.sides = keypointSides(detector.skeleton);
    // The flip test exists for top-down models only (kpose-pose.js raises otherwise).
    ui.flip.disabled = detector.task !== 'top_down';
    if (ui.flip.disabled) ui.flip.checked = false;
    demo.modelUrl = modelUrl;
    const m = detector.metadata;
    ui.backendLabel.textContent = `backend ${tf.getBackend()}` + (backend !== requested ? ` (${requested} failed)` : '');
    ui.backend.value = tf.getBackend();
    ui.info.textContent = `${m.model.name} · ${m.model.task} · ${detector.inputSize.join('×')} · ` +
      `${m.skeleton.name} (${m.skeleton.keypoints.length} keypoints) · ${m.precision}`;
    if (demo.fallbacks.length) console.warn('backend fallbacks:', demo.fallbacks);
    return detector;
  }
  throw new Error(`no TF.js backend could run the model (${demo.fallbacks.join('; ')})`);
}

// ---------------------------------------------------------------------------
// drawing

// The colour of each side (drawing.js keypointSides: from the skeleton's names and flip pairs).
const SIDE_COLORS = { left: '#35c759', right: '#ff9f0a', centre: '#0a84ff' };

/** Draws the poses; what was drawn (limbs [a, b], keypoint indices and names, per pose) is kept
 * in kposeDemo.drawn. */
function drawPoses(poses, width, height) {
  const { skeleton, task } = demo.detector;
  // kpose puts pixel centres at integers, the canvas at i + 0.5.
  const cx = (k) => k.x + 0.5;
  const cy = (k) => k.y + 0.5;
  const unit = Math.max(2, Math.max(width, height) / 320);
  ctx.lineCap = 'round';
  const plan = drawPlan(poses, skeleton, demo.sides, task === 'bottom_up' ? 0 : DRAW_THRESHOLD, { names: ui.names.checked });
  demo.drawn = plan.map(({ limbs, keypoints, names }) => ({
    limbs: limbs.map(([a, b]) => [a, b]), keypoints: keypoints.map(([k]) => k), names,
  }));
  demo.labels = [];
  for (const [i, pose] of poses.entries()) {
    ctx.lineWidth = unit;
    for (const [a, b, side] of plan[i].limbs) {
      const ka = pose.keypoints[a];
      const kb = pose.keypoints[b];
      ctx.strokeStyle = SIDE_COLORS[side];
      ctx.beginPath();
      ctx.moveTo(cx(ka), cy(ka));
      ctx.lineTo(cx(kb), cy(kb));
      ctx.stroke();
    }
    for (const [j, side] of plan[i].keypoints) {
      const k = pose.keypoints[j];
      ctx.fillStyle = SIDE_COLORS[side];
      ctx.beginPath();
      ctx.arc(cx(k), cy(k), 1.5 * unit, 0, 2 * Math.PI);
      ctx.fill();
    }
    for (const [j, name] of plan[i].names) writeName(name, pose.keypoints[j], unit);
    const shown = plan[i].keypoints.map(([j]) => pose.keypoints[j]);
    if (!shown.length) continue;
    // A tracked person: "id 3" (+ score, bottom-up); untracked bottom-up people: "#n score"
    // (their order in the codec's list) so that overlapping people are told apart.
    const score = task === 'bottom_up' ? ` ${pose.score.toFixed(2)}` : '';
    if (typeof pose.id === 'number') labelPerson(`id ${pose.id}${score}`, shown, unit, idColor(pose.id));
    else if (task === 'bottom_up') labelPerson(`#${i + 1}${score}`, shown, unit, 'rgba(0, 0, 0, 0.6)');
  }
}

/** A keypoint's name, up and to the right of it: white on a dark outline, readable on any image. */
function writeName(name, k, unit) {
  ctx.font = `${Math.round(5 * unit)}px system-ui, sans-serif`;
  ctx.textBaseline = 'bottom';
  ctx.lineJoin = 'round';
  ctx.lineWidth = unit;
  ctx.strokeStyle = 'rgba(0, 0, 0, 0.75)';
  ctx.fillStyle = '#ffffff';
  ctx.strokeText(name, k.x + 0.5 + 2 * unit, k.y + 0.5 - unit);
  ctx.fillText(name, k.x + 0.5 + 2 * unit, k.y + 0.5 - unit);
}

/** A colour per track id (golden-angle hues): the same person keeps its colour. */
function idColor(id) {
  return `hsla(${(id * 137.508) % 360}, 75%, 32%, 0.85)`;
}

/** The label above the top-left of a person's drawn keypoints; kept in kposeDemo.labels. */
function labelPerson(text, keypoints, unit, background) {
  const x = Math.min(...keypoints.map((k) => k.x));
  const y = Math.min(...keypoints.map((k) => k.y));
  demo.labels.push(text);
  ctx.font = `${Math.round(6 * unit)}px system-ui, sans-serif`;
  const w = ctx.measureText(text).width + 2 * unit;
  const h = 8 * unit;
  const top = Math.max(0, y - h - 2 * unit);
  ctx.fillStyle = background;
  ctx.fillRect(x, top, w, h);
  ctx.fillStyle = '#ffffff';
  ctx.textBaseline = 'middle';
  ctx.fillText(text, x + unit, top + h / 2);
}

function drawFrame(source, width, height, poses, boxes) {
  demo.lastFrame = { source, width, height, poses, boxes };
  if (ui.canvas.width !== width || ui.canvas.height !== height) {
    ui.canvas.width = width;
    ui.canvas.height = height;
  }
  ctx.drawImage(source, 0, 0, width, height);
  if (boxes) {
    ctx.strokeStyle = '#ffffff';
    ctx.lineWidth = Math.max(1, Math.max(width, height) / 640);
    // A COCO box covers pixel columns x .. x+w-1, i.e. canvas x .. x+w (canvas pixel i spans [i, i+1]).
    for (const [x, y, w, h] of boxes) ctx.strokeRect(x, y, w, h);
  }
  drawPoses(poses, width, height);
}

function showPeople(poses) {
  ui.people.textContent = `${poses.length} ${poses.length === 1 ? 'person' : 'people'}`;
  ui.people.dataset.count = String(poses.length);
}

/** ms: the time from one shown frame to the next (the live FPS, a running average). */
function showTimings(ms) {
  const t = demo.detector.lastTimings;
  demo.fps = demo.fps === null ? 1000 / ms : 0.9 * demo.fps + 0.1 * (1000 / ms);
  ui.fps.textContent = `FPS ${demo.fps.toFixed(1)}`;
  if (t) {
    ui.timing.textContent = `crop ${t.crop.toFixed(1)} ms · model ${t.inference.toFixed(1)} ms · ` +
      `decode ${t.decode.toFixed(1)} ms · tracking ${t.tracking.toFixed(1)} ms`;
  }
}

/** The detector's tracking switches as the page's checkboxes set them. */
function trackingOptions() {
  return { enableTracking: ui.tracking.checked, enableSmoothing: ui.smoothing.checked };
}

/** One frame of a video (or of the benchmark, benchmarks/browser_fps.py): poses (tracked,
 * smoothed) at timestampMs, drawn, counted. Resolves to the poses. */
async function processFrame(source, timestampMs, width = source.videoWidth ?? source.naturalWidth ?? source.width,
  height = source.videoHeight ?? source.naturalHeight ?? source.height) {
  const poses = await demo.detector.estimatePoses(source, { flipTest: ui.flip.checked }, timestampMs);
  drawFrame(source, width, height, poses);
  showPeople(poses);
  return poses;
}

// ---------------------------------------------------------------------------
// sources

function stopVideo() {
  const v = ui.video;
  v.pause();
  if (v.srcObject) v.srcObject.getTracks().forEach((t) => t.stop());
  v.srcObject = null;
  if (v.src) { URL.revokeObjectURL(v.src); v.removeAttribute('src'); }
}

async function loadImage(url) {
  const img = new Image();
  img.crossOrigin = 'anonymous';
  img.src = url;
  await img.decode();
  return img;
}

/** Runs the detector once on the current image; the result is also kept in kposeDemo.result. */
async function runImage() {
  const img = demo.source?.kind === 'image' ? demo.source.el : null;
  if (!img || !demo.detector) throw new Error('no image or no model loaded');
  const t = performance.now();
  // URL boxes belong to the top-down model asked for; a model switched to later may be bottom-up.
  const boxes = demo.detector.task === 'top_down' ? demo.boxes : undefined;
  // A still image is a video of its own: new tracks (ids from 1), nothing to smooth against.
  demo.detector.reset();
  // The detector gets the image's stored pixel values, as kpose (Pillow) reads the file; the canvas
  // shows it colour-managed. (A photo with an ICC profile, e.g. a phone's Display P3, is otherwise
  // converted to sRGB before the model sees it, and its keypoints move away from PoseModel.predict's.)
  const stored = await createImageBitmap(img, { colorSpaceConversion: 'none' });
  let poses;
  try {
    poses = await demo.detector.estimatePoses(stored, { flipTest: ui.flip.checked, boxes }, 0);
  } finally {
    stored.close();
  }
  const ms = performance.now() - t;
  drawFrame(img, img.naturalWidth, img.naturalHeight, poses, boxes);
  showPeople(poses);
  showTimings(ms);
  demo.result = {
    poses, backend: tf.getBackend(), requestedBackend: demo.requestedBackend, fallbacks: [...demo.fallbacks],
    timings: { ...demo.detector.lastTimings, wall: ms }, imageSize: [img.naturalHeight, img.naturalWidth],
    tracking: { ...demo.detector.trackingOptions }, labels: [...demo.labels], drawn: demo.drawn,
    modelUrl: demo.modelUrl, metadata: demo.detector.metadata, tfjsVersion: tf.version.tfjs,
    // The wasm backend runs multi-threaded only on a cross-origin isolated page.
    crossOriginIsolated: self.crossOriginIsolated,
  };
  setState('done', `${poses.length} ${poses.length === 1 ? 'person' : 'people'}` +
    (poses.length ? ` · score ${poses.map((p) => p.score.toFixed(3)).join(', ')}` : ''));
  return demo.result;
}

/** Person boxes and the flip test are top-down options: asked for in the URL with a
 * bottom-up model, they are an error to report, not something to drop silently. */
function checkUrlOptions(detector) {
  if (detector.task !== 'bottom_up') return;
  const name = detector.metadata.model.name;
  if (demo.boxes) {
    throw new Error(`boxes: person boxes are for top-down models; ${name} is bottom-up and finds every ` +
      'person (remove boxes= from the URL)');
  }
  if (params.get('flip') === '1') {
    throw new Error(`flip=1: the flip test is for top-down models; ${name} is bottom-up (remove flip=1 from the URL)`);
  }
}

async function showImage(url) {
  stopVideo();
  const img = await loadImage(url);
  demo.source = { kind: 'image', el: img };
  if (demo.detector) await runImage();
}

async function videoLoop(generation) {
  const v = ui.video;
  if (demo.source?.kind !== 'video' || generation !== demo.generation) return;
  // Each video frame once (its time is the tracker's timestamp: a frame seen twice would
  // restart the smoothing); a looping video starting over is a new video for the tracker.
  if (demo.detector && v.readyState >= 2 && !v.paused && !v.ended && v.currentTime !== demo.videoTime) {
    if (v.currentTime < demo.videoTime) demo.detector.reset();
    demo.videoTime = v.currentTime;
    const t = performance.now();
    try {
      await processFrame(v, v.currentTime * 1000);
      if (generation !== demo.generation) return;
      // The live FPS: from one shown frame to the next (the first: its own processing time).
      const now = performance.now();
      showTimings(now - (demo.lastFrameAt ?? t));
      demo.lastFrameAt = now;
    } catch (e) {
      // A model or backend switch disposes the detector under a running call: not an error.
      if (generation === demo.generation) fail(e);
      return;
    }
  }
  requestAnimationFrame(() => videoLoop(generation));
}

async function showVideo(setup) {
  stopVideo();
  await setup(ui.video);
  await ui.video.play();
  demo.source = { kind: 'video', el: ui.video };
  demo.videoTime = undefined;
  demo.lastFrameAt = undefined;
  demo.detector?.reset();
  setState('ready', 'Running on video');
  videoLoop(demo.generation);
}

// ---------------------------------------------------------------------------
// wiring

async function switchModel(url) {
  const u = new URL(location.href);
  u.searchParams.set('model', url);
  history.replaceState(null, '', u);
  await loadDetector(url, ui.backend.value || demo.requestedBackend);
  setState('ready', 'Ready: use the webcam or open an image or video');
  if (demo.source?.kind === 'image') await runImage();
  else if (demo.source?.kind === 'video') videoLoop(demo.generation);
}

ui.model.addEventListener('change', () => switchModel(ui.model.value).catch(fail));
ui.backend.addEventListener('change', () => {
  demo.requestedBackend = ui.backend.value;
  const u = new URL(location.href);
  u.searchParams.set('backend', ui.backend.value);
  history.replaceState(null, '', u);
  switchModel(demo.modelUrl).catch(fail);
});
ui.flip.addEventListener('change', () => { if (demo.source?.kind === 'image') runImage().catch(fail); });
// Names change only the drawing: a still image is drawn again, not estimated again (a video's
// next frame draws them).
ui.names.addEventListener('change', () => {
  const f = demo.lastFrame;
  if (demo.source?.kind !== 'image' || !f || !demo.detector) return;
  drawFrame(f.source, f.width, f.height, f.poses, f.boxes);
  if (demo.result) Object.assign(demo.result, { drawn: demo.drawn, labels: [...demo.labels] });
});
for (const box of [ui.tracking, ui.smoothing]) {
  box.addEventListener('change', () => {
    try {
      demo.detector?.setTracking(trackingOptions()); // a new tracker: ids from 1
    } catch (e) {
      fail(e);
      return;
    }
    if (demo.source?.kind === 'image') runImage().catch(fail);
  });
}
ui.webcam.addEventListener('click', () => showVideo(async (v) => {
  v.srcObject = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'user' }, audio: false });
}).catch(fail));
ui.file.addEventListener('change', () => {
  const file = ui.file.files[0];
  if (!file) return;
  const url = URL.createObjectURL(file);
  const run = file.type.startsWith('video/')
    ? showVideo(async (v) => { v.src = url; v.loop = true; })
    : showImage(url).finally(() => URL.revokeObjectURL(url));
  run.catch(fail);
});

async function main() {
  ui.flip.checked = params.get('flip') === '1';
  ui.tracking.checked = params.get('tracking') !== '0';
  ui.smoothing.checked = params.get('smoothing') !== '0';
  ui.names.checked = params.get('names') === '1';
  ui.backend.value = demo.requestedBackend;
  const models = await listModels();
  let modelUrl = params.get('model');
  for (const m of models) ui.model.add(new Option(m.name, m.url));
  if (modelUrl && !models.some((m) => m.url === modelUrl)) ui.model.add(new Option(modelUrl, modelUrl));
  modelUrl ||= models[0]?.url;
  if (!modelUrl) {
    setState('error', 'No model: open this page with ?model=models/<name>/model.json, or list models in models/index.json');
    return;
  }
  ui.model.value = modelUrl;
  const detector = await loadDetector(modelUrl, demo.requestedBackend);
  if (detector) checkUrlOptions(detector);
  setState('ready', 'Ready: use the webcam or open an image or video');
  const image = params.get('image');
  if (image) await showImage(image);
  else if (demo.source?.kind === 'image') await runImage(); // opened while the model loaded
  else if (demo.source?.kind === 'video') videoLoop(demo.generation);
}

main().catch(fail);
