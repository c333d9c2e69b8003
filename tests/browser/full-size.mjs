// The full-size run in a real browser (a script, not a CI stage; README, "Full size in the
// browser"): headless Chromium with WebGPU on SwiftShader and a persistent profile (an incognito
// context's storage quota is too small for 3.5 GB), a converted full-size model served from
// another origin (CORS), downloaded into Cache Storage, the page reloaded (the model now comes
// from the cache), then, with --generate, a run under the sequential memory plan. It prints the
// bytes downloaded, the load time from the network and from the cache, the worker's wasm memory
// (its peak: wasm memory never shrinks), Chromium's peak resident memory and, with --generate,
// the time per step, burn's GPU memory peak and the image's difference from native
// `sdxl generate --device wgpu` with the same seed.
//   node full-size.mjs BASE_DIR [REFINER_DIR] [--generate] [--size 256] [--steps 2] [--minutes 120]
// BASE_DIR, REFINER_DIR: folders converted by sdxl-weights (a full-size base with random weights:
// weights-tools/scripts/random_full_size.py, then `sdxl-weights convert --quant q8`).
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchPersistent } from './chromium.mjs';
import { serve } from '../../web/serve.mjs';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const VALUED = ['--size', '--steps', '--minutes'];
const args = process.argv.slice(2);
const option = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const folders = args.filter((arg, i) => !arg.startsWith('--') && !VALUED.includes(args[i - 1])).map((dir) => resolve(dir));
if (folders.length < 1 || folders.length > 2) {
  console.error('usage: node full-size.mjs BASE_DIR [REFINER_DIR] [--generate] [--size 256] [--steps 2] [--minutes 120]');
  process.exit(2);
}
const [size, steps, minutes] = [Number(option('--size', 256)), Number(option('--steps', 2)), Number(option('--minutes', 120))];
const MiB = 1024 * 1024;
const mib = (bytes) => `${(bytes / MiB).toFixed(0)} MiB`;

// Bytes each model server sent: the file's size from the requested offset.
let served = 0;
const counting = (root) => ({ root, cors: true, onRequest: ({ method, path, range }) => {
  if (method !== 'GET') return;
  try {
    served += statSync(join(root, path)).size - Number(/^bytes=(\d+)-$/.exec(range ?? '')?.[1] ?? 0);
  } catch { /* a 404 */ }
} });
const site = await serve(0);
const models = await Promise.all(folders.map((dir) => serve(0, counting(dir))));
const url = (server) => `http://127.0.0.1:${server.address().port}`;

// Chromium's resident memory, all its processes, sampled every 2 s.
let chromiumPeak = 0;
const sampler = setInterval(() => {
  try {
    const rss = execFileSync('ps', ['-C', 'chromium', '-o', 'rss=']).toString().trim().split(/\s+/).map(Number);
    chromiumPeak = Math.max(chromiumPeak, rss.reduce((a, b) => a + b, 0) * 1024);
  } catch { /* no chromium process right now */ }
}, 2000);

const profile = mkdtempSync(join(tmpdir(), 'sdxl-full-size-'));
// The native CLI for the comparison, built now (not after the browser's run, whose timing a
// build would disturb) and copied, so that the comparison runs the code the page was built from.
const sdxl = join(profile, 'sdxl');
if (args.includes('--generate')) {
  const messages = execFileSync('cargo', ['build', '-q', '-p', 'sdxl-web', '--bin', 'sdxl', '--message-format=json'], { cwd: ROOT, maxBuffer: 1 << 28 });
  const built = messages.toString().split('\n').filter(Boolean).map((line) => JSON.parse(line)).findLast((message) => message.executable);
  copyFileSync(built.executable, sdxl);
}
const context = await launchPersistent(profile);
const page = await context.newPage();
page.on('console', (message) => console.log(`[page] ${message.text()}`));
const state = () => page.evaluate(() => ({ state: window.sdxlApp.state, status: document.getElementById('status').textContent }));
const waitFor = async (states, timeout = minutes * 60_000) => {
  await page.waitForFunction((states) => states.includes(window.sdxlApp.state), states, { timeout, polling: 1000 });
  return state();
};
const query = `?model=${url(models[0])}/&refiner=${models[1] ? `${url(models[1])}/` : ''}&memory=sequential`;

/** Opens (or reloads) the page, agrees to the foreign host, confirms a download; seconds to ready. */
async function open(reload) {
  const started = performance.now();
  if (reload) await page.reload();
  else await page.goto(`${url(site)}/index.html${query}`);
  await page.waitForSelector('#notice button', { timeout: 120_000 });
  await page.click('#notice button');
  const planned = await waitFor(['confirm', 'ready', 'failed', 'crashed']);
  console.log(`plan: ${planned.status}`);
  if (planned.state === 'confirm') await page.click('#download');
  const ready = await waitFor(['ready', 'failed', 'crashed']);
  if (ready.state !== 'ready') throw new Error(`not ready: ${JSON.stringify(ready)}`);
  console.log(`ready: ${ready.status}`);
  return (performance.now() - started) / 1000;
}

try {
  const network = await open(false);
  const downloaded = served;
  const loaded = await page.evaluate(() => window.sdxlApp.loaded);
  console.log(`from the network: ${(downloaded / 1e9).toFixed(2)} GB downloaded, ready in ${network.toFixed(1)} s; wasm memory ${mib(loaded.wasmBytes)}`);
  const fromCache = await open(true);
  const again = await page.evaluate(() => window.sdxlApp.loaded);
  console.log(`from the cache: ${((served - downloaded) / 1e9).toFixed(3)} GB downloaded, ready in ${fromCache.toFixed(1)} s; wasm memory ${mib(again.wasmBytes)}`);
  console.log(`Chromium resident memory peak so far: ${mib(chromiumPeak)}`);

  if (args.includes('--generate')) {
    await page.selectOption('#size', 'custom');
    for (const [id, value] of [['width', size], ['height', size], ['steps', steps], ['seed', 1], ['refiner-start', 0.5]]) await page.fill(`#${id}`, String(value));
    await page.fill('#prompt', 'a lighthouse on a cliff at dusk');
    await page.setChecked('#refiner', Boolean(models[1]));
    const started = performance.now();
    await page.click('#generate');
    // Each status the page shows (a step done, the decode begun), with the time it was first seen.
    let shown = '';
    const progress = setInterval(async () => {
      const { status } = await state();
      if (status !== shown) console.log(`${((performance.now() - started) / 1000).toFixed(0)} s: ${(shown = status)}`);
    }, 2000);
    const done = await waitFor(['ready', 'failed', 'crashed']).finally(() => clearInterval(progress));
    console.log(`generation: ${done.status}`);
    const result = await page.evaluate(() => {
      const { width, height, rgba, peakReserved, reloadSeconds, wasmBytes, phases } = window.sdxlApp.last;
      return { width, height, rgba: Array.from(rgba), peakReserved, reloadSeconds, wasmBytes, phases };
    });
    console.log(`GPU memory peak (burn's pools) ${mib(result.peakReserved)}, reloads ${result.reloadSeconds.toFixed(1)} s, wasm memory ${mib(result.wasmBytes)}, ${((performance.now() - started) / 1000).toFixed(0)} s in all`);
    for (const phase of result.phases) console.log(`  ${phase.network}: ${mib(phase.ready)} reserved when ready, ${mib(phase.peak)} at its end`);
    const nativeStarted = performance.now();
    const out = join(profile, 'native.safetensors');
    execFileSync(sdxl, ['generate', '--model', folders[0],
      ...(folders[1] ? ['--refiner', folders[1], '--refiner-start', '0.5'] : []), '--device', 'wgpu', '--memory', 'sequential',
      '--prompt', 'a lighthouse on a cliff at dusk', '--steps', String(steps), '--seed', '1', '--width', String(size), '--height', String(size),
      '--out', join(profile, 'native.png'), '--out-tensor', out], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
    console.log(`native sdxl generate --device wgpu: ${((performance.now() - nativeStarted) / 1000).toFixed(0)} s in all`);
    const bytes = readFileSync(out);
    const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString());
    const begin = 8 + Number(bytes.readBigUInt64LE(0)) + header.image.data_offsets[0];
    const native = new Float32Array(bytes.buffer.slice(bytes.byteOffset + begin, bytes.byteOffset + begin + size * size * 12));
    let worst = 0;
    for (let i = 0; i < size * size; i++) for (let c = 0; c < 3; c++) worst = Math.max(worst, Math.abs(result.rgba[4 * i + c] - Math.round(native[3 * i + c] * 255)));
    console.log(`page vs native sdxl generate --device wgpu: at most ${worst} level(s) apart`);
  }
  console.log(`Chromium resident memory peak: ${mib(chromiumPeak)}`);
} finally {
  clearInterval(sampler);
  await context.close();
  for (const server of [site, ...models]) server.close();
  rmSync(profile, { recursive: true, force: true });
}
