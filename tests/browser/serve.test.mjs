// web/serve.mjs on its own (no browser): a bad escape is a 400 and the server lives on; no
// dotfiles and nothing outside the root through a symlink; ranges from a streamed file, one
// beyond 2 GiB included; the test hooks; the PORT environment variable.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, ftruncateSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve } from '../../web/serve.mjs';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const STORE_JS = readFileSync(join(ROOT, 'web/store.js'));
// A folder under the root (not hidden, so it is served) and one outside it.
const HERE = mkdtempSync(join(ROOT, 'tests/browser/tmp-serve-'));
const DIR = `/tests/browser/${HERE.split('/').pop()}`;
const OUTSIDE = mkdtempSync(join(tmpdir(), 'sdxl-serve-outside-'));
const BIG = 2 ** 31 + 100; // past what one Buffer (readFile) holds

let hooks = {};
const requests = [];
let server, base;

before(async () => {
  writeFileSync(join(OUTSIDE, 'secret.txt'), 'outside the root');
  symlinkSync(join(OUTSIDE, 'secret.txt'), join(HERE, 'secret.txt'));
  symlinkSync(OUTSIDE, join(HERE, 'outside'));
  symlinkSync(join(ROOT, '.git/HEAD'), join(HERE, 'head'));
  symlinkSync(join(ROOT, 'web/store.js'), join(HERE, 'store.js'));
  // A sparse file: no disk space, but more bytes than readFile can read.
  const fd = openSync(join(HERE, 'big.bin'), 'w');
  ftruncateSync(fd, BIG);
  closeSync(fd);
  server = await serve(0, {
    onRequest: (request) => requests.push(request),
    body: (path, bytes) => hooks.body?.(path, bytes),
    cutAfter: (path, range) => hooks.cutAfter?.(path, range),
  });
  base = `http://127.0.0.1:${server.address().port}`;
});

after(() => {
  server?.close();
  rmSync(HERE, { recursive: true, force: true });
  rmSync(OUTSIDE, { recursive: true, force: true });
});

/** A raw GET (the path is sent as written, unlike fetch); resolves to { status, headers, body }. */
function get(path, headers = {}, origin = base) {
  return new Promise((done, fail) => {
    const request = httpRequest(`${origin}/`, { path, headers }, (response) => {
      const chunks = [];
      response.on('data', (chunk) => chunks.push(chunk));
      response.on('end', () => done({ status: response.statusCode, headers: response.headers, body: Buffer.concat(chunks) }));
      response.on('error', fail);
    });
    request.on('error', fail);
    request.setTimeout(10_000, () => request.destroy(new Error(`no answer to ${path} in 10 s`)));
    request.end();
  });
}

test('root: another folder is served by the same rules, the site not at all', async () => {
  writeFileSync(join(HERE, 'manifest.json'), '{"format": "sdxl-web"}');
  const other = await serve(0, { root: HERE, cors: true });
  const origin = `http://127.0.0.1:${other.address().port}`;
  try {
    const manifest = await get('/manifest.json', {}, origin);
    assert.equal(manifest.status, 200);
    assert.equal(manifest.body.toString(), '{"format": "sdxl-web"}');
    assert.equal(manifest.headers['access-control-allow-origin'], '*');
    assert.equal((await get('/index.html', {}, origin)).status, 404, 'the site served from another root');
    // Symlinks out of this root (to the site's files, to another folder) are not followed.
    assert.equal((await get('/store.js', {}, origin)).status, 404, 'a symlink into the site followed');
    assert.equal((await get('/secret.txt', {}, origin)).status, 404, 'a symlink out of the root followed');
    assert.equal((await get('/head', {}, origin)).status, 404, 'a hidden file served');
  } finally {
    other.close();
  }
});

test('a bad percent escape is a 400 and the server still answers', async () => {
  for (const path of ['/%', '/web/%zz.js', '/%E0%A4%A']) {
    assert.equal((await get(path)).status, 400, path);
  }
  const page = await get('/index.html');
  assert.equal(page.status, 200);
  assert.match(page.headers['content-type'], /^text\/html/);
});

test('a throwing hook is a 500, not a dead server', async () => {
  hooks = { cutAfter: () => { throw new Error('hook failed'); } };
  try {
    assert.equal((await get('/web/store.js')).status, 500);
  } finally {
    hooks = {};
  }
  assert.equal((await get('/web/store.js')).status, 200);
});

test('hidden paths and paths outside the root are not served', async () => {
  for (const path of ['/.git/HEAD', '/.git/config', '/.gitignore', '/web/.hidden', '/%2egit/HEAD', '/web/%2E%2E/.git/HEAD',
    '/web%2F..%2F.git%2FHEAD', '/../../etc/passwd', '/web/%2e%2e/%2e%2e/etc/passwd']) {
    const response = await get(path);
    assert.equal(response.status, 404, `${path}: ${response.status} ${response.body.toString().slice(0, 80)}`);
  }
});

test('a symlink is followed only to a visible file inside the root', async () => {
  for (const path of [`${DIR}/secret.txt`, `${DIR}/outside/secret.txt`, `${DIR}/head`]) {
    const response = await get(path);
    assert.equal(response.status, 404, `${path}: ${response.status} ${response.body.toString()}`);
  }
  const inside = await get(`${DIR}/store.js`);
  assert.equal(inside.status, 200);
  assert.deepEqual(inside.body, STORE_JS);
});

test('Range: bytes=N- is a 206 with Content-Range; a start past the end is the whole file', async () => {
  const start = 100;
  const part = await get('/web/store.js', { Range: `bytes=${start}-` });
  assert.equal(part.status, 206);
  assert.equal(part.headers['content-range'], `bytes ${start}-${STORE_JS.length - 1}/${STORE_JS.length}`);
  assert.equal(Number(part.headers['content-length']), STORE_JS.length - start);
  assert.deepEqual(part.body, STORE_JS.subarray(start));
  const whole = await get('/web/store.js');
  assert.equal(whole.status, 200);
  assert.equal(Number(whole.headers['content-length']), STORE_JS.length);
  assert.deepEqual(whole.body, STORE_JS);
  const past = await get('/web/store.js', { Range: `bytes=${STORE_JS.length}-` });
  assert.equal(past.status, 200);
  assert.deepEqual(past.body, STORE_JS);
});

test('a file over 2 GiB is streamed: its size and its last bytes by range', async () => {
  // Without a body hook, which would read the file into memory.
  const plain = await serve(0);
  const origin = `http://127.0.0.1:${plain.address().port}`;
  try {
    const head = await new Promise((done, fail) => {
      httpRequest(`${origin}${DIR}/big.bin`, { method: 'HEAD' }, (response) => {
        response.resume();
        done(response);
      }).on('error', fail).end();
    });
    assert.equal(head.statusCode, 200);
    assert.equal(Number(head.headers['content-length']), BIG);
    const tail = await get(`${DIR}/big.bin`, { Range: `bytes=${BIG - 10}-` }, origin);
    assert.equal(tail.status, 206);
    assert.equal(tail.headers['content-range'], `bytes ${BIG - 10}-${BIG - 1}/${BIG}`);
    assert.deepEqual(tail.body, Buffer.alloc(10));
  } finally {
    plain.close();
  }
});

test('hooks: body rewrites what a file serves (ranges too), cutAfter drops the connection, onRequest sees it', async () => {
  const path = '/web/store.js';
  hooks = { body: (p, bytes) => (p === path ? Buffer.from('rewritten body') : bytes) };
  try {
    assert.equal((await get(path)).body.toString(), 'rewritten body');
    const part = await get(path, { Range: 'bytes=10-' });
    assert.equal(part.status, 206);
    assert.equal(part.headers['content-range'], 'bytes 10-13/14');
    assert.equal(part.body.toString(), 'body');
  } finally {
    hooks = {};
  }
  for (const range of [null, 'bytes=50-']) {
    hooks = { cutAfter: (p) => (p === path ? 20 : null) };
    const before = requests.length;
    try {
      const received = await new Promise((done) => {
        const chunks = [];
        httpRequest(`${base}${path}`, { headers: range ? { Range: range } : {} }, (response) => {
          response.on('data', (chunk) => chunks.push(chunk));
          response.on('error', () => {});
          response.on('close', () => done({ complete: response.complete, body: Buffer.concat(chunks) }));
        }).on('error', () => done({ complete: false, body: Buffer.concat(chunks) })).end();
      });
      assert.equal(received.complete, false, 'the connection was not dropped');
      const from = range ? 50 : 0;
      assert.deepEqual(received.body, STORE_JS.subarray(from, from + 20));
      assert.deepEqual(requests.slice(before), [{ method: 'GET', path, range }]);
    } finally {
      hooks = {};
    }
  }
});

test('cors: Access-Control-Allow-Origin and preflights, without exposing Content-Range', async () => {
  const cross = await serve(0, { cors: true });
  const origin = `http://127.0.0.1:${cross.address().port}`;
  try {
    const part = await get('/web/store.js', { Origin: base, Range: 'bytes=5-' }, origin);
    assert.equal(part.status, 206);
    assert.equal(part.headers['access-control-allow-origin'], '*');
    assert.equal(part.headers['access-control-expose-headers'], undefined);
    const preflight = await new Promise((done, fail) => {
      httpRequest(`${origin}/web/store.js`, { method: 'OPTIONS', headers: { Origin: base, 'Access-Control-Request-Headers': 'range' } }, (response) => {
        response.resume();
        done(response);
      }).on('error', fail).end();
    });
    assert.equal(preflight.statusCode, 204);
    assert.equal(preflight.headers['access-control-allow-origin'], '*');
    assert.match(preflight.headers['access-control-allow-headers'], /range/i);
    assert.equal((await get('/web/store.js')).headers['access-control-allow-origin'], undefined, 'the plain server allows CORS');
  } finally {
    cross.close();
  }
});

/** A port nothing listens on (as of now). */
async function freePort() {
  const probe = createServer();
  await new Promise((done) => probe.listen(0, '127.0.0.1', done));
  const { port } = probe.address();
  await new Promise((done) => probe.close(done));
  return port;
}

/** Runs `node web/serve.mjs …args` with `env`; resolves to { child, line } once it says where it serves. */
function start(args, env) {
  const child = spawn(process.execPath, [join(ROOT, 'web/serve.mjs'), ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((done, fail) => {
    let out = '';
    const timer = setTimeout(() => fail(new Error(`serve.mjs said nothing in 10 s: ${out}`)), 10_000);
    const finish = (error, line) => {
      clearTimeout(timer);
      if (error) {
        child.kill();
        fail(error);
      } else {
        done({ child, line });
      }
    };
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const line = /serving .* on (\S+)/.exec(out);
      if (line) finish(null, line[1]);
    });
    child.stderr.on('data', (chunk) => { out += chunk; });
    child.on('exit', (code) => finish(new Error(`serve.mjs exited (${code}): ${out}`)));
  });
}

test('node web/serve.mjs listens on PORT from the environment; an argument wins', async () => {
  const envPort = await freePort();
  const argPort = await freePort();
  for (const [args, port] of [[[], envPort], [[String(argPort)], argPort]]) {
    const { child, line } = await start(args, { PORT: String(envPort) });
    try {
      assert.equal(line, `http://localhost:${port}/`, `args ${JSON.stringify(args)}`);
      assert.equal((await get('/index.html', {}, `http://127.0.0.1:${port}`)).status, 200);
    } finally {
      child.kill();
      await new Promise((done) => (child.exitCode == null ? child.once('exit', done) : done()));
    }
  }
});
