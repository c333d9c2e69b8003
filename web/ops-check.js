// The ops check page (web/ops-check.html): loads the wasm, starts burn on WebGPU, shows the adapter, runs the ops check.
// `window.sdxl` resolves to { gpu, adapter, opsCheck() } once ready (the browser tests use it).
import init, { Gpu } from './pkg/sdxl_web.js';

const $ = (id) => document.getElementById(id);

// What the browser itself reports for its WebGPU adapter (the same one burn requests).
async function browserAdapter() {
  const adapter = await navigator.gpu?.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) return null;
  const limits = {};
  for (const key in adapter.limits) limits[key] = adapter.limits[key];
  const { vendor, architecture, device, description } = adapter.info ?? {};
  return { info: { vendor, architecture, device, description }, features: [...adapter.features].sort(), limits };
}

async function start() {
  if (!navigator.gpu) throw new Error('This browser has no WebGPU (navigator.gpu is missing).');
  await init();
  const gpu = await Gpu.init();
  const adapter = { burn: gpu.adapter(), browser: await browserAdapter() };
  $('adapter').textContent = JSON.stringify(adapter, null, 2);
  const opsCheck = async () => {
    const stages = await gpu.opsCheck(); // [{ name, values }], in the graph's order
    const out = Object.fromEntries(stages.map(({ name, values }) => [name, values]));
    $('ops-result').textContent = Object.entries(out)
      .map(([name, values]) => `${name.padEnd(16)} ${values.length} values: ${values.slice(0, 4).map((v) => v.toFixed(5)).join(', ')}, …`)
      .join('\n');
    return out;
  };
  $('ops-check').onclick = () => opsCheck().catch(fail);
  $('ops-check').disabled = false;
  $('status').textContent = 'Ready: burn is running on WebGPU.';
  return { gpu, adapter, opsCheck };
}

function fail(error) {
  $('status').textContent = String(error?.message ?? error);
  $('status').className = 'error';
  throw error;
}

window.sdxl = start().catch(fail);
