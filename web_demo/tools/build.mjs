// npm run build: bundle the demo into dist/ (app.js + index.html + style.css + the
// TF.js wasm binaries), ready to be served as static files with no network access.
// Models in web_demo/models/ (with models/index.json) are copied to dist/models/.
// npm run build -- --out DIR: build into DIR instead (what `kpose demo --out DIR` does),
// replacing only the bundle's own files there; DIR/models/ is the caller's and is kept.
// --no-sourcemap: without app.js.map.
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import * as esbuild from 'esbuild';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const outAt = process.argv.indexOf('--out');
const external = outAt > 0;
const dist = external ? path.resolve(process.argv[outAt + 1]) : path.join(root, 'dist');
const dev = process.argv.includes('--dev');
// --no-sourcemap: no app.js.map (the page kpose ships inside its wheel: 8 MB less).
const sourcemap = !process.argv.includes('--no-sourcemap');

if (external) {
  for (const f of ['app.js', 'app.js.map', 'index.html', 'style.css', 'wasm']) {
    rmSync(path.join(dist, f), { recursive: true, force: true });
  }
} else {
  rmSync(dist, { recursive: true, force: true });
}
mkdirSync(path.join(dist, 'wasm'), { recursive: true });

const result = await esbuild.build({
  entryPoints: [path.join(root, 'src', 'app.js')],
  outdir: dist,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: !dev,
  sourcemap,
  metafile: true,
  logLevel: 'warning',
});

cpSync(path.join(root, 'index.html'), path.join(dist, 'index.html'));
cpSync(path.join(root, 'src', 'style.css'), path.join(dist, 'style.css'));
const wasmDir = path.join(root, 'node_modules', '@tensorflow', 'tfjs-backend-wasm', 'dist');
const wasm = readdirSync(wasmDir).filter((f) => f.endsWith('.wasm'));
for (const f of wasm) cpSync(path.join(wasmDir, f), path.join(dist, 'wasm', f));
if (!external && existsSync(path.join(root, 'models'))) cpSync(path.join(root, 'models'), path.join(dist, 'models'), { recursive: true });

const bytes = Object.values(result.metafile.outputs).reduce((a, o) => a + o.bytes, 0);
console.log(`built ${path.relative(process.cwd(), dist) || '.'}: app.js + ${wasm.length} wasm files, ` +
  `${(bytes / 1e6).toFixed(1)} MB of bundle output`);
