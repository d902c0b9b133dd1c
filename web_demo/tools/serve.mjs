// npm run serve [-- --port 8080 --host 127.0.0.1 --root dist --models DIR]: a tiny
// static server for the built demo (node:http only). /models/ maps to --models
// (default dist/models). It sends COOP/COEP headers so the wasm backend may use
// threads (SharedArrayBuffer needs a cross-origin isolated page).
import { createReadStream, existsSync, statSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.json': 'application/json', '.map': 'application/json',
  '.wasm': 'application/wasm', '.bin': 'application/octet-stream', '.png': 'image/png', '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg', '.gif': 'image/gif', '.webp': 'image/webp', '.bmp': 'image/bmp', '.svg': 'image/svg+xml',
  '.mp4': 'video/mp4', '.webm': 'video/webm', '.ico': 'image/x-icon',
};

/** Starts the server. mounts: {'/models/': '/abs/dir', '/input/x.png': '/abs/file.png', ...}
 * (longest prefix wins; a prefix ending in '/' maps a folder, otherwise one file).
 * port 0 picks a free port. Resolves to {server, url, close()}. */
export function startServer({ root, mounts = {}, port = 0, host = '127.0.0.1', log = false }) {
  const table = Object.entries({ '/': root, ...mounts })
    .map(([prefix, target]) => [prefix, path.resolve(target)])
    .sort((a, b) => b[0].length - a[0].length);
  const server = http.createServer((req, res) => {
    let file = null;
    try {
      const urlPath = decodeURIComponent(new URL(req.url, 'http://x').pathname);
      for (const [prefix, target] of table) {
        if (prefix.endsWith('/') ? urlPath.startsWith(prefix) : urlPath === prefix) {
          const rest = prefix.endsWith('/') ? urlPath.slice(prefix.length) : '';
          const candidate = path.resolve(target, rest || (prefix.endsWith('/') ? 'index.html' : ''));
          // Never serve anything outside the mounted folder.
          if (candidate === target || candidate.startsWith(target + path.sep)) file = candidate;
          break;
        }
      }
      if (file && existsSync(file) && statSync(file).isDirectory()) file = path.join(file, 'index.html');
    } catch {
      file = null;
    }
    const headers = {
      'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp',
      'Cross-Origin-Resource-Policy': 'same-origin', 'Cache-Control': 'no-cache',
    };
    if (!file || !existsSync(file) || !statSync(file).isFile() || req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(404, { ...headers, 'Content-Type': 'text/plain' }).end('not found\n');
      if (log) console.log(`404 ${req.url}`);
      return;
    }
    res.writeHead(200, {
      ...headers, 'Content-Type': TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream',
      'Content-Length': statSync(file).size,
    });
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).pipe(res);
    if (log) console.log(`200 ${req.url}`);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const url = `http://${host}:${server.address().port}`;
      resolve({ server, url, close: () => new Promise((r) => server.close(r)) });
    });
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const opt = (name, fallback) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : fallback;
  };
  const here = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
  const root = path.resolve(opt('root', path.join(here, 'dist')));
  if (!existsSync(path.join(root, 'index.html'))) {
    console.error(`${root} has no index.html: run npm run build first`);
    process.exit(1);
  }
  const models = opt('models');
  const { url } = await startServer({
    root, mounts: models ? { '/models/': models } : {}, port: Number(opt('port', 8080)),
    host: opt('host', '127.0.0.1'), log: args.includes('--log'),
  });
  console.log(`serving ${root} at ${url}/` + (models ? ` (models from ${path.resolve(models)})` : ''));
}
