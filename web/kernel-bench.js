// The kernel benchmark page (web/kernel-bench.html): loads the wasm, starts burn on WebGPU and
// runs `Gpu.kernelBench` (crate/src/kernel_bench.rs) with the page's options.
// `window.sdxlBench` resolves to { adapter, run() } once ready (tests/browser/kernel-bench.mjs).
import init, { Gpu } from './pkg/sdxl_web.js';

const $ = (id) => document.getElementById(id);
const options = new URLSearchParams(location.search);
const small = options.has('small');
const ops = (options.get('ops') ?? '').split(',').filter(Boolean);

/** The rows as the Markdown table the native example prints. */
function table(rows) {
  const times = (x) => (x == null ? '—' : `${x.toFixed(2)}×`);
  const lines = rows.map((r) => `| ${r.op} | ${r.ms.toFixed(2)} | ${r.gflops.toFixed(2)} | ${times(r.versusBurn)} | ${times(r.versusMatmul)} |`);
  return ['| op | ms | GFLOP/s | ours vs burn | vs f32 matmul of equal FLOPs |', '|---|---|---|---|---|', ...lines].join('\n');
}

async function start() {
  if (!navigator.gpu) throw new Error('This browser has no WebGPU (navigator.gpu is missing).');
  await init();
  const gpu = await Gpu.init();
  const adapter = gpu.adapter();
  $('adapter').textContent = `${adapter.name} (${adapter.backend}, ${adapter.driver}); ${small ? 'small shapes' : 'shapes at 1024²'}${ops.length ? `; ${ops.join(', ')}` : ''}`;
  const run = async () => {
    $('run').disabled = true;
    $('status').textContent = 'Running…';
    const started = performance.now();
    const rows = await gpu.kernelBench(small, ops);
    const markdown = table(rows);
    $('result').textContent = markdown;
    $('status').textContent = `Done in ${((performance.now() - started) / 1000).toFixed(0)} s.`;
    $('run').disabled = false;
    return { rows, markdown };
  };
  $('run').onclick = () => run().catch(fail);
  $('run').disabled = false;
  $('status').textContent = 'Ready: burn is running on WebGPU.';
  return { adapter, run };
}

function fail(error) {
  $('status').textContent = String(error?.message ?? error);
  $('status').className = 'error';
  throw error;
}

window.sdxlBench = start().catch(fail);
