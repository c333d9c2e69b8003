// Compares web builds side by side in one run (headless Chromium, WebGPU on SwiftShader): for
// each wasm-bindgen output folder given, its .wasm size raw and gzipped, the time from opening
// the page to the demo model being ready, and a 64×64, 4-step base + refiner generation; each
// build runs twice, alternating, and the better time counts.
//   node bench-builds.mjs LABEL=PKG_DIR LABEL=PKG_DIR…   (e.g. s=../../web/pkg z=/tmp/optz/pkg)
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch } from './chromium.mjs';
import { serve } from '../../web/serve.mjs';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ROUNDS = Number(process.env.ROUNDS ?? 2);
const builds = process.argv.slice(2).map((arg) => {
  const [label, dir] = arg.split('=');
  return { label, dir: resolve(dir) };
});
if (builds.length === 0) {
  console.error('usage: node bench-builds.mjs LABEL=PKG_DIR …');
  process.exit(2);
}

// The site is served from the repository; web/pkg is swapped for each build (and restored).
const pkg = join(ROOT, 'web/pkg');
const saved = mkdtempSync(join(tmpdir(), 'sdxl-pkg-'));
cpSync(pkg, saved, { recursive: true });
for (const build of builds) {
  // A snapshot: a build may be web/pkg itself.
  const copy = mkdtempSync(join(tmpdir(), `sdxl-pkg-${build.label}-`));
  cpSync(build.dir, copy, { recursive: true });
  build.dir = copy;
}
const server = await serve(0);
const url = `http://127.0.0.1:${server.address().port}/index.html`;
const browser = await launch();

async function once(build) {
  rmSync(pkg, { recursive: true, force: true });
  cpSync(build.dir, pkg, { recursive: true });
  const context = await browser.newContext();
  const page = await context.newPage();
  const start = Date.now();
  await page.goto(url);
  await page.waitForFunction(() => window.sdxlApp.state === 'ready', null, { timeout: 300_000 });
  const ready = (Date.now() - start) / 1000;
  await page.selectOption('#size', 'custom');
  await page.fill('#width', '64');
  await page.fill('#height', '64');
  await page.fill('#steps', '4');
  await page.click('#generate');
  await page.waitForFunction(() => window.sdxlApp.last, null, { timeout: 600_000 });
  const generate = await page.evaluate(() => window.sdxlApp.last.seconds);
  await context.close();
  return { ready, generate };
}

try {
  const results = new Map(builds.map((b) => [b.label, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const build of builds) results.get(build.label).push(await once(build));
  }
  console.log('build   wasm raw    wasm gzip   page→model ready   generate 64² ×4 steps');
  for (const build of builds) {
    const wasm = readFileSync(join(build.dir, 'sdxl_web_bg.wasm'));
    const runs = results.get(build.label);
    const best = (key) => Math.min(...runs.map((r) => r[key])).toFixed(1);
    console.log(`${build.label.padEnd(7)} ${(wasm.length / 1e6).toFixed(2).padStart(6)} MB ${(gzipSync(wasm, { level: 9 }).length / 1e6).toFixed(2).padStart(7)} MB ${best('ready').padStart(14)} s ${best('generate').padStart(18)} s`);
  }
} finally {
  await browser.close();
  server.close();
  rmSync(pkg, { recursive: true, force: true });
  cpSync(saved, pkg, { recursive: true });
}
