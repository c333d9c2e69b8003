// A static file server for the site (the repository root), sending the right MIME types,
// application/wasm included, and honouring `Range: bytes=N-` as static hosts do (resumed
// downloads). `node web/serve.mjs [port]`; tests import `serve` and may pass `hooks`:
//   onRequest({ path, range }) — sees every request;
//   body(path, bytes) → bytes — rewrites what a file serves (e.g. a corrupted shard);
//   cutAfter(path, range) → number | null — sends that many bytes, then drops the connection.
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
  '.txt': 'text/plain; charset=utf-8',
};

/** Serves the site on 127.0.0.1:`port` (0: any free port); resolves to the listening server. */
export function serve(port = 0, hooks = {}) {
  const server = createServer(async (request, response) => {
    const path = decodeURIComponent(new URL(request.url, 'http://localhost').pathname);
    const file = join(ROOT, normalize(path.endsWith('/') ? path + 'index.html' : path));
    const range = request.headers.range ?? null;
    hooks.onRequest?.({ path, range });
    if (!file.startsWith(ROOT)) {
      response.writeHead(403).end();
      return;
    }
    let body;
    try {
      body = await readFile(file);
    } catch {
      response.writeHead(404).end('not found');
      return;
    }
    body = hooks.body?.(path, body) ?? body;
    const headers = {
      'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream',
      'Cache-Control': 'no-cache',
      'Accept-Ranges': 'bytes',
    };
    let status = 200;
    const start = Number(/^bytes=(\d+)-$/.exec(range ?? '')?.[1] ?? 0);
    if (range && start > 0 && start < body.length) {
      status = 206;
      headers['Content-Range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
      body = body.subarray(start);
    }
    headers['Content-Length'] = body.length;
    const cut = hooks.cutAfter?.(path, range);
    response.writeHead(status, headers);
    if (cut != null && cut < body.length) {
      response.write(body.subarray(0, cut), () => setTimeout(() => response.destroy(), 50));
      return;
    }
    response.end(body);
  });
  return new Promise((done) => server.listen(port, '127.0.0.1', () => done(server)));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const server = await serve(Number(process.argv[2] ?? 8080));
  console.log(`serving ${ROOT} on http://localhost:${server.address().port}/`);
}
