// The page: the form, progress and results. All GPU work happens in web/worker.js; this file
// only sends it messages and shows what comes back. `window.sdxlApp` exposes the state the
// browser tests read (status, the last image, the events seen).

const $ = (id) => document.getElementById(id);
const DEMO = { base: 'web/demo-model/base/', refiner: 'web/demo-model/refiner/' };
const MB = 1024 * 1024;

const app = { state: 'starting', last: null, images: [], events: [], adapter: null };
window.sdxlApp = app;

const params = new URLSearchParams(location.search);
$('model-url').value = params.get('model') ?? new URL(DEMO.base, location.href).href;
$('refiner-url').value = params.has('refiner') ? params.get('refiner') : (params.has('model') ? '' : new URL(DEMO.refiner, location.href).href);

function formatBytes(bytes) {
  return bytes >= 1024 * MB ? `${(bytes / 1024 / MB).toFixed(2)} GB` : `${(bytes / MB).toFixed(1)} MB`;
}

function setState(state, text, isError = false) {
  app.state = state;
  $('status').textContent = text;
  $('status').className = isError ? 'error' : '';
  const busy = ['loading', 'downloading', 'generating'].includes(state);
  $('generate').disabled = state !== 'ready';
  $('cancel').disabled = state !== 'generating';
  $('load').disabled = busy || state === 'crashed';
}

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
  app.loaded = null;
  startWorker();
}

function load(confirm) {
  app.confirmed = confirm;
  $('notice').hidden = true;
  setState('loading', 'Reading the model manifest…');
  worker.postMessage({ type: 'load', base: $('model-url').value, refiner: $('refiner-url').value || null, confirm });
}

function showStorage(estimate) {
  if (estimate?.quota) $('storage').textContent = `Browser storage: ${formatBytes(estimate.usage)} used of ${formatBytes(estimate.quota)} available to this site.`;
}

const handlers = {
  ready({ adapter }) {
    app.adapter = adapter;
    $('adapter').textContent = `GPU: ${adapter.name || 'unnamed adapter'} (${adapter.backend}); largest buffer ${formatBytes(adapter.maxBufferSize)}.`;
    const isDemo = $('model-url').value === new URL(DEMO.base, location.href).href;
    load(isDemo); // the bundled demo model is small: no need to ask
  },
  plan({ total, cachedBytes, files, estimate }) {
    showStorage(estimate);
    const missing = total - cachedBytes;
    const text = `${files} files, ${formatBytes(total)}: ${formatBytes(cachedBytes)} cached, ${formatBytes(missing)} to download.`;
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
  loaded({ hasRefiner, fetched, files, estimate }) {
    showStorage(estimate);
    $('refiner').disabled = !hasRefiner;
    $('refiner').checked &&= hasRefiner;
    app.loaded = { hasRefiner, fetched, files };
    setState('ready', `Model ready (${files - fetched} of ${files} files from the cache).`);
  },
  step({ index, total, stage, preview }) {
    $('progress').max = total;
    $('progress').value = index;
    setState('generating', `Step ${index} of ${total} (${stage})`);
    if (preview) {
      const canvas = $('preview');
      [canvas.width, canvas.height] = [preview.width, preview.height];
      canvas.getContext('2d').putImageData(new ImageData(preview.rgba, preview.width, preview.height), 0, 0);
      canvas.hidden = false;
      $('result').hidden = true;
    }
  },
  image(result) {
    app.last = result;
    const url = URL.createObjectURL(new Blob([result.png], { type: 'image/png' }));
    app.images.push(url);
    showImage(url, result.seed);
    const thumb = document.createElement('img');
    thumb.src = url;
    thumb.alt = result.parameters;
    thumb.title = result.parameters;
    thumb.onclick = () => showImage(url, result.seed);
    $('strip').prepend(thumb);
    const warnings = result.warnings.length ? ` Warnings: ${result.warnings.join('; ')}` : '';
    setState('ready', `Done in ${result.seconds.toFixed(1)} s.${warnings}`);
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

function showImage(url, seed) {
  $('result').src = url;
  $('result').hidden = false;
  $('preview').hidden = true;
  $('save').href = url;
  $('save').download = `sdxl-${seed}.png`;
  $('save').hidden = false;
  $('used-seed').textContent = `Seed ${seed}`;
}

function size() {
  if ($('size').value === 'custom') return [Number($('width').value), Number($('height').value)];
  return $('size').value.split('×').map(Number);
}

function generate() {
  if (app.state !== 'ready') return;
  const seed = $('seed').value.trim();
  if (!/^\d+$/.test(seed) || BigInt(seed) >= 2n ** 64n) {
    setState('ready', 'The seed must be a whole number from 0 to 18446744073709551615.', true);
    return;
  }
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
  setState('generating', 'Encoding the prompt…');
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
$('cancel').onclick = () => worker.postMessage({ type: 'cancel' });
$('random-seed').onclick = () => {
  const [high, low] = crypto.getRandomValues(new Uint32Array(2));
  $('seed').value = String((BigInt(high & 0x1fffff) << 32n) | BigInt(low)); // < 2^53
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
