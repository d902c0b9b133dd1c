// Frames per second of the demo page in headless Chromium, per model and TF.js backend
// (driven by benchmarks/browser_fps.py, which exports the models and writes the tables):
//
//   node tools/browser_fps.mjs --dist BUILT_PAGE --models DIR --frames DIR --out fps.json
//        [--names a,b] [--backends webgl,wasm,webgpu,cpu] [--warmup 2] [--frames-max 30]
//        [--seconds 20] [--timeout 240]
//
// DIR holds exported models (DIR/NAME/model.json); --frames holds the video frames (PNG),
// decoded once into ImageBitmaps (as a <video> hands frames over: decoded). For each model and
// backend a fresh page loads the model (?model=...&backend=...), then the page's own frame
// step (kposeDemo.processFrame: TF.js upload of the frame, crop or fit warp, network, heatmap
// / PAF decoding, tracking and smoothing, drawing on the canvas) runs on the frames in turn
// at 30 fps timestamps: `warmup` frames untimed (kernel and shader compilation), then up to
// `frames-max` timed frames or `seconds` of them (at least 3). The page falls back to another
// backend when the requested one does not start; such a run is recorded as unavailable,
// with the page's reason. A run over `timeout` seconds is stopped and recorded as such.
// Each model and backend gets a browser of its own: a stopped run's queued WebGL / WebGPU work
// (SwiftShader computes it in Chromium's GPU process) ends with its browser instead of
// slowing the runs after it.
import { readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { startServer } from './serve.mjs';

const here = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const { values: args } = parseArgs({
  options: {
    dist: { type: 'string', default: path.join(here, 'dist') }, models: { type: 'string' }, frames: { type: 'string' },
    out: { type: 'string' }, names: { type: 'string' }, backends: { type: 'string', default: 'webgl,wasm,webgpu,cpu' },
    warmup: { type: 'string', default: '2' }, 'frames-max': { type: 'string', default: '30' },
    seconds: { type: 'string', default: '20' }, timeout: { type: 'string', default: '240' },
  },
});
if (!args.models || !args.frames || !args.out) {
  console.log('usage: node tools/browser_fps.mjs --dist DIR --models DIR --frames DIR --out fps.json [--names a,b] ' +
    '[--backends webgl,wasm,webgpu,cpu] [--warmup 2] [--frames-max 30] [--seconds 20] [--timeout 240]');
  process.exit(2);
}
const names = args.names ? args.names.split(',') : readdirSync(args.models).filter((n) => !n.includes('.'));
const frameFiles = readdirSync(args.frames).filter((f) => f.endsWith('.png')).sort();
if (!frameFiles.length) throw new Error(`${args.frames}: no .png frames`);

const { chromium } = await import('playwright-core');
const server = await startServer({ root: path.resolve(args.dist), mounts: { '/models/': args.models, '/frames/': args.frames } });
const launch = () => chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // No GPU here: WebGL runs on SwiftShader (software); WebGPU only where Chromium offers it.
  args: ['--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--ignore-gpu-blocklist', '--enable-unsafe-webgpu'],
});
let browserVersion = null;

/** The in-page measurement (runs in the browser). */
async function measure({ frameUrls, warmup, maxFrames, seconds }) {
  const demo = window.kposeDemo;
  const bitmaps = await Promise.all(frameUrls.map(async (u) => createImageBitmap(await (await fetch(u)).blob())));
  let i = 0;
  const next = async () => {
    const t0 = performance.now();
    const poses = await demo.processFrame(bitmaps[i % bitmaps.length], i * (1000 / 30));
    i += 1;
    return { ms: performance.now() - t0, poses };
  };
  const warm = [];
  for (let w = 0; w < warmup; w++) warm.push((await next()).ms);
  const ms = [];
  const stages = [];
  let people = 0;
  let ids = new Set();
  const start = performance.now();
  while (ms.length < maxFrames && (ms.length < 3 || performance.now() - start < seconds * 1000)) {
    const r = await next();
    ms.push(r.ms);
    stages.push({ ...demo.detector.lastTimings });
    people += r.poses.length;
    r.poses.forEach((p) => { if (typeof p.id === 'number') ids.add(p.id); });
  }
  const nav = navigator.gpu ? await navigator.gpu.requestAdapter().then((a) => (a ? (a.info?.description || a.info?.vendor || 'adapter') : null)).catch(() => null) : null;
  return {
    warmupMs: warm, ms, stages, peoplePerFrame: people / ms.length, trackIds: ids.size,
    backend: demo.detector.backend, tracking: demo.detector.trackingOptions, inputSize: demo.detector.inputSize,
    task: demo.detector.task, frameSize: [bitmaps[0].height, bitmaps[0].width], webgpuAdapter: nav,
    webglRenderer: (() => {
      const gl = document.createElement('canvas').getContext('webgl2');
      const ext = gl?.getExtension('WEBGL_debug_renderer_info');
      return ext ? gl.getParameter(ext.UNMASKED_RENDERER_WEBGL) : null;
    })(),
    crossOriginIsolated: self.crossOriginIsolated, hardwareConcurrency: navigator.hardwareConcurrency,
  };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const results = [];
for (const name of names) {
  for (const backend of args.backends.split(',')) {
    const started = Date.now();
    // Other jobs on the machine slow every backend: the 1-minute load average is kept with each run.
    const entry = { model: name, backend, loadAverage: Number(os.loadavg()[0].toFixed(2)) };
    const browser = await launch();
    browserVersion = browser.version();
    const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    const timeoutMs = Number(args.timeout) * 1000;
    page.setDefaultTimeout(timeoutMs);
    const consoleLines = [];
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
    let timer;
    try {
      const run = (async () => {
        const query = new URLSearchParams({ model: `models/${name}/model.json`, backend });
        await page.goto(`${server.url}/index.html?${query}`);
        await page.waitForFunction(() => ['ready', 'error'].includes(window.kposeDemo?.state), null, { timeout: timeoutMs, polling: 200 });
        const state = await page.evaluate(() => ({ state: window.kposeDemo.state, error: window.kposeDemo.error,
          backend: window.kposeDemo.detector?.backend, fallbacks: window.kposeDemo.fallbacks }));
        entry.loadSeconds = (Date.now() - started) / 1000;
        if (state.state === 'error') throw new Error(state.error);
        if (state.backend !== backend) {
          entry.unavailable = `${backend} did not run: ${state.fallbacks.join('; ') || `page fell back to ${state.backend}`}`;
          return;
        }
        const r = await page.evaluate(measure, {
          frameUrls: frameFiles.map((f) => `/frames/${f}`), warmup: Number(args.warmup),
          maxFrames: Number(args['frames-max']), seconds: Number(args.seconds),
        });
        const stage = (k) => median(r.stages.map((s) => s[k]));
        Object.assign(entry, r, {
          medianMs: median(r.ms), fps: 1000 / median(r.ms), frames: r.ms.length,
          stageMedianMs: { crop: stage('crop'), inference: stage('inference'), decode: stage('decode'), tracking: stage('tracking'),
            estimatePoses: stage('total'),
            // The frame's upload (tf.browser.fromPixels) and the rest outside the named stages.
            upload: median(r.stages.map((s) => s.total - s.crop - s.inference - s.decode - s.tracking)) },
        });
        delete entry.stages;
      })();
      run.catch(() => {}); // after a timeout the closed browser rejects it: already reported
      await Promise.race([run, new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${args.timeout} s`)), timeoutMs); })]);
    } catch (e) {
      entry.error = e.message.split('\n')[0];
      entry.console = consoleLines.slice(-8);
    } finally {
      clearTimeout(timer);
      await browser.close().catch(() => {});
    }
    entry.seconds = (Date.now() - started) / 1000;
    results.push(entry);
    const what = entry.fps ? `${entry.fps.toFixed(2)} fps (median ${entry.medianMs.toFixed(1)} ms over ${entry.frames} frames)`
      : entry.unavailable ?? `error: ${entry.error}`;
    console.log(`${name} ${backend}: ${what} [${entry.seconds.toFixed(0)} s]`);
    writeFileSync(args.out, `${JSON.stringify({ browser: browserVersion, results }, null, 1)}\n`);
  }
}
await server.close();
