// Browser end-to-end run of the built demo (npm run build first):
//
//   node test/e2e.mjs --model DIR --image PATH --out result.json --screenshot shot.png
//                     [--backend webgl|wasm|webgpu|cpu] [--boxes '[[x,y,w,h]]'] [--flip] [--timeout 180]
//
// Serves web_demo/dist plus the model folder (/models/e2e/) and the image (/input/...)
// on a random localhost port, opens the demo page in headless Chromium (playwright-core;
// the browser is $CHROMIUM or /usr/bin/chromium, never downloaded), lets the page's own
// library (src/kpose-pose.js) estimate the poses, runs it once more for a warm timing,
// and writes result.json (poses, the person count the page shows, the backend actually
// used, fallbacks, timings) and a screenshot of the page with the skeletons drawn. The
// page falls back from webgl to wasm (then cpu) when a backend does not start or run;
// result.json records what ran.
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { startServer } from '../tools/serve.mjs';

const here = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

const { values: args } = parseArgs({
  options: {
    model: { type: 'string' }, image: { type: 'string' }, out: { type: 'string' },
    screenshot: { type: 'string' }, backend: { type: 'string', default: 'webgl' },
    flip: { type: 'boolean', default: false }, boxes: { type: 'string' }, timeout: { type: 'string', default: '180' },
    dist: { type: 'string', default: path.join(here, 'dist') }, help: { type: 'boolean', short: 'h' },
  },
});
if (args.help || !args.model || !args.image || !args.out) {
  console.log('usage: node test/e2e.mjs --model DIR --image PATH --out result.json [--screenshot shot.png] ' +
    '[--backend webgl|wasm|webgpu|cpu] [--boxes JSON] [--flip] [--timeout SECONDS]');
  process.exit(args.help ? 0 : 2);
}

function die(message) {
  console.error(`e2e: ${message}`);
  process.exit(1);
}

const dist = path.resolve(args.dist);
const modelDir = path.resolve(args.model);
const image = path.resolve(args.image);
if (!existsSync(path.join(dist, 'index.html'))) die(`${dist} has no index.html: run npm run build first`);
if (!existsSync(path.join(modelDir, 'model.json'))) die(`${modelDir} has no model.json`);
if (!existsSync(image)) die(`${image} not found`);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!existsSync(executablePath)) die(`no browser at ${executablePath} (apt-get install chromium, or set CHROMIUM)`);

const { chromium } = await import('playwright-core');
const timeoutMs = Number(args.timeout) * 1000;
const imageUrl = `/input/${encodeURIComponent(path.basename(image))}`;
const server = await startServer({
  root: dist, mounts: { '/models/e2e/': modelDir, [decodeURIComponent(imageUrl)]: image },
});
const browser = await chromium.launch({
  executablePath,
  headless: true,
  // Containers have no GPU: WebGL (and WebGPU, where available) run on SwiftShader.
  args: ['--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--ignore-gpu-blocklist',
    '--enable-unsafe-webgpu'],
});
const consoleLines = [];
let exitCode = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 1000 } });
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  const query = new URLSearchParams({ model: '/models/e2e/model.json', image: imageUrl, backend: args.backend });
  if (args.flip) query.set('flip', '1');
  if (args.boxes) query.set('boxes', JSON.stringify(JSON.parse(args.boxes)));
  const started = Date.now();
  await page.goto(`${server.url}/index.html?${query}`);
  await page.waitForFunction(() => ['done', 'error'].includes(window.kposeDemo?.state), null,
    { timeout: timeoutMs, polling: 200 });
  const first = await page.evaluate(() => ({ state: window.kposeDemo.state, error: window.kposeDemo.error,
    result: window.kposeDemo.result, people: document.getElementById('people').dataset.count }));
  if (first.state === 'error') throw new Error(`the page reported: ${first.error}`);
  const pageSeconds = (Date.now() - started) / 1000;
  // Once more on the warm backend: the steady-state time of one estimatePoses call.
  const warm = await page.evaluate(async () => (await window.kposeDemo.runImage()).timings);
  if (args.screenshot) await page.screenshot({ path: path.resolve(args.screenshot), fullPage: true });
  const r = first.result;
  const report = {
    model: modelDir, image, requested_backend: args.backend, backend: r.backend,
    fallbacks: r.fallbacks, flip_test: args.flip, boxes: args.boxes ? JSON.parse(args.boxes) : null, tfjs_version: r.tfjsVersion,
    browser: browser.version(), cross_origin_isolated: r.crossOriginIsolated, image_size: r.imageSize, model_name: r.metadata.model.name,
    task: r.metadata.model.task, poses: r.poses, people_shown: Number(first.people),
    timings_ms: { first: r.timings, warm }, page_seconds: pageSeconds,
    console: consoleLines.filter((l) => !l.startsWith('debug')).slice(-50),
  };
  writeFileSync(path.resolve(args.out), `${JSON.stringify(report, null, 1)}\n`);
  const best = r.poses[0];
  console.log(`e2e: backend ${r.backend}` + (r.backend !== args.backend ? ` (requested ${args.backend})` : '') +
    `, ${r.poses.length} ${r.poses.length === 1 ? 'person' : 'people'}, best score ${best ? best.score.toFixed(4) : '-'}, ` +
    `page ready in ${pageSeconds.toFixed(1)} s, warm estimatePoses ${warm.total.toFixed(1)} ms`);
} catch (e) {
  console.error(`e2e: ${e.message}`);
  if (consoleLines.length) console.error(consoleLines.slice(-20).join('\n'));
  exitCode = 1;
} finally {
  await browser.close();
  await server.close();
}
process.exit(exitCode);
