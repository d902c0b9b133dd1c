// Browser end-to-end run of the built demo (npm run build first):
//
//   node test/e2e.mjs --model DIR --image PATH --out result.json --screenshot shot.png
//                     [--backend webgl|wasm|webgpu|cpu] [--boxes '[[x,y,w,h]]'] [--flip] [--names] [--timeout 180]
//   node test/e2e.mjs --cases cases.json     # [{model, image, out, screenshot?, boxes?, flip?, names?, backend?}, ...]
//
// Serves web_demo/dist plus each model folder (/models/e2e-N/) and image (/input/N/...)
// on a random localhost port, opens the demo page in headless Chromium (playwright-core;
// the browser is $CHROMIUM or /usr/bin/chromium, never downloaded), lets the page's own
// library (src/kpose-pose.js) estimate the poses, runs it once more for a warm timing,
// and writes result.json (poses, the person count the page shows, the skeleton the detector
// read from the model's metadata, the page's model line, the limbs and keypoints it drew,
// the backend actually used, fallbacks, timings) and a screenshot of the page with the
// skeletons drawn (--names: with the keypoint names, the page's names switch). With --cases, every case runs in turn in the one browser (a page each).
// The page falls back from webgl to wasm (then cpu) when a backend does not start or run;
// result.json records what ran.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { startServer } from '../tools/serve.mjs';

const here = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

const { values: args } = parseArgs({
  options: {
    model: { type: 'string' }, image: { type: 'string' }, out: { type: 'string' }, cases: { type: 'string' },
    screenshot: { type: 'string' }, backend: { type: 'string', default: 'webgl' },
    flip: { type: 'boolean', default: false }, names: { type: 'boolean', default: false }, boxes: { type: 'string' }, timeout: { type: 'string', default: '180' },
    dist: { type: 'string', default: path.join(here, 'dist') }, help: { type: 'boolean', short: 'h' },
  },
});
const USAGE = 'usage: node test/e2e.mjs --model DIR --image PATH --out result.json [--screenshot shot.png] ' +
  '[--backend webgl|wasm|webgpu|cpu] [--boxes JSON] [--flip] [--names] [--timeout SECONDS]\n' +
  '       node test/e2e.mjs --cases cases.json [--backend ...] [--timeout SECONDS]';
if (args.help || !(args.cases || (args.model && args.image && args.out))) {
  console.log(USAGE);
  process.exit(args.help ? 0 : 2);
}

function die(message) {
  console.error(`e2e: ${message}`);
  process.exit(1);
}

// One case per model + image: from the flags, or each entry of --cases (its keys: the flags' names;
// backend, flip and names default to the flags').
function readCases() {
  if (!args.cases) {
    return [{ model: args.model, image: args.image, out: args.out, screenshot: args.screenshot,
      boxes: args.boxes ? JSON.parse(args.boxes) : undefined, flip: args.flip, names: args.names, backend: args.backend }];
  }
  let list;
  try {
    list = JSON.parse(readFileSync(args.cases, 'utf8'));
  } catch (e) {
    die(`${args.cases}: ${e.message}`);
  }
  if (!Array.isArray(list) || !list.length) die(`${args.cases}: expected a non-empty JSON list of cases`);
  return list.map((c, i) => {
    const missing = ['model', 'image', 'out'].filter((k) => typeof c[k] !== 'string');
    if (missing.length) die(`${args.cases}: case ${i} lacks ${missing.join(', ')} (paths; see the usage line)`);
    return { backend: args.backend, flip: args.flip, names: args.names, ...c };
  });
}

const dist = path.resolve(args.dist);
if (!existsSync(path.join(dist, 'index.html'))) die(`${dist} has no index.html: run npm run build first`);
const cases = readCases().map((c, i) => {
  const modelDir = path.resolve(c.model);
  const image = path.resolve(c.image);
  if (!existsSync(path.join(modelDir, 'model.json'))) die(`${modelDir} has no model.json`);
  if (!existsSync(image)) die(`${image} not found`);
  return { ...c, modelDir, image, modelUrl: `/models/e2e-${i}/`, imageUrl: `/input/${i}/${encodeURIComponent(path.basename(image))}` };
});
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!existsSync(executablePath)) die(`no browser at ${executablePath} (apt-get install chromium, or set CHROMIUM)`);

const { chromium } = await import('playwright-core');
const timeoutMs = Number(args.timeout) * 1000;
const mounts = {};
for (const c of cases) {
  mounts[c.modelUrl] = c.modelDir;
  mounts[decodeURIComponent(c.imageUrl)] = c.image;
}
const server = await startServer({ root: dist, mounts });
const browser = await chromium.launch({
  executablePath,
  headless: true,
  // Containers have no GPU: WebGL (and WebGPU, where available) run on SwiftShader.
  args: ['--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--ignore-gpu-blocklist',
    '--enable-unsafe-webgpu'],
});

/** One case on a page of its own: the page estimates the poses, once more warm; writes c.out. */
async function runCase(c) {
  const consoleLines = [];
  const page = await browser.newPage({ viewport: { width: 1100, height: 1000 } });
  try {
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
    const query = new URLSearchParams({ model: `${c.modelUrl}model.json`, image: c.imageUrl, backend: c.backend });
    if (c.flip) query.set('flip', '1');
    if (c.names) query.set('names', '1');
    if (c.boxes) query.set('boxes', JSON.stringify(c.boxes));
    const started = Date.now();
    await page.goto(`${server.url}/index.html?${query}`);
    await page.waitForFunction(() => ['done', 'error'].includes(window.kposeDemo?.state), null,
      { timeout: timeoutMs, polling: 200 });
    const first = await page.evaluate(() => ({ state: window.kposeDemo.state, error: window.kposeDemo.error,
      result: window.kposeDemo.result, people: document.getElementById('people').dataset.count,
      modelInfo: document.getElementById('model-info').textContent, skeleton: window.kposeDemo.detector?.skeleton }));
    if (first.state === 'error') throw new Error(`the page reported: ${first.error}`);
    const pageSeconds = (Date.now() - started) / 1000;
    // Once more on the warm backend: the steady-state time of one estimatePoses call.
    const warm = await page.evaluate(async () => (await window.kposeDemo.runImage()).timings);
    if (c.screenshot) await page.screenshot({ path: path.resolve(c.screenshot), fullPage: true });
    const r = first.result;
    const report = {
      model: c.modelDir, image: c.image, requested_backend: c.backend, backend: r.backend,
      fallbacks: r.fallbacks, flip_test: Boolean(c.flip), names: Boolean(c.names), boxes: c.boxes ?? null, tfjs_version: r.tfjsVersion,
      browser: browser.version(), cross_origin_isolated: r.crossOriginIsolated, image_size: r.imageSize, model_name: r.metadata.model.name,
      task: r.metadata.model.task, poses: r.poses, people_shown: Number(first.people),
      // The skeleton the detector decodes and draws with, the page's model line, and what it drew.
      skeleton: first.skeleton, model_info: first.modelInfo, drawn: r.drawn,
      timings_ms: { first: r.timings, warm }, page_seconds: pageSeconds,
      console: consoleLines.filter((l) => !l.startsWith('debug')).slice(-50),
    };
    writeFileSync(path.resolve(c.out), `${JSON.stringify(report, null, 1)}\n`);
    const best = r.poses[0];
    console.log(`e2e: ${path.basename(c.image)}: backend ${r.backend}` + (r.backend !== c.backend ? ` (requested ${c.backend})` : '') +
      `, ${r.poses.length} ${r.poses.length === 1 ? 'person' : 'people'}, best score ${best ? best.score.toFixed(4) : '-'}, ` +
      `page ready in ${pageSeconds.toFixed(1)} s, warm estimatePoses ${warm.total.toFixed(1)} ms`);
    return true;
  } catch (e) {
    console.error(`e2e: ${c.modelDir} on ${c.image}: ${e.message}`);
    if (consoleLines.length) console.error(consoleLines.slice(-20).join('\n'));
    return false;
  } finally {
    await page.close();
  }
}

let exitCode = 0;
try {
  for (const c of cases) {
    if (!(await runCase(c))) exitCode = 1;
  }
} finally {
  await browser.close();
  await server.close();
}
process.exit(exitCode);
