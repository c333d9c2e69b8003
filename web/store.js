// Model files in the browser's Cache Storage, keyed by their URL, and their download: a
// download cut short keeps what arrived (under `URL#partial`) and resumes from there with an
// HTTP Range request where the server allows it. What goes into the cache was checked against
// the manifest first (the worker does that), so a cached file is only ever re-checked, never
// trusted blindly.

const CACHE = 'sdxl-web-models-v1';
const partialKey = (url) => `${url}#partial`;

/** An Error with a `kind` the page turns into advice. */
export function failure(kind, message) {
  return Object.assign(new Error(message), { kind });
}

const open = () => caches.open(CACHE);

/** The cached bytes of `url`, or null. */
export async function cached(url) {
  const response = await (await open()).match(url);
  return response ? new Uint8Array(await response.arrayBuffer()) : null;
}

/** Whether `url` is cached (without reading it). */
export async function has(url) {
  return Boolean(await (await open()).match(url));
}

/** Caches checked bytes of `url`; throws a `quota` failure when storage is full. */
export async function keep(url, bytes) {
  try {
    await (await open()).put(url, new Response(bytes, { headers: { 'Content-Length': String(bytes.length) } }));
  } catch (error) {
    if (error?.name === 'QuotaExceededError') {
      throw failure('quota', `Browser storage is full: ${url} could not be cached (it is loaded, but will be downloaded again next time). Free space or clear cached models.`);
    }
    throw error;
  }
}

export async function evict(url) {
  const cache = await open();
  await cache.delete(url);
  await cache.delete(partialKey(url));
}

/** Deletes every cached model file. */
export async function clear() {
  await caches.delete(CACHE);
}

/** The URLs in the cache (partial downloads end in `#partial`). */
export async function keys() {
  return (await (await open()).keys()).map((request) => request.url);
}

function rangeStart(response) {
  const match = /^bytes (\d+)-/.exec(response.headers.get('Content-Range') ?? '');
  return match ? Number(match[1]) : -1;
}

/**
 * Downloads `size` bytes from `url`, calling `onBytes(n)` as they arrive (including bytes kept
 * from an earlier interrupted attempt). Resolves to the bytes; they are not checked here.
 */
export async function download(url, size, onBytes) {
  const cache = await open();
  let head = null;
  const saved = await cache.match(partialKey(url));
  if (saved) {
    head = new Uint8Array(await saved.arrayBuffer());
    if (head.length === 0 || head.length >= size) head = null;
  }
  let response;
  try {
    response = await fetch(url, { cache: 'no-store', headers: head ? { Range: `bytes=${head.length}-` } : {} });
  } catch (error) {
    throw failure('network', `Could not fetch ${url} (${error.message}). Check the address and your connection; a model on another site must allow cross-origin requests (CORS).`);
  }
  if (!response.ok) {
    throw failure('network', `Fetching ${url} failed: HTTP ${response.status} ${response.statusText}.`);
  }
  const body = new Uint8Array(size);
  let offset = 0;
  if (head && response.status === 206 && rangeStart(response) === head.length) {
    body.set(head);
    offset = head.length;
    onBytes(offset);
  }
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (offset + value.length > size) {
        throw failure('integrity', `${url} is larger than the manifest says (${size} bytes): the model on the server was changed. Load it again.`);
      }
      body.set(value, offset);
      offset += value.length;
      onBytes(value.length);
    }
    if (offset !== size) throw new Error(`the server sent ${offset} of ${size} bytes`);
  } catch (error) {
    if (error.kind) throw error;
    if (offset > 0) await cache.put(partialKey(url), new Response(body.slice(0, offset))).catch(() => {});
    throw failure('network', `The download of ${url} was interrupted after ${offset} of ${size} bytes (${error.message}). Load again to resume.`);
  }
  await cache.delete(partialKey(url));
  return body;
}
