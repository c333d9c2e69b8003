// The app end to end in headless Chromium (WebGPU on SwiftShader) with the bundled demo model:
// an image equal to native `sdxl generate`, cancel, reload without refetching, a corrupted shard
// refused, an interrupted download resumed, and the message a browser without WebGPU shows.
// Needs the web build (.ci/build-web) and the native CLI (cargo); `npm test` in this folder.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch } from './chromium.mjs';
import { serve } from '../../web/serve.mjs';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ARTIFACTS = fileURLToPath(new URL('artifacts/', import.meta.url));
// The page's 8-bit image against native f32 pixels × 255: both round the same numbers, so
// only values within float noise of a rounding boundary may differ, by one level.
const MAX_LEVEL_DIFFERENCE = 1;
const MAX_DIFFERING_FRACTION = 0.01;

const requests = [];
let hooks = {};
let server, browser, base;
const logs = [];
mkdirSync(ARTIFACTS, { recursive: true });

before(async () => {
  server = await serve(0, {
    onRequest: (request) => requests.push(request),
    body: (path, bytes) => hooks.body?.(path, bytes),
    cutAfter: (path, range) => hooks.cutAfter?.(path, range),
  });
  base = `http://127.0.0.1:${server.address().port}`;
  browser = await launch();
});

after(async () => {
  if (logs.length) console.log(logs.join('\n'));
  await browser?.close();
  server?.close();
});

/** A page in a fresh browser context (its own, empty Cache Storage). */
async function openApp(query = '', context = null) {
  context ??= await browser.newContext();
  const page = await context.newPage();
  page.on('console', (message) => logs.push(`[console.${message.type()}] ${message.text()}`));
  page.on('pageerror', (error) => logs.push(`[pageerror] ${error.message}`));
  await page.goto(`${base}/index.html${query}`);
  return { context, page };
}

const state = (page) => page.evaluate(() => ({ state: window.sdxlApp.state, status: document.getElementById('status').textContent, notice: document.getElementById('notice').textContent }));

async function waitFor(page, states, timeout = 120_000) {
  await page.waitForFunction((states) => states.includes(window.sdxlApp.state), states, { timeout });
  return state(page);
}

async function setParams(page, { steps, seed, width = 64, height = 64, scheduler = 'euler', refiner = true }) {
  await page.selectOption('#size', 'custom');
  await page.fill('#width', String(width));
  await page.fill('#height', String(height));
  await page.fill('#steps', String(steps));
  await page.fill('#seed', String(seed));
  await page.fill('#prompt', 'a lighthouse on a cliff at dusk');
  await page.fill('#negative', '');
  await page.selectOption('#scheduler', scheduler);
  await page.setChecked('#refiner', refiner);
}

/** Native `sdxl generate` on the demo model: f32 pixels [H, W, 3] from --out-tensor. */
function nativeImage(args) {
  const out = join(mkdtempSync(join(tmpdir(), 'sdxl-native-')), 'image.safetensors');
  execFileSync('cargo', [
    'run', '-q', '-p', 'sdxl-web', '--bin', 'sdxl', '--', 'generate',
    '--model', 'web/demo-model/base', '--refiner', 'web/demo-model/refiner', '--device', 'cpu',
    '--out-tensor', out, '--out', out.replace('.safetensors', '.png'), ...args,
  ], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  const bytes = readFileSync(out);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString());
  const [begin, end] = header.image.data_offsets;
  const data = bytes.subarray(8 + headerLength + begin, 8 + headerLength + end);
  return { shape: header.image.shape, pixels: new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.length)) };
}

test('the image equals native sdxl generate; reload fetches no shard again; cancel stops mid-run; too large a size is refused', async () => {
  const { context, page } = await openApp();
  const loaded = await waitFor(page, ['ready', 'failed', 'no-webgpu', 'crashed']);
  assert.equal(loaded.state, 'ready', JSON.stringify(loaded));

  await setParams(page, { steps: 4, seed: 42 });
  await page.click('#generate');
  await waitFor(page, ['generating']);
  const done = await waitFor(page, ['ready', 'failed', 'crashed'], 600_000);
  assert.match(done.status, /^Done in/, JSON.stringify(done));
  const result = await page.evaluate(() => {
    const { width, height, rgba, seed, parameters } = window.sdxlApp.last;
    return { width, height, rgba: Array.from(rgba), seed, parameters };
  });
  await page.screenshot({ path: `${ARTIFACTS}app-result.png`, fullPage: true });
  assert.equal(result.seed, '42');
  assert.match(result.parameters, /Steps: 4, Sampler: Euler, CFG scale: 5, Seed: 42, Size: 64x64, Refiner switch at: 0.8/);

  const native = nativeImage(['--prompt', 'a lighthouse on a cliff at dusk', '--steps', '4', '--seed', '42', '--width', '64', '--height', '64']);
  assert.deepEqual(native.shape, [64, 64, 3]);
  let differing = 0, worst = 0;
  for (let i = 0; i < 64 * 64; i++) {
    for (let c = 0; c < 3; c++) {
      const difference = Math.abs(result.rgba[4 * i + c] - Math.round(native.pixels[3 * i + c] * 255));
      worst = Math.max(worst, difference);
      if (difference) differing += 1;
    }
  }
  const fraction = differing / (64 * 64 * 3);
  console.log(`page vs native: ${differing} of ${64 * 64 * 3} channel values differ (at most ${worst} level(s))`);
  assert.ok(worst <= MAX_LEVEL_DIFFERENCE && fraction <= MAX_DIFFERING_FRACTION, `worst ${worst}, fraction ${fraction}`);

  // Reload: every file comes from the cache; the manifests are re-read, no shard is fetched.
  const before = requests.length;
  await page.reload();
  const reloaded = await waitFor(page, ['ready', 'failed', 'crashed']);
  assert.equal(reloaded.state, 'ready', JSON.stringify(reloaded));
  const fetched = requests.slice(before).map((r) => r.path).filter((path) => path.includes('/demo-model/') && !path.endsWith('manifest.json'));
  assert.deepEqual(fetched, [], 'files fetched again after a reload');
  assert.match(reloaded.status, /14 of 14 files from the cache/);

  // Cancel mid-run: many steps, cancelled after the first.
  await setParams(page, { steps: 200, seed: 7, refiner: false });
  await page.click('#generate');
  await page.waitForFunction(() => Number(document.getElementById('progress').value) >= 1, null, { timeout: 300_000 });
  await page.click('#cancel');
  const cancelled = await waitFor(page, ['ready', 'failed', 'crashed'], 120_000);
  assert.equal(cancelled.status, 'Cancelled.');
  const progress = await page.evaluate(() => Number(document.getElementById('progress').value));
  assert.ok(progress < 200, `ran ${progress} steps`);
  assert.equal(await page.evaluate(() => window.sdxlApp.images.length), 0, 'a cancelled run added an image');
  await page.screenshot({ path: `${ARTIFACTS}app-cancelled.png`, fullPage: true });

  // A size that needs a larger buffer than the adapter allows, even with the VAE decoding in
  // tiles, is refused before the run (the demo at 16384²: its UNet would take the guidance
  // branches in a pass each, 768 MiB, but the decoded image alone takes 3 GiB; SwiftShader
  // allows 1 GiB).
  await setParams(page, { steps: 4, seed: 7, width: 16384, height: 16384, refiner: false });
  await page.click('#generate');
  await page.waitForFunction(() => /needs a/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
  const refused = await state(page);
  assert.equal(refused.state, 'ready', JSON.stringify(refused));
  assert.match(refused.status, /16384×16384 needs a 3072 MiB buffer to decode the image, even in tiles; this GPU allows \d+ MiB: choose a smaller size/);
  await context.close();
});

/** Generates with the page's form set by `params`; the page's image, once done. */
async function pageImage(page, params) {
  await setParams(page, params);
  await page.click('#generate');
  await waitFor(page, ['generating']);
  const done = await waitFor(page, ['ready', 'failed', 'crashed'], 600_000);
  assert.match(done.status, /^Done in/, JSON.stringify(done));
  return page.evaluate(() => {
    const { width, height, rgba, warnings, peakReserved, reloadSeconds } = window.sdxlApp.last;
    return { width, height, rgba: Array.from(rgba), warnings, peakReserved, reloadSeconds, status: document.getElementById('status').textContent };
  });
}

/** Page (8-bit) against native (f32) pixels: how many channel values differ, and by how much. */
function compare(rgba, native, pixels) {
  let differing = 0, worst = 0;
  for (let i = 0; i < pixels; i++) {
    for (let c = 0; c < 3; c++) {
      const difference = Math.abs(rgba[4 * i + c] - Math.round(native.pixels[3 * i + c] * 255));
      worst = Math.max(worst, difference);
      if (difference) differing += 1;
    }
  }
  return { worst, fraction: differing / (pixels * 3) };
}

test('one network at a time: the resident image, networks reloaded from the cache; a lowered buffer limit decodes in tiles as natively; too small a budget is refused before the download', async () => {
  // The demo's largest network (the refiner's UNet) takes 1.31 MiB on the GPU: a 1 MiB budget
  // fits no plan.
  const before = requests.length;
  const small = await openApp('?budget=1');
  const refused = await waitFor(small.page, ['ready', 'failed', 'crashed']);
  assert.equal(refused.state, 'failed', JSON.stringify(refused));
  assert.match(refused.status, /needs 2 MiB of GPU memory even with one network at a time \(sequential\) \(2 MiB of weights\); the GPU memory budget is 1 MiB/);
  const fetched = requests.slice(before).map((r) => r.path).filter((path) => path.includes('/demo-model/') && !path.endsWith('manifest.json'));
  assert.deepEqual(fetched, [], 'files fetched for a refused plan');
  await small.context.close();

  const { context, page } = await openApp('?memory=resident');
  assert.equal((await waitFor(page, ['ready', 'failed', 'no-webgpu', 'crashed'])).state, 'ready');
  assert.match((await state(page)).status, /every network loaded/);
  const resident = await pageImage(page, { steps: 4, seed: 42 });

  // The same browser profile (its cache): the sequential page downloads nothing, and each run
  // loads every network again from the cache, never from the server.
  const sequential = await openApp('?memory=sequential', context);
  const ready = await waitFor(sequential.page, ['ready', 'failed', 'crashed']);
  assert.equal(ready.state, 'ready', JSON.stringify(ready));
  assert.match(ready.status, /one network at a time/);
  const beforeRun = requests.length;
  const image = await pageImage(sequential.page, { steps: 4, seed: 42 });
  const during = requests.slice(beforeRun).map((r) => r.path).filter((path) => path.includes('/demo-model/'));
  assert.deepEqual(during, [], 'a sequential run fetched from the server');
  assert.deepEqual(image.rgba, resident.rgba, 'sequential and resident images differ');
  assert.ok(image.peakReserved > 0 && resident.peakReserved > 0, JSON.stringify([image.peakReserved, resident.peakReserved]));
  // Reloading is timed and shown: a resident run reloads nothing.
  assert.equal(resident.reloadSeconds, 0);
  assert.ok(image.reloadSeconds > 0, JSON.stringify(image.reloadSeconds));
  assert.match(image.status, /Reloading networks took \d+\.\d s/);
  console.log(`GPU memory peak (burn's pools, demo model): resident ${resident.peakReserved} B, sequential ${image.peakReserved} B; reloads ${image.reloadSeconds.toFixed(2)} s`);
  // Each phase's memory is reported, in the order the networks ran.
  const phases = await sequential.page.evaluate(() => window.sdxlApp.last.phases);
  assert.deepEqual(phases.map((phase) => phase.network), ['textEncoders', 'unet', 'refinerUnet', 'vae']);
  assert.ok(phases.every((phase) => phase.ready > 0 && phase.ready <= phase.peak), JSON.stringify(phases));

  // A budget that holds the demo's weights and its activations at 64², not those at 1024²:
  // even in the smallest tiles its VAE would hold the 12 MiB image. That run is refused before
  // it loads anything.
  const budgeted = await openApp('?memory=sequential&budget=8', context);
  assert.equal((await waitFor(budgeted.page, ['ready', 'failed', 'crashed'])).state, 'ready');
  const beforeRefusal = requests.length;
  await setParams(budgeted.page, { steps: 4, seed: 42, width: 1024, height: 1024 });
  await budgeted.page.click('#generate');
  await budgeted.page.waitForFunction(() => /needs a \d+ MiB buffer/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
  const overBudget = await state(budgeted.page);
  assert.equal(overBudget.state, 'ready', JSON.stringify(overBudget));
  assert.match(overBudget.status, /1024×1024 needs a 12 MiB buffer to decode the image, even in tiles; the GPU memory budget is 8 MiB, which leaves [\d.]+ MiB to each of the VAE's 3 largest activations/);
  assert.deepEqual(requests.slice(beforeRefusal).filter((r) => r.path.includes('/demo-model/')), []);
  assert.deepEqual(await pageImage(budgeted.page, { steps: 4, seed: 42 }).then((result) => result.rgba), resident.rgba);
  // At 256² the budget holds every phase but a whole decode (three activations of 4 MiB): the
  // VAE decodes in tiles, as `sdxl generate` does under the same budget.
  const budgetTiled = await pageImage(budgeted.page, { steps: 2, seed: 9, width: 256, height: 256 });
  assert.ok(budgetTiled.warnings.some((w) => /decoded in \d+ overlapping tiles.*the GPU memory budget is 8 MiB/.test(w)), JSON.stringify(budgetTiled.warnings));
  const nativeBudgeted = nativeImage(['--prompt', 'a lighthouse on a cliff at dusk', '--steps', '2', '--seed', '9', '--width', '256', '--height', '256', '--memory', 'sequential', '--budget-mib', '8']);
  const budgetedDiff = compare(budgetTiled.rgba, nativeBudgeted, 256 * 256);
  console.log(`budget-tiled page vs native: ${(budgetedDiff.fraction * 100).toFixed(3)}% of channel values differ (at most ${budgetedDiff.worst} level(s))`);
  assert.ok(budgetedDiff.worst <= MAX_LEVEL_DIFFERENCE && budgetedDiff.fraction <= MAX_DIFFERING_FRACTION, JSON.stringify(budgetedDiff));

  // A buffer limit below what a whole decode at 256² needs: the VAE decodes in tiles, and the
  // image equals native `sdxl generate` with the same limit.
  const tiled = await openApp('?memory=sequential&bufferLimitMiB=2', context);
  assert.equal((await waitFor(tiled.page, ['ready', 'failed', 'crashed'])).state, 'ready');
  const result = await pageImage(tiled.page, { steps: 2, seed: 9, width: 256, height: 256 });
  assert.ok(result.warnings.some((w) => /decoded in \d+ overlapping tiles/.test(w)), JSON.stringify(result.warnings));
  const native = nativeImage(['--prompt', 'a lighthouse on a cliff at dusk', '--steps', '2', '--seed', '9', '--width', '256', '--height', '256', '--buffer-limit-mib', '2']);
  const { worst, fraction } = compare(result.rgba, native, 256 * 256);
  console.log(`tiled page vs native: ${(fraction * 100).toFixed(3)}% of channel values differ (at most ${worst} level(s))`);
  assert.ok(worst <= MAX_LEVEL_DIFFERENCE && fraction <= MAX_DIFFERING_FRACTION, `worst ${worst}, fraction ${fraction}`);
  await context.close();
});

test('a corrupted shard on the server is refused with a clear message and not cached', async () => {
  hooks = { body: (path, bytes) => (path.endsWith('demo-model/base/unet-00000.bin') ? Buffer.concat([Buffer.from([bytes[0] ^ 0xff]), bytes.subarray(1)]) : bytes) };
  try {
    const { context, page } = await openApp();
    const failed = await waitFor(page, ['failed', 'ready', 'crashed']);
    await page.screenshot({ path: `${ARTIFACTS}app-corrupt.png`, fullPage: true });
    assert.equal(failed.state, 'failed', JSON.stringify(failed));
    assert.match(failed.status, /unet-00000\.bin does not match its manifest/);
    assert.match(failed.status, /SHA-256/);
    const cached = await page.evaluate(async () => (await (await caches.open('sdxl-web-models-v1')).keys()).map((r) => r.url));
    assert.ok(!cached.some((url) => url.endsWith('unet-00000.bin')), 'the corrupt shard was cached');
    await context.close();
  } finally {
    hooks = {};
  }
});

test('an interrupted download resumes with a Range request', async () => {
  const shard = 'demo-model/base/unet-00000.bin';
  const size = readFileSync(join(ROOT, 'web', shard)).length;
  const half = Math.floor(size / 2);
  let cut = false;
  hooks = {
    cutAfter: (path, range) => {
      if (!path.endsWith(shard) || cut) return null;
      cut = true;
      return half;
    },
  };
  try {
    const { context, page } = await openApp();
    const failed = await waitFor(page, ['failed', 'ready', 'crashed']);
    assert.equal(failed.state, 'failed', JSON.stringify(failed));
    assert.match(failed.status, /interrupted after \d+ of \d+ bytes/);
    const kept = Number(/after (\d+) of/.exec(failed.status)[1]);
    assert.ok(kept > 0 && kept < size, `kept ${kept}`);
    const before = requests.length;
    await page.click('#notice button'); // Try again
    const loaded = await waitFor(page, ['ready', 'failed', 'crashed']);
    assert.equal(loaded.state, 'ready', JSON.stringify(loaded));
    const again = requests.slice(before).filter((r) => r.path.endsWith(shard));
    assert.deepEqual(again.map((r) => r.range), [`bytes=${kept}-`], 'the shard was not resumed with one Range request');
    const others = requests.slice(before).filter((r) => r.path.endsWith('.bin') && !r.path.endsWith(shard));
    assert.ok(others.every((r) => !/text_encoder(_2)?-/.test(r.path)), 'shards finished before the cut were fetched again');
    await context.close();
  } finally {
    hooks = {};
  }
});

test('a manifest far larger than any model\'s is refused unread', async () => {
  hooks = { body: (path, bytes) => (path.endsWith('demo-model/base/manifest.json') ? Buffer.alloc(17 * 1024 * 1024, 32) : bytes) };
  try {
    const { context, page } = await openApp();
    const failed = await waitFor(page, ['failed', 'ready', 'crashed']);
    assert.equal(failed.state, 'failed', JSON.stringify(failed));
    assert.match(failed.status, /manifest\.json is larger than 16 MiB: not a model manifest/);
    await context.close();
  } finally {
    hooks = {};
  }
});

test('a browser without WebGPU shows what to do', async () => {
  const plain = await launch({ webgpu: false });
  try {
    const page = await plain.newPage();
    await page.goto(`${base}/index.html`);
    const shown = await waitFor(page, ['no-webgpu', 'ready', 'failed', 'crashed'], 60_000);
    await page.screenshot({ path: `${ARTIFACTS}app-no-webgpu.png`, fullPage: true });
    assert.equal(shown.state, 'no-webgpu', JSON.stringify(shown));
    assert.match(shown.notice, /This browser offers no WebGPU\. Use a current Chrome or Edge/);
  } finally {
    await plain.close();
  }
});

test('a damaged cached file is fetched again; clearing the cache empties it; an unreachable manifest says why', async () => {
  const { context, page } = await openApp();
  assert.equal((await waitFor(page, ['ready', 'failed', 'crashed'])).state, 'ready');
  const shard = 'demo-model/base/vae-00000.bin';
  await page.evaluate(async (url) => {
    const cache = await caches.open('sdxl-web-models-v1');
    await cache.put(url, new Response(new Uint8Array([1, 2, 3])));
  }, `${base}/web/${shard}`);
  const before = requests.length;
  await page.reload();
  const reloaded = await waitFor(page, ['ready', 'failed', 'crashed']);
  assert.equal(reloaded.state, 'ready', JSON.stringify(reloaded));
  assert.match(reloaded.notice, /cached copy of vae-00000\.bin was damaged/);
  const fetched = requests.slice(before).map((r) => r.path).filter((path) => path.endsWith('.bin'));
  assert.deepEqual(fetched, [`/web/${shard}`]);

  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: `${ARTIFACTS}app-phone.png`, fullPage: true });
  await page.click('#model-panel summary');
  await page.click('#clear-cache');
  await page.waitForFunction(() => window.sdxlApp.events.includes('cache-cleared'));
  const left = await page.evaluate(async () => (await caches.keys()).length);
  assert.equal(left, 0, 'caches left after clearing');

  // After clearing, the status no longer claims the cache holds the model.
  assert.match((await state(page)).status, /Cached models cleared/);

  // A link to a model on another host asks before contacting it.
  await page.goto(`${base}/index.html?model=http://127.0.0.1:9/nothing/`);
  const asked = await waitFor(page, ['failed', 'ready', 'crashed']);
  assert.match(asked.notice, /This link asks to load a model from 127\.0\.0\.1:9\. Nothing is fetched from there until you agree/);
  assert.ok(!(await page.evaluate(() => window.sdxlApp.events)).includes('plan'));
  await page.click('#notice button'); // Load from 127.0.0.1:9
  await page.waitForFunction(() => /unreachable/.test(document.getElementById('status').textContent));
  const failed = await state(page);
  assert.equal(failed.state, 'failed');
  assert.match(failed.status, /manifest http:\/\/127\.0\.0\.1:9\/nothing\/manifest\.json is unreachable.*CORS/);
  await context.close();
});

test('the page tells the truth: what runs, cancel at once, no stale image, random seeds, clear form errors, the demo for what it is', async () => {
  const { context, page } = await openApp();
  assert.equal((await waitFor(page, ['ready', 'failed', 'crashed'])).state, 'ready');
  // The form starts at the demo's own settings and says what the demo model is.
  const form = await page.evaluate(() => ({
    steps: document.getElementById('steps').value,
    width: document.getElementById('width').value,
    size: document.getElementById('size').value,
    caption: document.getElementById('caption').hidden ? '' : document.getElementById('caption').textContent,
    live: document.getElementById('status').getAttribute('aria-live'),
    progress: document.getElementById('progress').getAttribute('aria-label'),
  }));
  assert.deepEqual([form.steps, form.width, form.size], ['4', '64', 'custom']);
  assert.match(form.caption, /random weights/);
  assert.equal(form.live, 'polite');
  assert.equal(form.progress, 'Progress');

  // The same clear message from the button and from Ctrl+Enter.
  await page.fill('#steps', '0');
  await page.click('#generate');
  assert.match((await state(page)).status, /Steps must be a whole number from 1 to 1000/);
  await page.fill('#steps', '2.5');
  await page.focus('#prompt');
  await page.keyboard.press('Control+Enter');
  assert.match((await state(page)).status, /Steps must be a whole number from 1 to 1000/);
  await page.fill('#width', '72');
  await page.fill('#steps', '2');
  await page.setChecked('#refiner', false);
  await page.click('#generate');
  assert.match((await state(page)).status, /multiples of 32 for this model\./);
  assert.equal(await page.evaluate(() => document.getElementById('width').step), '32');
  // The demo refiner downsamples three times: with it, 96 is refused too.
  await page.fill('#width', '96');
  await page.setChecked('#refiner', true);
  await page.click('#generate');
  assert.match((await state(page)).status, /multiples of 64 for this model with its refiner/);

  // Seed −1: a random seed, shown with the image and reusable.
  await page.fill('#width', '64');
  await page.fill('#seed', '-1');
  await page.setChecked('#refiner', false);
  await page.click('#generate');
  const first = await page.evaluate(() => document.getElementById('status').textContent);
  assert.match(first, /Encoding the prompt and running step 1 of 2/);
  assert.ok(await page.evaluate(() => document.getElementById('release').disabled), 'Release stays enabled during a run');
  const done = await waitFor(page, ['ready', 'failed', 'crashed'], 600_000);
  assert.match(done.status, /^Done in/, JSON.stringify(done));
  const shown = await page.evaluate(() => ({
    seed: window.sdxlApp.last.seed,
    label: document.getElementById('used-seed').textContent,
    alt: document.getElementById('result').alt,
    thumb: document.querySelector('#strip button img')?.alt,
  }));
  assert.match(shown.seed, /^\d+$/);
  assert.equal(shown.label, `Seed ${shown.seed} (use again)`);
  assert.equal(shown.alt, 'a photo of an astronaut riding a horse on the moon');
  assert.match(shown.thumb, /^Earlier image: a photo of an astronaut/);
  await page.click('#used-seed');
  assert.equal(await page.evaluate(() => document.getElementById('seed').value), shown.seed);
  assert.ok(!(await page.evaluate(() => document.getElementById('release').disabled)));

  // Cancel: acknowledged at once, and the older image is not offered as this run's.
  await page.fill('#steps', '200');
  await page.click('#generate');
  assert.ok(await page.evaluate(() => document.getElementById('save').hidden), 'the older image is still offered');
  await page.waitForFunction(() => Number(document.getElementById('progress').value) >= 1, null, { timeout: 300_000 });
  assert.match((await state(page)).status, /Step 1 of 200 done \(base\), [\d.]+ s per step, about .* left/);
  await page.click('#cancel');
  const cancelling = await page.evaluate(() => ({ status: document.getElementById('status').textContent, disabled: document.getElementById('cancel').disabled }));
  assert.match(cancelling.status, /^Cancelling…/);
  assert.ok(cancelling.disabled);
  assert.equal((await waitFor(page, ['ready', 'failed', 'crashed'], 120_000)).status, 'Cancelled.');
  assert.ok(await page.evaluate(() => document.getElementById('save').hidden && document.getElementById('used-seed').hidden));

  // A phone: Generate, the status and the preview in view without scrolling.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.evaluate(() => window.scrollTo(0, 0)); // as the page opens
  const inView = await page.evaluate(() => ['generate', 'action-status', 'stage'].map((id) => {
    const box = document.getElementById(id).getBoundingClientRect();
    return box.top >= 0 && box.top < window.innerHeight && box.height > 0;
  }));
  await page.screenshot({ path: `${ARTIFACTS}app-phone-ready.png` });
  assert.deepEqual(inView, [true, true, true]);
  await context.close();
});

test('a full storage quota is reported and the model still loads', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('console', (message) => logs.push(`[console.${message.type()}] ${message.text()}`));
  const cdp = await context.newCDPSession(page);
  await cdp.send('Storage.overrideQuotaForOrigin', { origin: base, quotaSize: 64 * 1024 });
  await page.goto(`${base}/index.html`);
  const loaded = await waitFor(page, ['ready', 'failed', 'crashed']);
  await page.screenshot({ path: `${ARTIFACTS}app-quota.png`, fullPage: true });
  assert.equal(loaded.state, 'ready', JSON.stringify(loaded));
  assert.match(loaded.notice, /Browser storage is full: .* could not be cached/);
  await context.close();
});

test('a lost GPU offers a restart, which loads the model again from the cache', async () => {
  const { context, page } = await openApp();
  assert.equal((await waitFor(page, ['ready', 'failed', 'crashed'])).state, 'ready');
  await (await browser.newBrowserCDPSession()).send('Browser.crashGpuProcess');
  await setParams(page, { steps: 2, seed: 1, refiner: false });
  await page.click('#generate');
  const lost = await waitFor(page, ['crashed', 'failed'], 120_000);
  await page.screenshot({ path: `${ARTIFACTS}app-gpu-lost.png`, fullPage: true });
  assert.equal(lost.state, 'crashed', JSON.stringify(lost));
  assert.match(lost.notice, /The GPU stopped .* Your cached models are kept/);
  await page.click('#notice button'); // Restart
  const restarted = await waitFor(page, ['ready', 'failed', 'crashed', 'no-webgpu'], 120_000);
  assert.equal(restarted.state, 'ready', JSON.stringify(restarted));
  assert.match(restarted.status, /14 of 14 files from the cache/);
  await context.close();
});
