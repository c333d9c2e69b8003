// burn on WebGPU in headless Chromium (SwiftShader): the site loads, burn starts on a WebGPU
// adapter (printed: name, features, limits), and the ops check graph's numbers equal the same
// graph run natively on burn's CPU backend (relative L2 ≤ 1e-4 per stage).
// Needs the web build (.ci/build-web) and cargo; run with `npm test` in this folder.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { launch } from './chromium.mjs';
import { serve } from '../../web/serve.mjs';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ARTIFACTS = fileURLToPath(new URL('artifacts/', import.meta.url));

let server, browser, page;
const logs = [];

before(async () => {
  server = await serve(0);
  browser = await launch();
  page = await browser.newPage();
  page.on('console', (message) => logs.push(`[console.${message.type()}] ${message.text()}`));
  page.on('pageerror', (error) => logs.push(`[pageerror] ${error.message}`));
  await page.goto(`http://127.0.0.1:${server.address().port}/web/ops-check.html`);
});

after(async () => {
  if (logs.length) console.log(logs.join('\n'));
  mkdirSync(ARTIFACTS, { recursive: true });
  await page?.screenshot({ path: `${ARTIFACTS}webgpu.png`, fullPage: true });
  await browser?.close();
  server?.close();
});

test('burn starts on a WebGPU adapter', async () => {
  const adapter = await page.evaluate(async () => (await window.sdxl).adapter);
  console.log('burn adapter:', JSON.stringify({ ...adapter.burn, limits: undefined }, null, 2));
  console.log('burn device limits:', adapter.burn.limits);
  console.log('browser adapter:', JSON.stringify(adapter.browser, null, 2));
  assert.equal(adapter.burn.backend, 'BrowserWebGpu');
  assert.ok(adapter.browser, 'navigator.gpu.requestAdapter() gave no adapter');
  assert.ok(adapter.browser.limits.maxStorageBufferBindingSize > 0);
});

test('ops check on WebGPU equals the native CPU backend', async () => {
  const got = await page.evaluate(async () => (await window.sdxl).opsCheck());
  const want = JSON.parse(execFileSync(
    'cargo', ['run', '-q', '-p', 'sdxl-web', '--example', 'ops_check', '--', '--device', 'cpu'],
    { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
  ));
  assert.deepEqual(Object.keys(got), Object.keys(want));
  for (const [name, values] of Object.entries(want)) {
    assert.equal(got[name].length, values.length, name);
    let diff = 0, norm = 0;
    values.forEach((w, i) => { diff += (got[name][i] - w) ** 2; norm += w ** 2; });
    const error = Math.sqrt(diff / norm);
    console.log(`${name.padEnd(16)} ${values.length} values, relative L2 ${error.toExponential(2)}`);
    assert.ok(error <= 1e-4, `${name}: WebGPU differs from the CPU backend, relative L2 ${error}`);
  }
});
