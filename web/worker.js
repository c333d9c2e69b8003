// The Web Worker that owns the GPU: burn on WebGPU, model loading (Cache Storage first, the
// network otherwise) and generation, so the page never freezes. It talks to the page by
// messages (the page's side is `handlers` in app.js):
//   in:  init · load {base, refiner, confirm} · download · generate {request} · cancel · release · clear-cache
//   out: ready {adapter, defaults} · plan {...} · download {done, total, speed, eta} · loaded {...}
//        step {...} · image {...} · cancelled · released · cache-cleared · warning {message}
//        error {kind, message}
// What crosses to and from the wasm module is plain data (see crate/src/web/bindings.rs).
import init, { Gpu, ModelLoader, Pipeline, defaults, planMemory } from './pkg/sdxl_web.js';
import * as store from './store.js';
import { Transfer } from './transfer.js';

let gpu = null;
let wasm = null; // the module's exports: its memory's size is the heap's peak (it never shrinks)
let pipeline = null;
let pending = null; // loaders waiting for the download to be confirmed
let manifests = {}; // role → the manifest's URL, for the files a sequential plan loads again
let cancelRequested = false;
let generating = false;
// A manifest lists a model's files: a few hundred kilobytes for SDXL. Anything far larger is
// not one, and is not read into memory.
const MAX_MANIFEST_BYTES = 16 * 1024 * 1024;

const post = (type, data = {}, transfer = []) => self.postMessage({ type, ...data }, transfer);

async function estimate() {
  const { usage = 0, quota = 0 } = (await navigator.storage?.estimate?.()) ?? {};
  return { usage, quota };
}

/** `…/model/` or `…/model/manifest.json` → the manifest's absolute URL. */
function manifestUrl(address) {
  const url = new URL(address, self.location.href);
  if (!url.pathname.endsWith('.json')) url.pathname = url.pathname.replace(/\/?$/, '/manifest.json');
  return url.href;
}

async function fetchManifest(url) {
  let response;
  try {
    response = await fetch(url, { cache: 'no-cache' });
  } catch (error) {
    throw store.failure('network', `The manifest ${url} is unreachable (${error.message}). Check the address; a model on another site must allow cross-origin requests (CORS).`);
  }
  if (!response.ok) throw store.failure('network', `The manifest ${url} is unreachable: HTTP ${response.status} ${response.statusText}.`);
  const tooLarge = () => store.failure('model', `${url} is larger than ${MAX_MANIFEST_BYTES >> 20} MiB: not a model manifest.`);
  if (Number(response.headers.get('Content-Length') ?? 0) > MAX_MANIFEST_BYTES) throw tooLarge();
  const parts = [];
  let length = 0;
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    length += value.length;
    if (length > MAX_MANIFEST_BYTES) {
      await reader.cancel();
      throw tooLarge();
    }
    parts.push(value);
  }
  const bytes = new Uint8Array(length);
  parts.reduce((offset, part) => (bytes.set(part, offset), offset + part.length), 0);
  return bytes;
}

/**
 * A file a sequential plan loads again during a run (`file`: { path, size, sha256 } of the
 * `role`'s manifest): from the cache, where the download put it. A copy that left the cache, or
 * failed its check (`fresh`), is downloaded again and cached only once its SHA-256 matches.
 */
async function reloadFile(role, file, fresh) {
  const url = new URL(file.path, manifests[role]).href;
  if (!fresh) {
    const bytes = await store.cached(url);
    if (bytes) return bytes;
  }
  await store.evict(url);
  post('warning', { message: `${file.path} ${fresh ? 'was damaged in' : 'left'} the browser's cache; downloading it again.` });
  const bytes = await store.download(url, file.size, () => {});
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  const hex = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
  if (hex !== file.sha256) throw store.failure('integrity', `${url} does not match its manifest. The model on the server is damaged or was replaced; it was not cached.`);
  try {
    await store.keep(url, bytes);
  } catch (error) {
    post('warning', { message: error.message });
  }
  return bytes;
}

const handlers = {
  async init() {
    wasm = await init();
    if (!navigator.gpu) throw store.failure('no-webgpu', 'This browser has no WebGPU (navigator.gpu is missing).');
    try {
      gpu = await Gpu.init();
    } catch (error) {
      throw store.failure('no-webgpu', String(error.message ?? error));
    }
    post('ready', { adapter: gpu.adapter(), defaults: defaults() });
  },

  async load({ base, refiner, confirm, memory = {}, bufferLimitMiB = null }) {
    if (generating) throw store.failure('input', 'Cancel the running generation before loading another model.');
    pipeline?.free();
    pipeline = null;
    pending = null;
    const models = [['base', base], ...(refiner ? [['refiner', refiner]] : [])];
    const loaders = [];
    const files = [];
    const urls = {};
    for (const [role, address] of models) {
      const url = manifestUrl(address);
      urls[role] = url;
      // Errors name files by their URL: the folder the manifest is in, then the file.
      const loader = new ModelLoader(gpu, await fetchManifest(url), url.slice(0, url.lastIndexOf('/')), role);
      loaders.push([role, loader]);
      for (const file of loader.needed()) {
        files.push({ ...file, role, loader, url: new URL(file.path, url).href });
      }
    }
    let cachedBytes = 0;
    for (const file of files) {
      file.cached = await store.has(file.url);
      if (file.cached) cachedBytes += file.size;
    }
    // The memory plan, from the networks' sizes: a budget too small is an error now, before
    // anything is downloaded.
    const plan = planMemory(loaders.flatMap(([, loader]) => loader.networkBytes()), memory);
    for (const [, loader] of loaders) loader.setResidency(plan.residency);
    const total = files.reduce((sum, file) => sum + file.size, 0);
    pending = { loaders, files, total, cachedBytes, urls, bufferLimitMiB, memory };
    post('plan', { total, cachedBytes, files: files.length, estimate: await estimate(), memory: plan });
    if (confirm || cachedBytes === total) await handlers.download();
  },

  async download() {
    if (!pending) throw store.failure('input', 'Nothing to download: load a model first.');
    const { loaders, files, total, cachedBytes, urls, bufferLimitMiB, memory } = pending;
    if (cachedBytes < total) await navigator.storage?.persist?.();
    const transfer = new Transfer(total, cachedBytes, performance.now());
    let last = 0;
    const report = (force) => {
      const now = performance.now();
      if (!force && now - last < 100) return;
      last = now;
      post('download', { done: transfer.done, total: transfer.total, speed: transfer.speed, eta: transfer.eta });
    };
    let fetched = 0;
    for (const file of files) {
      if (file.cached) {
        const bytes = await store.cached(file.url);
        try {
          if (!bytes) throw store.failure('integrity', `${file.url} left the cache`);
          file.loader.add(file.path, bytes);
          continue;
        } catch (error) {
          if (error.kind !== 'integrity') throw error;
          await store.evict(file.url);
          post('warning', { message: `The cached copy of ${file.path} was damaged (${error.message}); downloading it again.` });
        }
      }
      const bytes = await store.download(file.url, file.size, (n) => {
        transfer.advance(n, performance.now());
        report(false);
      });
      fetched += 1;
      try {
        file.loader.add(file.path, bytes);
      } catch (error) {
        if (error.kind === 'integrity') {
          throw store.failure('integrity', `${file.url} does not match its manifest: ${error.message}. The model on the server is damaged or was replaced; it was not cached.`);
        }
        throw error;
      }
      try {
        await store.keep(file.url, bytes);
      } catch (error) {
        post('warning', { message: error.message });
      }
    }
    report(true);
    const [base, refiner] = [loaders.find(([role]) => role === 'base')[1], loaders.find(([role]) => role === 'refiner')?.[1]];
    pending = null;
    pipeline = new Pipeline(gpu, base, refiner, memory);
    manifests = urls;
    if (bufferLimitMiB) pipeline.lowerBufferLimit(bufferLimitMiB * 1024 * 1024);
    post('loaded', { hasRefiner: pipeline.hasRefiner, sizeMultiple: pipeline.sizeMultiple, refinerSizeMultiple: pipeline.refinerSizeMultiple, fetched, files: files.length, estimate: await estimate(), memory: pipeline.plan, wasmBytes: wasm.memory.buffer.byteLength });
  },

  async generate({ request }) {
    if (!pipeline) throw store.failure('input', 'No model is loaded yet.');
    if (generating) throw store.failure('input', 'A generation is already running.');
    generating = true;
    cancelRequested = false;
    const started = performance.now();
    try {
      const result = await pipeline.generate(request, async (step) => {
        post('step', step, step.preview ? [step.preview.rgba.buffer] : []);
        // Let the worker take messages (a cancel) between steps.
        await new Promise((resolve) => setTimeout(resolve, 0));
        return !cancelRequested;
      }, reloadFile);
      const seconds = (performance.now() - started) / 1000;
      post('image', { ...result, request, seconds, peakReserved: pipeline.peakReserved, phases: pipeline.phases, reloadSeconds: pipeline.reloadSeconds, wasmBytes: wasm.memory.buffer.byteLength }, [result.rgba.buffer, result.png.buffer]);
    } catch (error) {
      if (error.kind === 'cancelled') post('cancelled');
      else throw error;
    } finally {
      generating = false;
    }
  },

  cancel() {
    cancelRequested = true;
  },

  release() {
    if (generating) throw store.failure('input', 'Cancel the running generation before releasing GPU memory.');
    pipeline?.free();
    pipeline = null;
    post('released');
  },

  async 'clear-cache'() {
    await store.clear();
    post('cache-cleared', { estimate: await estimate() });
  },
};

self.onmessage = async ({ data }) => {
  try {
    await handlers[data.type](data);
  } catch (error) {
    // A wasm trap (a panic, a lost device) leaves the module unusable: the page restarts us.
    const crashed = error instanceof WebAssembly.RuntimeError;
    post('error', {
      kind: crashed ? 'crashed' : (error?.kind ?? 'internal'),
      message: String(error?.message ?? error),
      during: data.type,
    });
  }
};
