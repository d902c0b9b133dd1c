// UI smoke test of the built demo in headless Chromium with a fake webcam:
//   node test/ui_smoke.mjs [--dist BUILT_PAGE] --models DIR --image PATH --expect '{"models/a/model.json": 1, ...}'
// DIR holds exported models and an index.json listing them (the selector's source), served
// as /models/. --expect: for each model to try (in this order), the number of people it
// finds on the image (the Python reference's count).
// Checks: the selector lists models/index.json and the first model is loaded; the image
// is estimated with each model, switched to through the selector, and the page shows
// that many people (the flip test is offered for top-down models only), with their track ids
// drawn ("id N"); the tracking and smoothing switches reach the detector (tracking off: no
// ids); the names switch (off by default) writes each drawn keypoint's metadata name and
// redraws the image without estimating it again; the webcam loop runs (FPS shown); a backend switch reloads the last model on the new backend; a
// bottom-up model asked for person boxes by URL and a broken model URL are reported as
// errors.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { startServer } from '../tools/serve.mjs';

const here = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const { values: args } = parseArgs({
  options: { models: { type: 'string' }, image: { type: 'string' }, expect: { type: 'string' },
    dist: { type: 'string', default: path.join(here, 'dist') } },
});
if (!args.models || !args.image || !args.expect) {
  console.log('usage: node test/ui_smoke.mjs --models DIR --image PATH ' +
    '--expect \'{"models/NAME/model.json": PEOPLE}\'');
  process.exit(2);
}
const expected = Object.entries(JSON.parse(args.expect));
if (!expected.length) {
  console.log('--expect lists no model');
  process.exit(2);
}
const { chromium } = await import('playwright-core');
const server = await startServer({ root: path.resolve(args.dist), mounts: { '/models/': args.models } });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'],
});
const text = (page, id) => page.evaluate((i) => document.getElementById(i).textContent, id);
const until = (page, fn, arg) => page.waitForFunction(fn, arg, { timeout: 120000, polling: 100 });
let failed = false;
function check(ok, what) {
  console.log(`${ok ? 'ok' : 'FAIL'}: ${what}`);
  failed ||= !ok;
}

/** Selects a model in the selector (as a user does) and waits for its run on the image. */
async function switchTo(page, url) {
  await page.evaluate(() => { window.kposeDemo.result = null; });
  await page.selectOption('#model-select', url);
  await until(page, (u) => (window.kposeDemo.state === 'done' && window.kposeDemo.modelUrl === u &&
    window.kposeDemo.result !== null) || window.kposeDemo.state === 'error', url);
}

try {
  const context = await browser.newContext({ permissions: ['camera'] });
  const page = await context.newPage();
  await page.goto(`${server.url}/index.html?backend=wasm`);
  await until(page, () => ['ready', 'error'].includes(window.kposeDemo?.state));
  const options = await page.evaluate(() => [...document.querySelectorAll('#model-select option')].map((o) => o.value));
  const loaded = await page.evaluate(() => window.kposeDemo.modelUrl);
  check((await page.evaluate(() => window.kposeDemo.state)) === 'ready' && loaded === options[0] &&
    expected.every(([url]) => options.includes(url)),
    `model list from models/index.json: ${options.join(', ')}; loaded the first`);
  check((await text(page, 'backend')) === 'backend wasm', await text(page, 'backend'));

  await page.setInputFiles('#file-input', args.image);
  await until(page, () => ['done', 'error'].includes(window.kposeDemo.state));
  for (const [url, people] of expected) {
    if ((await page.evaluate(() => window.kposeDemo.modelUrl)) !== url) await switchTo(page, url);
    const got = await page.evaluate(() => ({
      state: window.kposeDemo.state, error: window.kposeDemo.error, poses: window.kposeDemo.result?.poses.length,
      shown: document.getElementById('people').dataset.count, task: window.kposeDemo.detector?.task,
      flipDisabled: document.getElementById('flip-input').disabled,
      ids: window.kposeDemo.result?.poses.map((p) => p.id), labels: window.kposeDemo.labels,
    }));
    const tracked = got.ids.filter((id) => typeof id === 'number');
    check(tracked.every((id) => got.labels.some((l) => l.startsWith(`id ${id}`))) &&
      new Set(tracked).size === tracked.length && (got.task !== 'bottom_up' || tracked.length > 0),
      `${url}: ids ${JSON.stringify(got.ids)}, labels drawn ${JSON.stringify(got.labels)}`);
    check(got.state === 'done' && got.poses === people && got.shown === String(people) &&
      got.flipDisabled === (got.task === 'bottom_up'),
      `${url} (${got.task}): ${await text(page, 'people')} (expected ${people}), ` +
      `flip test ${got.flipDisabled ? 'off' : 'offered'}${got.error ? `; ${got.error}` : ''}`);
  }

  // The tracking and smoothing switches: on by default; off, the detector gives no ids.
  const switches = () => page.evaluate(() => ({
    tracking: document.getElementById('tracking-input')?.checked, smoothing: document.getElementById('smoothing-input')?.checked,
    options: window.kposeDemo.detector?.trackingOptions }));
  const rerun = async (id) => {
    await page.evaluate(() => { window.kposeDemo.result = null; });
    await page.click(id);
    await until(page, () => (window.kposeDemo.state === 'done' && window.kposeDemo.result !== null) ||
      window.kposeDemo.state === 'error');
    return page.evaluate(() => ({ state: window.kposeDemo.state, poses: window.kposeDemo.result?.poses,
      labels: window.kposeDemo.labels, tracking: window.kposeDemo.result?.tracking }));
  };
  const initial = await switches();
  check(initial.tracking === true && initial.smoothing === true && initial.options.enableTracking &&
    initial.options.enableSmoothing, `tracking and smoothing switches on: ${JSON.stringify(initial)}`);
  const off = await rerun('#tracking-input');
  check(off.state === 'done' && off.poses.every((p) => !('id' in p)) && !off.labels.some((l) => l.startsWith('id ')) &&
    off.tracking.enableTracking === false, `tracking off: no ids (${JSON.stringify(off.tracking)})`);
  const unsmoothed = await rerun('#smoothing-input');
  check(unsmoothed.tracking.enableSmoothing === false, `smoothing off: ${JSON.stringify(unsmoothed.tracking)}`);
  await rerun('#smoothing-input');
  const on = await rerun('#tracking-input');
  check(on.poses.every((p) => typeof p.id === 'number' || p.id === null) && on.tracking.enableTracking,
    `tracking on again: ids ${JSON.stringify(on.poses.map((p) => p.id))}`);

  // The names switch: off by default; on, each drawn keypoint's name from the model's skeleton.
  const names = (click) => page.evaluate((c) => {
    const d = window.kposeDemo;
    const result = d.result;
    if (c) document.getElementById('names-input').click();
    return { checked: document.getElementById('names-input').checked, drawn: d.drawn,
      skeleton: d.detector.skeleton.keypoints, same: d.result === result, resultDrawn: d.result.drawn };
  }, click);
  const unnamed = await names(false);
  check(!unnamed.checked && unnamed.drawn.every((p) => p.names.length === 0), 'names off by default: none drawn');
  const named = await names(true);
  check(named.checked && named.same && named.resultDrawn === named.drawn && named.drawn.some((p) => p.keypoints.length) &&
    named.drawn.every((p) => JSON.stringify(p.names) === JSON.stringify(p.keypoints.map((k) => [k, named.skeleton[k]]))),
    `names on: ${JSON.stringify(named.drawn.map((p) => p.names.map(([, n]) => n)))} (image redrawn, not estimated again)`);
  const unnamedAgain = await names(true);
  check(!unnamedAgain.checked && unnamedAgain.drawn.every((p) => p.names.length === 0), 'names off again');

  await page.click('#webcam-button');
  await until(page, () => window.kposeDemo.source?.kind === 'video' && window.kposeDemo.fps !== null);
  check(true, `webcam: ${await text(page, 'fps')}, ${await text(page, 'people')}, ${await text(page, 'timing')}`);

  await page.selectOption('#backend-select', 'cpu');
  await until(page, () => document.getElementById('backend').textContent === 'backend cpu' && window.kposeDemo.fps !== null);
  check(new URL(page.url()).searchParams.get('backend') === 'cpu', `backend switch: ${await text(page, 'backend')}, ${await text(page, 'fps')}`);

  await page.evaluate(() => {
    const s = document.getElementById('model-select');
    s.add(new Option('missing', 'models/missing/model.json'));
    s.value = 'models/missing/model.json';
    s.dispatchEvent(new Event('change'));
  });
  await until(page, () => window.kposeDemo.state === 'error');
  check((await text(page, 'status')).includes('404'), `missing model: ${await text(page, 'status')}`);

  const bottomUp = [];
  for (const [url] of expected) {
    const res = await (await fetch(new URL(url, `${server.url}/`))).json();
    if (res.userDefinedMetadata?.kpose?.model?.task === 'bottom_up') bottomUp.push(url);
  }
  if (bottomUp.length) {
    const query = new URLSearchParams({ backend: 'wasm', model: bottomUp[0], boxes: '[[0,0,10,10]]' });
    await page.goto(`${server.url}/index.html?${query}`);
    await until(page, () => ['ready', 'done', 'error'].includes(window.kposeDemo?.state));
    const status = await text(page, 'status');
    check((await page.evaluate(() => window.kposeDemo.state)) === 'error' && status.startsWith('boxes:'),
      `boxes with a bottom-up model: ${status}`);
  }
} catch (e) {
  check(false, e.message);
} finally {
  await browser.close();
  await server.close();
}
process.exit(failed ? 1 : 0);
