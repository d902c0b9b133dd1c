// UI smoke test of the built demo in headless Chromium with a fake webcam:
//   node test/ui_smoke.mjs --models DIR
// DIR holds exported models and an index.json listing them (the selector's source).
// Checks: the selector lists models/index.json and loads the first model, an uploaded
// image is estimated, the webcam loop runs (FPS shown), a backend switch reloads the
// model on the new backend, and a broken model URL is reported as an error.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { startServer } from '../tools/serve.mjs';

const here = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const { values: args } = parseArgs({ options: { models: { type: 'string' }, image: { type: 'string' } } });
if (!args.models || !args.image) {
  console.log('usage: node test/ui_smoke.mjs --models DIR --image PATH');
  process.exit(2);
}
const { chromium } = await import('playwright-core');
const server = await startServer({ root: path.join(here, 'dist'), mounts: { '/models/': args.models } });
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
try {
  const context = await browser.newContext({ permissions: ['camera'] });
  const page = await context.newPage();
  await page.goto(`${server.url}/index.html?backend=wasm`);
  await until(page, () => ['ready', 'error'].includes(window.kposeDemo?.state));
  const options = await page.evaluate(() => [...document.querySelectorAll('#model-select option')].map((o) => o.value));
  check((await page.evaluate(() => window.kposeDemo.state)) === 'ready' && options.length >= 1,
    `model list from models/index.json: ${options.join(', ')}`);
  check((await text(page, 'backend')) === 'backend wasm', await text(page, 'backend'));

  await page.setInputFiles('#file-input', args.image);
  await until(page, () => window.kposeDemo.state === 'done');
  check((await page.evaluate(() => window.kposeDemo.result.poses.length)) === 1, `image: ${await text(page, 'status')}`);

  await page.click('#webcam-button');
  await until(page, () => window.kposeDemo.source?.kind === 'video' && window.kposeDemo.fps !== null);
  check(true, `webcam: ${await text(page, 'fps')}, ${await text(page, 'timing')}`);

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
} catch (e) {
  check(false, e.message);
} finally {
  await browser.close();
  await server.close();
}
process.exit(failed ? 1 : 0);
