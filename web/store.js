// Model files in the browser's Cache Storage, keyed by their URL, and their download: a
// download cut short keeps what arrived (in a second cache, so a partial file never passes
// for a whole one) and resumes from there with an HTTP Range request where the server allows
// it and says where its answer starts (else the file is fetched whole again). What goes into
// the cache was checked against the manifest first (the worker does that), so a cached file is
// only ever re-checked, never trusted blindly.

const CACHE = 'sdxl-web-models-v1';
const PARTIAL = 'sdxl-web-partial-v1';

/** An Error with a `kind` the page turns into advice. */
export function failure(kind, message) {
  return Object.assign(new Error(message), { kind });
}

const open = () => caches.open(CACHE);
const openPartial = () => caches.open(PARTIAL);

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
  await (await open()).delete(url);
  await (await openPartial()).delete(url);
}

/** Deletes every cached model file, whole or partial. */
export async function clear() {
  await caches.delete(CACHE);
  await caches.delete(PARTIAL);
}

function rangeStart(response) {
  const match = /^bytes (\d+)-/.exec(response.headers.get('Content-Range') ?? '');
  return match ? Number(match[1]) : -1;
}

/** A GET of `url` from byte `from` on (a Range request when `from` > 0); throws a `network` failure. */
async function get(url, from) {
  let response;
  try {
    response = await fetch(url, { cache: 'no-store', headers: from > 0 ? { Range: `bytes=${from}-` } : {} });
  } catch (error) {
    throw failure('network', `Could not fetch ${url} (${error.message}). Check the address and your connection; a model on another site must allow cross-origin requests (CORS).`);
  }
  if (!response.ok) {
    throw failure('network', `Fetching ${url} failed: HTTP ${response.status} ${response.statusText}.`);
  }
  return response;
}

/**
 * Downloads `size` bytes from `url`, calling `onBytes(n)` as they arrive (including bytes kept
 * from an earlier interrupted attempt). Resolves to the bytes; they are not checked here.
 */
export async function download(url, size, onBytes) {
  const partial = await openPartial();
  let head = null;
  const saved = await partial.match(url);
  if (saved) {
    head = new Uint8Array(await saved.arrayBuffer());
    if (head.length === 0 || head.length >= size) head = null;
  }
  let response = await get(url, head ? head.length : 0);
  if (head && !(response.status === 206 && rangeStart(response) === head.length)) {
    // Not the continuation of what is kept: a 200 is the whole file; a 206 whose start cannot
    // be read (a cross-origin host that does not expose Content-Range) or is elsewhere cannot
    // be placed, so the file is fetched whole, once. The kept bytes are dropped either way.
    head = null;
    await partial.delete(url);
    if (response.status === 206) {
      response.body?.cancel().catch(() => {});
      response = await get(url, 0);
    }
  }
  if (!head && response.status === 206 && rangeStart(response) !== 0) {
    response.body?.cancel().catch(() => {});
    throw failure('network', `Fetching ${url} returned part of the file (HTTP 206) where the whole file was asked for.`);
  }
  const body = new Uint8Array(size);
  let offset = 0;
  if (head) {
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
    if (offset > 0) await partial.put(url, new Response(body.slice(0, offset))).catch(() => {});
    throw failure('network', `The download of ${url} was interrupted after ${offset} of ${size} bytes (${error.message}). Load again to resume.`);
  }
  await partial.delete(url);
  return body;
}
