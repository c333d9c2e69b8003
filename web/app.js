// The page: the form, progress and results. All GPU work happens in web/worker.js; this file
// only sends it messages and shows what comes back. `window.sdxlApp` exposes the state the
// browser tests read (status, the last image, the events seen).

const $ = (id) => document.getElementById(id);
const DEMO = { base: 'web/demo-model/base/', refiner: 'web/demo-model/refiner/' };
// What the bundled demo model is for: showing the machinery quickly (its weights are random).
const DEMO_SETTINGS = { steps: 4, width: 64, height: 64 };
const DEMO_CAPTION = 'The bundled demo model has random weights: its images are noise that shows the machinery, not a picture. Load a converted SDXL model for real images.';
const MB = 1024 * 1024;

const app = { state: 'starting', last: null, images: [], events: [], adapter: null };
window.sdxlApp = app;

const params = new URLSearchParams(location.search);
$('model-url').value = params.get('model') ?? new URL(DEMO.base, location.href).href;
$('refiner-url').value = params.has('refiner') ? params.get('refiner') : (params.has('model') ? '' : new URL(DEMO.refiner, location.href).href);
if (params.has('memory')) $('memory').value = params.get('memory');
if (params.has('budget')) $('memory-budget').value = params.get('budget');
// For trying the VAE's tiling on a small model: a lower buffer limit than the GPU's.
const bufferLimitMiB = params.has('bufferLimitMiB') ? Number(params.get('bufferLimitMiB')) : null;
const MEMORY_TEXT = { resident: 'every network loaded', sequential: 'one network at a time' };

function formatBytes(bytes) {
  return bytes >= 1024 * MB ? `${(bytes / 1024 / MB).toFixed(2)} GB` : `${(bytes / MB).toFixed(1)} MB`;
}

function setState(state, text, isError = false) {
  app.state = state;
  for (const id of ['status', 'action-status']) {
    $(id).textContent = text;
    $(id).className = isError ? 'error' : (id === 'action-status' ? 'small' : '');
  }
  const busy = ['loading', 'downloading', 'generating', 'cancelling'].includes(state);
  $('generate').disabled = state !== 'ready';
  $('cancel').disabled = state !== 'generating';
  $('load').disabled = busy || state === 'crashed';
  // Freeing the pipeline under a running generation would pull the model from under it.
  $('release').disabled = busy || state === 'crashed';
}

const sameOrigin = (address) => !address || new URL(address, location.href).origin === location.origin;
const isDemo = () => $('model-url').value === new URL(DEMO.base, location.href).href;

/** Shows advice the user can act on; `action` adds a button. */
function notice(message, action) {
  const box = $('notice');
  box.hidden = false;
  box.textContent = message;
  if (action) {
    const button = document.createElement('button');
    button.textContent = action.label;
    button.onclick = action.run;
    box.append(button);
  }
}

// A trapped wasm module ('crashed') and a lost device ('gpu') are one event for the user.
const GPU_STOPPED = 'The GPU stopped (the device was lost or ran out of memory). Your cached models are kept: restart to load them again.';
const ADVICE = {
  'no-webgpu': 'This browser offers no WebGPU. Use a current Chrome or Edge (version 113 or later) on Windows, macOS or ChromeOS, Chrome on Android 12+, or Safari 26+; on Linux enable chrome://flags/#enable-unsafe-webgpu and Vulkan. Firefox 141+ has WebGPU on Windows.',
  network: 'The model could not be downloaded.',
  integrity: 'A model file does not match its manifest.',
  quota: 'Browser storage is full.',
  crashed: GPU_STOPPED,
  gpu: GPU_STOPPED,
  output: 'The image could not be encoded.',
};

let worker;

function startWorker() {
  worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  worker.onmessage = ({ data }) => {
    app.events.push(data.type);
    (handlers[data.type] ?? (() => {}))(data);
  };
  worker.onerror = (event) => handlers.error({ kind: 'crashed', message: event.message ?? 'the worker failed' });
  setState('starting', 'Starting WebGPU…');
  worker.postMessage({ type: 'init' });
}

function restart() {
  worker.terminate();
  $('notice').hidden = true;
  $('preview').hidden = true;
  app.loaded = null;
  startWorker();
}

function load(confirm) {
  app.confirmed = confirm;
  $('notice').hidden = true;
  setState('loading', 'Reading the model manifest…');
  const budget = $('memory-budget').value.trim();
  const memory = { memory: $('memory').value, ...(budget === '' ? {} : { budgetMiB: Number(budget) }) };
  worker.postMessage({ type: 'load', base: $('model-url').value, refiner: $('refiner-url').value || null, confirm, memory, bufferLimitMiB });
}

function showStorage(estimate) {
  if (estimate?.quota) $('storage').textContent = `Browser storage: ${formatBytes(estimate.usage)} used of ${formatBytes(estimate.quota)} available to this site.`;
}

const handlers = {
  ready({ adapter, defaults }) {
    app.adapter = adapter;
    app.defaults = defaults;
    applyDefaults(defaults);
    $('adapter').textContent = `GPU: ${adapter.name || 'unnamed adapter'} (${adapter.backend}); largest buffer ${formatBytes(adapter.maxBufferSize)}.`;
    // A link naming a model on another host loads nothing before the user agrees.
    const foreign = [$('model-url').value, $('refiner-url').value].filter((address) => !sameOrigin(address));
    if (foreign.length) {
      const hosts = [...new Set(foreign.map((address) => new URL(address, location.href).host))].join(', ');
      setState('failed', `This link asks to load a model from ${hosts}.`);
      notice(`This link asks to load a model from ${hosts}. Nothing is fetched from there until you agree.`, { label: `Load from ${hosts}`, run: () => load(false) });
      return;
    }
    load(isDemo()); // the bundled demo model is small: no need to ask
  },
  plan({ total, cachedBytes, files, estimate, memory }) {
    showStorage(estimate);
    const missing = total - cachedBytes;
    const gpu = `GPU memory: ${MEMORY_TEXT[memory.residency]}, ${formatBytes(memory.peakWeights)} of weights at most.`;
    const text = `${files} files, ${formatBytes(total)}: ${formatBytes(cachedBytes)} cached, ${formatBytes(missing)} to download. ${gpu}`;
    app.plan = { total, cachedBytes };
    if (missing > 0 && estimate?.quota && missing > estimate.quota - estimate.usage) {
      notice(`The model needs ${formatBytes(missing)} more storage than this site has left (${formatBytes(estimate.quota - estimate.usage)}). Free disk space or clear cached models.`);
    }
    setState('downloading', text);
    $('download').hidden = missing === 0;
    $('download').textContent = `Download ${formatBytes(missing)}`;
    if (missing > 0 && !app.confirmed) {
      $('model-panel').open = true;
      setState('confirm', `${text} Press Download to start.`);
    }
  },
  download({ done, total, speed, eta }) {
    $('download').hidden = true;
    $('progress').max = total;
    $('progress').value = done;
    const rate = speed ? `, ${formatBytes(speed)}/s` : '';
    const left = eta !== undefined ? `, ${Math.ceil(eta)} s left` : '';
    setState('downloading', `Downloading: ${formatBytes(done)} of ${formatBytes(total)}${rate}${left}`);
  },
  loaded({ hasRefiner, sizeMultiple, refinerSizeMultiple, fetched, files, estimate, memory, wasmBytes }) {
    showStorage(estimate);
    // The custom size offers only sizes the model can take.
    for (const id of ['width', 'height']) Object.assign($(id), { min: sizeMultiple, step: sizeMultiple });
    Object.assign(app, { sizeMultiple, refinerSizeMultiple });
    $('caption').hidden = !isDemo();
    $('caption').textContent = isDemo() ? DEMO_CAPTION : '';
    if (isDemo()) applyDefaults({ ...app.defaults, ...DEMO_SETTINGS });
    $('refiner').disabled = !hasRefiner;
    $('refiner').checked &&= hasRefiner;
    app.loaded = { hasRefiner, fetched, files, memory, wasmBytes };
    setState('ready', `Model ready (${files - fetched} of ${files} files from the cache; ${MEMORY_TEXT[memory.residency]}).`);
  },
  step({ index, total, stage, preview }) {
    $('progress').max = total;
    $('progress').value = index;
    // Time per step from the second step on (the first also encodes the prompt).
    const now = performance.now();
    app.run.firstStepDone ??= now;
    const perStep = index > 1 ? (now - app.run.firstStepDone) / (index - 1) : now - app.run.started;
    const left = (total - index) * perStep / 1000;
    const timing = `, ${(perStep / 1000).toFixed(1)} s per step${index < total ? `, about ${formatDuration(left)} left` : ''}`;
    if (app.state !== 'cancelling') {
      setState('generating', index < total ? `Step ${index} of ${total} done (${stage})${timing}` : `Decoding the image (${total} steps done)…`);
    }
    if (preview) {
      const canvas = $('preview');
      [canvas.width, canvas.height] = [preview.width, preview.height];
      const rgba = new Uint8ClampedArray(preview.rgba.buffer, preview.rgba.byteOffset, preview.rgba.length);
      canvas.getContext('2d').putImageData(new ImageData(rgba, preview.width, preview.height), 0, 0);
      canvas.hidden = false;
      $('result').hidden = true;
    }
  },
  image(result) {
    app.last = result;
    app.lastPrompt = result.request.prompt;
    const url = URL.createObjectURL(new Blob([result.png], { type: 'image/png' }));
    app.images.push(url);
    showImage(url, result.seed, result.request.prompt);
    // A button, so the strip is reachable and usable by keyboard.
    const thumb = document.createElement('button');
    thumb.type = 'button';
    thumb.title = result.parameters;
    const img = document.createElement('img');
    img.src = url;
    img.alt = `Earlier image: ${result.request.prompt}`;
    thumb.append(img);
    thumb.onclick = () => showImage(url, result.seed, result.request.prompt);
    $('strip').prepend(thumb);
    const warnings = result.warnings.length ? ` Warnings: ${result.warnings.join('; ')}` : '';
    const peak = result.peakReserved ? ` GPU memory peak ${formatBytes(result.peakReserved)}.` : '';
    const reloads = result.reloadSeconds ? ` Reloading networks took ${result.reloadSeconds.toFixed(1)} s.` : '';
    setState('ready', `Done in ${result.seconds.toFixed(1)} s.${peak}${reloads}${warnings}`);
  },
  cancelled() {
    setState('ready', 'Cancelled.');
    $('preview').hidden = true;
  },
  released() {
    setState('released', 'GPU memory released. Load the model again to generate.');
  },
  'cache-cleared'({ estimate }) {
    showStorage(estimate);
    $('storage').textContent += ' Cached models cleared.';
    if (app.state === 'ready') setState('ready', 'Cached models cleared. The loaded model stays usable until released; loading it again downloads it.');
  },
  warning({ message }) {
    notice(message);
  },
  error({ kind, message, during }) {
    const advice = ADVICE[kind] ? `${ADVICE[kind]} ` : '';
    // A trap in the wasm module, or a GPU that stopped answering (device lost): only a new
    // worker with a new device recovers.
    if (kind === 'crashed' || kind === 'gpu') {
      setState('crashed', 'The GPU worker stopped.', true);
      notice(`${advice}(${message})`, { label: 'Restart', run: restart });
      return;
    }
    if (kind === 'no-webgpu') {
      setState('no-webgpu', 'WebGPU is not available.', true);
      notice(`${advice}(${message})`);
      return;
    }
    const back = during === 'generate' ? 'ready' : (pipelineLoaded() ? 'ready' : 'failed');
    setState(back, `${advice}${message}`, true);
    if (kind === 'network' || kind === 'integrity') notice(`${advice}${message}`, { label: 'Try again', run: () => load(true) });
  },
};

const pipelineLoaded = () => Boolean(app.loaded) && app.state !== 'released';

/** Hides the previous run's image and its download while a new run is under way. */
function clearResult() {
  for (const id of ['result', 'save', 'used-seed']) $(id).hidden = true;
}

function showImage(url, seed, prompt) {
  $('result').src = url;
  $('result').alt = prompt;
  $('result').hidden = false;
  $('preview').hidden = true;
  $('save').href = url;
  $('save').download = `sdxl-${seed}.png`;
  $('save').hidden = false;
  $('used-seed').textContent = `Seed ${seed} (use again)`;
  $('used-seed').hidden = false;
  $('used-seed').onclick = () => { $('seed').value = seed; };
}

function formatDuration(seconds) {
  return seconds < 90 ? `${Math.ceil(seconds)} s` : `${Math.round(seconds / 60)} min`;
}

/** The form starts at the parameters' defaults, which the wasm module gives (one source). */
function applyDefaults(defaults) {
  $('steps').value = defaults.steps;
  $('guidance').value = defaults.guidance;
  $('scheduler').value = defaults.scheduler;
  $('refiner-start').value = defaults.refiner_start;
  $('width').value = defaults.width;
  $('height').value = defaults.height;
  const bucket = `${defaults.width}×${defaults.height}`;
  $('size').value = [...$('size').options].some((option) => option.value === bucket) ? bucket : 'custom';
  $('form').classList.toggle('custom-size', $('size').value === 'custom');
}

function size() {
  if ($('size').value === 'custom') return [Number($('width').value), Number($('height').value)];
  return $('size').value.split('×').map(Number);
}

/** A random seed below 2^53 (exact as a JavaScript number). */
function randomSeed() {
  const [high, low] = crypto.getRandomValues(new Uint32Array(2));
  return String((BigInt(high & 0x1fffff) << 32n) | BigInt(low));
}

/** The form's problem, in words, or null: the same check for the button and Ctrl+Enter. */
function formProblem() {
  const seed = $('seed').value.trim();
  if (seed !== '' && seed !== '-1' && (!/^\d+$/.test(seed) || BigInt(seed) >= 2n ** 64n)) {
    return 'The seed must be a whole number from 0 to 18446744073709551615, or −1 (or empty) for a random one.';
  }
  const steps = Number($('steps').value);
  if (!Number.isInteger(steps) || steps < 1 || steps > 1000) return 'Steps must be a whole number from 1 to 1000.';
  const guidance = Number($('guidance').value);
  if ($('guidance').value.trim() === '' || !(guidance >= 0)) return 'Guidance must be a number of 0 or more.';
  const switchAt = Number($('refiner-start').value);
  if (!(switchAt > 0 && switchAt < 1)) return 'The refiner switch point must lie between 0 and 1.';
  // The refiner's UNet may downsample more than the base's (SDXL's: multiples of 64, not 32).
  const refiner = $('refiner').checked && !$('refiner').disabled;
  const multiple = (refiner ? app.refinerSizeMultiple : app.sizeMultiple) ?? 8;
  if (!size().every((side) => Number.isInteger(side) && side > 0 && side % multiple === 0)) {
    return `Width and height must be positive multiples of ${multiple} for this model${refiner ? ' with its refiner' : ''}.`;
  }
  return null;
}

function generate() {
  if (app.state !== 'ready') return;
  const problem = formProblem();
  if (problem) {
    setState('ready', problem, true);
    return;
  }
  // −1 or empty: a new random seed for this run (the one used is shown with the image).
  const given = $('seed').value.trim();
  const seed = given === '' || given === '-1' ? randomSeed() : given;
  const [width, height] = size();
  const negative = $('negative').value;
  const request = {
    prompt: $('prompt').value,
    negative_prompt: negative === '' ? null : negative,
    steps: Number($('steps').value),
    guidance: Number($('guidance').value),
    width,
    height,
    seed, // a decimal string: JavaScript numbers lose precision past 2^53

    scheduler: $('scheduler').value,
    refiner: $('refiner').checked && !$('refiner').disabled,
    refiner_start: Number($('refiner-start').value),
    previews: true,
  };
  $('progress').value = 0;
  clearResult();
  app.run = { started: performance.now(), firstStepDone: null };
  setState('generating', `Encoding the prompt and running step 1 of ${request.steps}…`);
  worker.postMessage({ type: 'generate', request });
}

$('form').addEventListener('submit', (event) => {
  event.preventDefault();
  generate();
});
$('form').addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    generate();
  }
});
$('cancel').onclick = () => {
  setState('cancelling', 'Cancelling… (after the step that is running)');
  worker.postMessage({ type: 'cancel' });
};
$('random-seed').onclick = () => {
  $('seed').value = randomSeed();
};
$('size').onchange = () => $('form').classList.toggle('custom-size', $('size').value === 'custom');
$('load').onclick = () => load(false);
$('download').onclick = () => {
  $('download').hidden = true;
  setState('downloading', 'Starting the download…');
  worker.postMessage({ type: 'download' });
};
$('release').onclick = () => worker.postMessage({ type: 'release' });
$('clear-cache').onclick = () => worker.postMessage({ type: 'clear-cache' });

if (!navigator.gpu) {
  handlers.error({ kind: 'no-webgpu', message: 'navigator.gpu is missing' });
} else {
  startWorker();
}
