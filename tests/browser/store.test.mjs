// web/store.js's download() in headless Chromium: a download cut short resumes with a Range
// request where the answer says where it starts (same origin), and where it cannot say (a
// cross-origin host that does not expose Content-Range) starts over once, whole, instead of
// placing the file's tail at its head. No GPU or wasm build needed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { launch } from './chromium.mjs';
import { serve } from '../../web/serve.mjs';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SHARD = '/web/demo-model/base/unet-00000.bin';
const BYTES = readFileSync(`${ROOT}${SHARD}`);
const SHA256 = createHash('sha256').update(BYTES).digest('hex');
const CUT = Math.floor(BYTES.length / 3); // not half: a tail as long as the head would hide an offset error

const requests = [];
let cut = false; // the next GET of SHARD is cut after CUT bytes
const hooks = {
  onRequest: (request) => requests.push(request),
  cutAfter: (path) => {
    if (path !== SHARD || !cut) return null;
    cut = false;
    return CUT;
  },
};
let site, cross, browser, origin, crossOrigin;

before(async () => {
  site = await serve(0, hooks);
  cross = await serve(0, { ...hooks, cors: true });
  origin = `http://127.0.0.1:${site.address().port}`;
  crossOrigin = `http://127.0.0.1:${cross.address().port}`;
  browser = await launch({ webgpu: false });
});

after(async () => {
  await browser?.close();
  site?.close();
  cross?.close();
});

/** Runs download(url) in a page of `origin` (a fresh context: empty Cache Storage). */
async function pageDownloading(url) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${origin}/tests/browser/fixtures/blank.html`);
  const run = () => page.evaluate(async ([origin, url, size]) => {
    const store = await import(`${origin}/web/store.js`);
    let counted = 0;
    try {
      const bytes = await store.download(url, size, (n) => { counted += n; });
      const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
      return { sha256: Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join(''), length: bytes.length, counted };
    } catch (error) {
      return { kind: error.kind, message: error.message, counted };
    }
  }, [origin, url, BYTES.length]);
  const partial = () => page.evaluate(async (url) => {
    const saved = await (await caches.open('sdxl-web-partial-v1')).match(url);
    return saved ? (await saved.arrayBuffer()).byteLength : null;
  }, url);
  return { context, run, partial };
}

/** The GETs of SHARD since `from`, as their Range headers (null: none). */
const shardGets = (from) => requests.slice(from).filter((r) => r.method === 'GET' && r.path === SHARD).map((r) => r.range);

async function cutThenResume(base) {
  const url = `${base}${SHARD}`;
  const { context, run, partial } = await pageDownloading(url);
  try {
    cut = true;
    const first = await run();
    assert.equal(first.kind, 'network', JSON.stringify(first));
    assert.match(first.message, /interrupted after \d+ of \d+ bytes/);
    const kept = Number(/after (\d+) of/.exec(first.message)[1]);
    assert.ok(kept > 0 && kept <= CUT, `kept ${kept}`);
    assert.equal(await partial(), kept);
    const since = requests.length;
    const second = await run();
    assert.deepEqual(second, { sha256: SHA256, length: BYTES.length, counted: BYTES.length }, 'the resumed download is not the file');
    assert.equal(await partial(), null, 'a partial was left behind');
    return { kept, gets: shardGets(since) };
  } finally {
    cut = false;
    await context.close();
  }
}

test('same origin: a cut download resumes with one Range request and appends', async () => {
  const { kept, gets } = await cutThenResume(origin);
  assert.deepEqual(gets, [`bytes=${kept}-`]);
});

test('cross origin without Content-Range exposed: the resume starts over once, whole', async () => {
  const { kept, gets } = await cutThenResume(crossOrigin);
  // The 206 cannot be placed, so the file is fetched again without a Range, once.
  assert.deepEqual(gets, [`bytes=${kept}-`, null]);
});
