// The kernel benchmark in a real browser (a script, not a CI stage; README, "Kernels and
// speed"): serves the site, opens web/kernel-bench.html in headless Chromium (WebGPU on
// SwiftShader) and prints the adapter and the table — the same benchmark and shapes as the
// native `kernel_bench` example, so the two tables compare ratio for ratio.
//   node kernel-bench.mjs [--small] [attention] [group-norm] [geglu] [conv] [upsample] [linear] [--minutes 60]
// Needs the web build (.ci/build-web).
import { launch } from './chromium.mjs';
import { serve } from '../../web/serve.mjs';

const args = process.argv.slice(2);
const minutes = Number(args.includes('--minutes') ? args[args.indexOf('--minutes') + 1] : 60);
const ops = args.filter((arg) => ['attention', 'group-norm', 'geglu', 'conv', 'upsample', 'linear'].includes(arg));
const query = new URLSearchParams();
if (args.includes('--small')) query.set('small', '');
if (ops.length) query.set('ops', ops.join(','));

const site = await serve(0);
const browser = await launch();
try {
  const page = await browser.newPage();
  page.on('console', (message) => console.log(`[page] ${message.text()}`));
  await page.goto(`http://127.0.0.1:${site.address().port}/web/kernel-bench.html?${query}`);
  const adapter = await page.evaluate(async () => (await window.sdxlBench).adapter);
  console.log(`adapter: ${adapter.name} (${adapter.backend}, ${adapter.driver})`);
  page.setDefaultTimeout(minutes * 60_000);
  const started = Date.now();
  const { markdown } = await page.evaluate(async () => (await window.sdxlBench).run());
  console.log(markdown);
  console.log(`benchmark took ${((Date.now() - started) / 1000).toFixed(0)} s`);
} finally {
  await browser.close();
  site.close();
}
