// The inference worker: the wasm engine (crate/web) on WebGPU, the model cache and downloads.
// Messages in: {id, type, ...}; out: {id, type: 'result'|'error', ...} for requests, and
// {type: 'progress'|'token'|'log'} as work goes on. The page restarts this worker after a
// lost device or a crash, so nothing here has to survive one.

import init, {
  Engine, Sha256, engineVersion, plotEcg, readImage,
} from './pkg/qoqmed_web.js';
import * as cache from './download.js';

let engine = null;
let downloadAbort = null;

const post = (msg) => self.postMessage(msg);
const progress = (phase, done, total) => post({ type: 'progress', phase, done, total });
const log = (message) => post({ type: 'log', message });

async function open() {
  await init({ module_or_path: new URL('./pkg/qoqmed_web_bg.wasm', import.meta.url) });
  if (!navigator.gpu) throw new Error('this browser has no WebGPU in workers');
  engine = await Engine.open();
  return { version: engineVersion(), ...JSON.parse(engine.adapter()) };
}

/** Whether this GPU can hold the model, from its safetensors headers, against the page's
 *  adapter limits and our device's: every tensor is split at row boundaries to fit a binding,
 *  so the test is the largest row (or 1-D tensor). */
async function checkFits(headers, limits) {
  const own = JSON.parse(engine.adapter());
  const binding = Math.min(limits?.maxStorageBufferBindingSize ?? Infinity, own.max_storage_buffer_binding_size);
  const buffer = Math.min(limits?.maxBufferSize ?? Infinity, own.max_buffer_size);
  const cap = Math.min(binding, buffer);
  let worst = { name: '', piece: 0 };
  let total = 0;
  for (const t of headers) {
    total += t.bytes;
    if (t.piece > worst.piece) worst = t;
  }
  if (worst.piece > cap) {
    const size = (n) => (n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${n} bytes`);
    throw new Error(`This GPU cannot hold this model: tensor ${worst.name} needs ${size(worst.piece)} ` +
      `in one GPU buffer even when split by rows, and this browser's GPU allows ${size(cap)} ` +
      `(maxStorageBufferBindingSize ${size(binding)}, maxBufferSize ${size(buffer)}). Use a browser ` +
      'with full WebGPU limits (Chrome or Edge on a recent GPU), or another device.');
  }
  return { weight_bytes: total, largest: worst };
}

async function headersOf(files) {
  const out = [];
  for (const f of files.filter((f) => f.name.endsWith('.safetensors'))) {
    const read = async (o, n) => new Uint8Array(await f.slice(o, o + n).arrayBuffer());
    out.push(...await cache.safetensorsTensors(f.name, read, f.size));
  }
  return out;
}

async function remoteHeaders(base, files, signal) {
  const out = [];
  for (const f of files.filter((f) => f.path.endsWith('.safetensors'))) {
    const url = new URL(f.path, base);
    const read = async (o, n) => {
      const r = await fetch(url, { headers: { Range: `bytes=${o}-${o + n - 1}` }, signal, cache: 'no-store' });
      if (!r.ok) throw new Error(`${url} answered ${r.status}`);
      const b = new Uint8Array(await r.arrayBuffer());
      // A server without range support sends the whole file: take the slice we asked for.
      return r.status === 200 ? b.subarray(o, o + n) : b;
    };
    out.push(...await cache.safetensorsTensors(f.path, read, f.size));
  }
  return out;
}

async function load(files, limits) {
  await checkFits(await headersOf(files), limits);
  return JSON.parse(await engine.load(files, progress));
}

async function downloadAndLoad({ url, limits }) {
  const cached = await cache.cachedFiles(url);
  if (cached) {
    log('using the copy stored in this browser');
    const summary = await load(cached.files, limits);
    return { ...summary, manifest_sha256: cached.manifestSha256, cached: true };
  }
  downloadAbort = new AbortController();
  const signal = downloadAbort.signal;
  try {
    const plan = await cache.plan(url, signal);
    const fits = await checkFits(await remoteHeaders(url, plan.files, signal), limits);
    const need = plan.files.reduce((s, f) => s + (f.size ?? 0), 0);
    const est = await navigator.storage.estimate();
    const have = (est.quota ?? Infinity) - (est.usage ?? 0);
    if (need > have) {
      const gb = (n) => `${(n / 1e9).toFixed(2)} GB`;
      throw new Error(`This model needs ${gb(need)} of storage and this browser allows ${gb(have)} more ` +
        'for this site. Free space (delete downloaded models below), or open the model folder from ' +
        'disk instead (nothing is copied then).');
    }
    log(`downloading ${plan.files.length} files, ${(need / 1e6).toFixed(1)} MB (weights ${(fits.weight_bytes / 1e6).toFixed(1)} MB)`);
    const got = await cache.download(url, plan, {
      signal, hasher: () => new Sha256(), onProgress: progress, log,
    });
    downloadAbort = null;
    const summary = await load(got.files, limits);
    return { ...summary, manifest_sha256: got.manifestSha256, cached: false };
  } catch (e) {
    if (signal.aborted) throw new Error('download cancelled; what was fetched is kept and resumes next time');
    throw e;
  } finally {
    downloadAbort = null;
  }
}

async function generate({ request, images, ecgs }) {
  const onEvent = (kind, a, b) => {
    if (kind === 'token') post({ type: 'token', token: a, piece: b });
    else if (kind === 'text') post({ type: 'token', token: null, piece: a });
    else if (kind === 'phase') post({ type: 'progress', phase: a, done: 0, total: 0 });
  };
  return JSON.parse(await engine.generate(JSON.stringify(request), images, ecgs, onEvent));
}

const handlers = {
  open,
  load: ({ files, limits }) => load(files, limits),
  download: downloadAndLoad,
  generate,
  'read-image': ({ file, frames, window }) => readImage(file, frames, window?.[0], window?.[1]),
  'plot-ecg': ({ files, rate }) => plotEcg(files, rate ?? undefined, 4),
  'list-cache': () => cache.listCache(),
  'delete-cache': ({ key }) => cache.deleteCache(key),
};

self.onmessage = async (e) => {
  const msg = e.data;
  if (msg.type === 'stop') return engine?.stop();
  if (msg.type === 'cancel-download') return downloadAbort?.abort(new Error('cancelled'));
  const handler = handlers[msg.type];
  try {
    if (!handler) throw new Error(`unknown message ${msg.type}`);
    if (!engine && msg.type !== 'open' && !msg.type.endsWith('-cache')) throw new Error('the engine is not open');
    post({ id: msg.id, type: 'result', value: await handler(msg) });
  } catch (err) {
    // A trap (a Rust panic, wasm out of memory) leaves the module unusable: the page restarts us.
    const fatal = err instanceof WebAssembly.RuntimeError;
    post({ id: msg.id, type: 'error', message: err?.message ?? String(err), fatal });
  }
};
