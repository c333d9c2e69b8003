// A static file server for the site (the repository root), sending the right MIME types,
// application/wasm included, and honouring `Range: bytes=N-` as static hosts do (resumed
// downloads). Files are streamed (a model shard may be larger than a buffer can hold). It serves
// the site's files only: no path with a segment starting with '.' (.git, dotfiles), nothing
// whose real path (symlinks followed) is outside the root.
// `node web/serve.mjs [port]` (or the PORT environment variable; the argument wins); tests
// import `serve` and may pass `hooks`:
//   onRequest({ method, path, range }) — sees every request;
//   body(path, bytes) → bytes — rewrites what a file serves (e.g. a corrupted shard); with it,
//     files are read whole (so up to 2 GiB);
//   cutAfter(path, range) → number | null — sends that many bytes, then drops the connection;
//   cors: true — answers as a cross-origin host: `Access-Control-Allow-Origin: *` (and
//     preflights), but no `Access-Control-Expose-Headers`, so a page cannot read Content-Range;
//   root — serves that folder instead of the site (a model's own host), by the same rules.
import { createServer } from 'node:http';
import { createReadStream, realpathSync } from 'node:fs';
import { open, readFile, realpath, stat } from 'node:fs/promises';
import { extname, join, relative, resolve, sep } from 'node:path';
import { Readable, pipeline } from 'node:stream';
import { fileURLToPath } from 'node:url';

const ROOT = realpathSync(resolve(fileURLToPath(new URL('..', import.meta.url))));
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

const hidden = (path) => path.split(/[/\\]/).some((segment) => segment.startsWith('.'));

/** The real path of the file under `root` for URL path `path`, or null when it must not be served. */
async function siteFile(path, root) {
  if (hidden(path) || path.includes('\0')) return null;
  let real;
  try {
    real = await realpath(join(root, path.endsWith('/') ? path + 'index.html' : path));
  } catch {
    return null;
  }
  // A symlink may lead out of the root, or to a hidden path inside it.
  const inside = relative(root, real);
  if (inside === '' || inside.startsWith('..') || resolve(root, inside) !== real || hidden(inside)) return null;
  return real;
}

async function handle(request, response, hooks) {
  const range = request.headers.range ?? null;
  let path;
  try {
    path = decodeURIComponent(new URL(request.url, 'http://localhost').pathname);
  } catch {
    hooks.onRequest?.({ method: request.method, path: request.url, range });
    response.writeHead(400).end('bad request');
    return;
  }
  hooks.onRequest?.({ method: request.method, path, range });
  const cors = hooks.cors ? { 'Access-Control-Allow-Origin': '*' } : {};
  if (hooks.cors && request.method === 'OPTIONS') {
    response.writeHead(204, { ...cors, 'Access-Control-Allow-Methods': 'GET, HEAD', 'Access-Control-Allow-Headers': 'Range' }).end();
    return;
  }
  const file = await siteFile(path, hooks.root ? realpathSync(resolve(hooks.root)) : ROOT);
  const info = file && (await stat(file).catch(() => null));
  if (!info?.isFile()) {
    response.writeHead(404, cors).end('not found');
    return;
  }
  // Only a body hook needs the file in memory.
  let bytes = null;
  if (hooks.body) {
    bytes = await readFile(file);
    bytes = hooks.body(path, bytes) ?? bytes;
  }
  const length = bytes ? bytes.length : info.size;
  const headers = {
    ...cors,
    'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream',
    'Cache-Control': 'no-cache',
    'Accept-Ranges': 'bytes',
  };
  let status = 200;
  let start = Number(/^bytes=(\d+)-$/.exec(range ?? '')?.[1] ?? 0);
  if (range && start > 0 && start < length) {
    status = 206;
    headers['Content-Range'] = `bytes ${start}-${length - 1}/${length}`;
  } else {
    start = 0;
  }
  headers['Content-Length'] = length - start;
  const cut = hooks.cutAfter?.(path, range);
  if (cut != null && cut < length - start) {
    let part = bytes?.subarray(start, start + cut);
    if (!part) {
      const handle = await open(file);
      try {
        part = Buffer.alloc(cut);
        part = part.subarray(0, (await handle.read(part, 0, cut, start)).bytesRead);
      } finally {
        await handle.close();
      }
    }
    response.writeHead(status, headers);
    response.write(part, () => setTimeout(() => response.destroy(), 50));
    return;
  }
  response.writeHead(status, headers);
  if (request.method === 'HEAD' || start === length) {
    response.end();
    return;
  }
  const source = bytes ? Readable.from([bytes.subarray(start)]) : createReadStream(file, { start });
  // On an error either way (a client gone, a file gone) both ends are closed.
  pipeline(source, response, () => {});
}

/** Serves the site (or `hooks.root`) on 127.0.0.1:`port` (0: any free port); resolves to the listening server. */
export function serve(port = 0, hooks = {}) {
  const server = createServer((request, response) => {
    // No request may bring the server down.
    handle(request, response, hooks).catch((error) => {
      console.error(`serve: ${request.url}: ${error?.stack ?? error}`);
      if (response.headersSent) response.destroy();
      else response.writeHead(500).end('server error');
    });
  });
  return new Promise((done) => server.listen(port, '127.0.0.1', () => done(server)));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const server = await serve(Number(process.argv[2] ?? (process.env.PORT || 8080)));
  console.log(`serving ${ROOT} on http://localhost:${server.address().port}/`);
}
