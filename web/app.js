// The page: checks WebGPU, runs the engine in a worker, takes the model and the case, streams the
// answer, and for shared links writes the result into <pre id="qoqmed-result"> and sets
// <html data-qoqmed-state> to done or error. Patient inputs live in memory only.

import { PRESETS } from './presets.js';
import { clearAnswer, showAnswer } from './render.js';

const $ = (id) => document.getElementById(id);
const html = document.documentElement;

// ---------------------------------------------------------------- link parameters
const PARAMS = {
  model: 'url', image: 'urls', ecg: 'urls', prompt: 'text', instruction: ['qoq', 'none'],
  pixel_range: ['qoq', 'model'], temperature: 'float', repetition_penalty: 'float',
  max_new_tokens: 'int', frames: 'int', window: 'window', ecg_rate: 'float', autorun: ['0', '1'],
  reveal: ['manual', 'auto'],
};

/** The link's parameters, checked. Anything it cannot honour is an error, not ignored. */
export function parseLink(search) {
  const q = new URLSearchParams(search);
  const out = { image: [], ecg: [] };
  for (const key of new Set(q.keys())) {
    const kind = PARAMS[key];
    const all = q.getAll(key);
    if (!kind) {
      throw new Error(`the link has a parameter "${key}" this app does not know; ` +
        `known: ${Object.keys(PARAMS).join(', ')}`);
    }
    if (kind !== 'urls' && all.length > 1) throw new Error(`the link gives "${key}" ${all.length} times`);
    const v = all[0];
    if (Array.isArray(kind)) {
      if (!kind.includes(v)) throw new Error(`${key}=${v}: use ${kind.join(' or ')}`);
      out[key] = v;
    } else if (kind === 'float') {
      const x = Number(v);
      if (v === '' || !Number.isFinite(x) || x < 0) throw new Error(`${key}=${v}: expected a number >= 0`);
      out[key] = x;
    } else if (kind === 'int') {
      const x = Number(v);
      if (!Number.isInteger(x) || x < 1) throw new Error(`${key}=${v}: expected a whole number >= 1`);
      out[key] = x;
    } else if (kind === 'window') {
      const [c, w, extra] = v.split(',').map((x) => (x.trim() === '' ? NaN : Number(x)));
      if (extra !== undefined || !Number.isFinite(c) || !Number.isFinite(w) || w <= 0) {
        throw new Error(`window=${v}: expected CENTER,WIDTH (numbers, width > 0), e.g. window=40,400`);
      }
      out[key] = [c, w];
    } else if (kind === 'urls') {
      out[key] = all.map((u) => new URL(u, location.href).href);
    } else if (kind === 'url') {
      out[key] = new URL(v.endsWith('/') ? v : `${v}/`, location.href).href;
    } else {
      out[key] = v;
    }
  }
  if (out.frames != null && out.frames > 4) throw new Error(`frames=${out.frames}: at most 4 images per prompt`);
  if (out.repetition_penalty === 0) throw new Error('repetition_penalty=0: use 1 for off');
  if (out.ecg_rate === 0) throw new Error('ecg_rate=0: give the CSV sampling rate in Hz');
  return out;
}

/** Hosts the page may fetch from: its own origin plus the CSP's connect-src (fixed at deploy). */
function allowedOrigins() {
  const meta = document.querySelector('meta[http-equiv="Content-Security-Policy"]')?.content ?? '';
  const connect = meta.split(';').map((d) => d.trim()).find((d) => d.startsWith('connect-src')) ?? '';
  const hosts = connect.split(/\s+/).slice(1).filter((h) => !h.startsWith("'"));
  return [location.origin, ...hosts.map((h) => {
    try { return new URL(h).origin; } catch { return null; }
  }).filter(Boolean)];
}

function checkAllowed(url, what) {
  const origin = new URL(url).origin;
  if (!allowedOrigins().includes(origin)) {
    throw new Error(`The ${what} is on ${origin}, which this deployment does not allow: the page ` +
      `only fetches from ${allowedOrigins().join(', ')} (the site owner adds hosts with ` +
      '`web/build.sh --allow-host`). Nothing was requested.');
  }
}

// ---------------------------------------------------------------- the worker
let worker = null;
let nextId = 1;
const pending = new Map();
let lastModel = null; // {kind: 'url'|'files', value} to reload after a crash
let modelInfo = null;
let gpuLimits = null;
// In memory only, never stored. images: [{name, file, previews: [{name, url, width, height}],
// slice}]; ecgs: records [{stem, files: [File], plot: url|null, note}], a WFDB .hea + .dat as one.
const inputs = { images: [], ecgs: [] };

function startWorker() {
  // A blob: worker inherits the page's CSP (a worker from a URL gets only its own response's
  // headers, which a static host does not send), and imports the real module from our origin.
  const src = `import ${JSON.stringify(new URL('worker.js', location.href).href)};`;
  const url = URL.createObjectURL(new Blob([src], { type: 'text/javascript' }));
  worker = new Worker(url, { type: 'module', name: 'qoqmed' });
  URL.revokeObjectURL(url);
  worker.onmessage = (e) => onWorkerMessage(e.data);
  worker.onerror = (e) => crashed(`the engine stopped unexpectedly (${e.message || 'worker error'})`);
  return call('open');
}

function call(type, payload = {}, transfer = []) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    worker.postMessage({ id, type, ...payload }, transfer);
  });
}

const PHASES = {
  download: 'Downloading', verify: 'Verifying', upload: 'Uploading weights to the GPU',
  compile: 'Compiling GPU kernels', prefill: 'Reading the case (prefill)', decode: 'Answering',
};
let streamHandler = null;

function onWorkerMessage(m) {
  if (m.type === 'progress') {
    const p = $('progress');
    p.hidden = false;
    p.max = m.total || 1;
    p.value = m.done;
    const mb = (n) => (n / 1e6).toFixed(1);
    $('phase').textContent = m.total > 1
      ? `${PHASES[m.phase] ?? m.phase}: ${mb(m.done)} / ${mb(m.total)} MB`
      : `${PHASES[m.phase] ?? m.phase}…`;
    return;
  }
  if (m.type === 'token') return streamHandler?.(m);
  if (m.type === 'log') return console.info('qoqmed:', m.message);
  const p = pending.get(m.id);
  if (!p) return;
  pending.delete(m.id);
  if (m.type === 'result') p.resolve(m.value);
  else p.reject(new Error(m.fatal ? `the engine crashed (${m.message})` : m.message));
  if (m.fatal) crashed(`The engine crashed (${m.message})`);
}

/** A lost device or a crashed worker: say so, start a fresh worker, and reload the model. */
async function crashed(why) {
  for (const p of pending.values()) p.reject(new Error(why));
  pending.clear();
  worker?.terminate();
  worker = null;
  modelInfo = null;
  setBusy(false);
  $('run').disabled = true;
  showMessage(`${why}. The engine was restarted; reloading the model…`);
  try {
    await startWorker();
    if (lastModel) await loadModel(lastModel);
  } catch (e) {
    showMessage(`${why}. Restarting failed too: ${e.message}`);
  }
}

const lostDevice = (msg) => /device (was )?lost|out of memory/i.test(msg);

// ---------------------------------------------------------------- UI helpers
function showMessage(text, info = false) {
  const m = $('message');
  m.textContent = text;
  m.classList.toggle('info', info);
  m.hidden = !text;
}

function setBusy(busy) {
  $('run').disabled = busy || !modelInfo;
  $('stop').disabled = !busy;
  $('download').disabled = busy;
}

function setState(state, result) {
  if (result !== undefined) $('qoqmed-result').textContent = JSON.stringify(result);
  html.dataset.qoqmedState = state;
}

async function checkGpu() {
  if (!navigator.gpu) {
    throw new Error('This browser has no WebGPU. Use a recent Chrome or Edge (113 or later) on ' +
      'Windows, macOS or ChromeOS, Chrome 121+ on Android, or Safari 26; in Firefox, WebGPU is on ' +
      'in version 141+ on Windows.');
  }
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) {
    throw new Error('WebGPU is present but offered no GPU (hardware acceleration off, or a ' +
      'blocklisted driver). Turn on hardware acceleration in the browser settings or update the GPU driver.');
  }
  const l = adapter.limits;
  gpuLimits = { maxBufferSize: l.maxBufferSize, maxStorageBufferBindingSize: l.maxStorageBufferBindingSize };
  return adapter;
}

// ---------------------------------------------------------------- model
async function loadModel(src) {
  setBusy(true);
  showMessage('');
  $('model-status').textContent = 'Loading…';
  $('cancel-download').hidden = src.kind !== 'url';
  try {
    const t0 = performance.now();
    const info = src.kind === 'url'
      ? await call('download', { url: src.value, limits: gpuLimits })
      : await call('load', { files: src.value, limits: gpuLimits });
    info.page_load_s = (performance.now() - t0) / 1000;
    modelInfo = info;
    lastModel = src;
    const where = src.kind === 'url' ? src.value : `${src.value.length} local files`;
    $('model-status').textContent = `Loaded ${where}: ${info.layers} layers, hidden ${info.hidden}, ` +
      `vocab ${info.vocab}, ${(info.weight_bytes / 1e6).toFixed(1)} MB of weights in ` +
      `${info.page_load_s.toFixed(2)} s (weights ${info.load_s.toFixed(2)} s, GPU kernels ` +
      `${info.compile_s.toFixed(2)} s)${info.cached ? ' from this browser\'s storage' : ''}.`;
    $('phase').textContent = '';
    $('progress').hidden = true;
    return info;
  } catch (e) {
    modelInfo = null;
    $('model-status').textContent = 'No model loaded.';
    throw e;
  } finally {
    $('cancel-download').hidden = true;
    setBusy(false);
    refreshCache();
  }
}

async function refreshCache() {
  if (!worker) return;
  try {
    const list = await call('list-cache');
    $('cache-list').replaceChildren(...list.map((m) => {
      const li = document.createElement('li');
      li.textContent = `${m.url} — ${(m.bytes / 1e6).toFixed(1)} MB${m.complete ? '' : ' (partial: resumes on next download)'}`;
      const del = document.createElement('button');
      del.type = 'button';
      del.textContent = 'Delete';
      del.onclick = async () => { await call('delete-cache', { key: m.key }); refreshCache(); };
      li.append(del);
      return li;
    }));
    if (!list.length) $('cache-list').replaceChildren(Object.assign(document.createElement('li'), { textContent: 'none' }));
  } catch (e) {
    console.warn('cache list:', e);
  }
}

// ---------------------------------------------------------------- inputs
const isEcgName = (n) => /\.(hea|dat|csv|xml)$/i.test(n);
const stemOf = (n) => (/\.(hea|dat)$/i.test(n) ? n.replace(/\.(hea|dat)$/i, '') : n);

/** The image options of the form: sampled slices and the VOI window (both or neither). */
function imageOptions() {
  const frames = Number($('frames').value) || 2;
  const c = $('window-center').value.trim();
  const w = $('window-width').value.trim();
  if ((c === '') !== (w === '')) throw new Error('the window needs both its center and its width');
  const win = c === '' ? null : [Number(c), Number(w)];
  if (win && !(Number.isFinite(win[0]) && win[1] > 0)) throw new Error('the window width must be > 0');
  return { frames, window: win };
}

/** Decodes an image with the engine's readers as the model will see it (slices, window). */
async function decodeImage(file) {
  const { frames, window } = imageOptions();
  const decoded = await call('read-image', { file, frames, window });
  return decoded.map((d) => ({
    name: d.label, width: d.width, height: d.height,
    url: URL.createObjectURL(new Blob([d.png], { type: 'image/png' })),
  }));
}

/** Adds picked or dropped files. Images are decoded by the engine's readers first (as the model
 *  will see them): a damaged file is refused with the reader's message, the rest stay usable.
 *  ECG files are grouped into records and shown as the 12-lead plot. */
async function addInputs(files, kind) {
  for (const f of files) {
    const isEcg = kind === 'ecg' || (kind !== 'image' && isEcgName(f.name));
    if (isEcg) {
      const stem = stemOf(f.name);
      let rec = inputs.ecgs.find((r) => r.stem === stem && /\.(hea|dat)$/i.test(f.name));
      if (!rec) inputs.ecgs.push(rec = { stem, files: [], plot: null, note: '' });
      rec.files = [...rec.files.filter((x) => x.name !== f.name), f];
      continue;
    }
    try {
      inputs.images.push({ name: f.name, file: f, previews: await decodeImage(f), slice: 0 });
    } catch (e) {
      showMessage(`${f.name} cannot be used: ${e.message}`);
    }
  }
  await plotEcgs();
  renderInputs();
}

/** Re-decodes the images after the slices or window changed (the previews show what the model gets). */
async function redecodeImages() {
  try {
    for (const x of inputs.images) {
      const previews = await decodeImage(x.file);
      for (const p of x.previews) URL.revokeObjectURL(p.url);
      x.previews = previews;
      x.slice = Math.min(x.slice, previews.length - 1);
    }
    showMessage('');
  } catch (e) {
    showMessage(e.message);
  }
  renderInputs();
}

/** The 12-lead plot of every complete record (the engine's reader and plot, as `qoqmed ecg-plot`). */
async function plotEcgs(force = false) {
  const rate = Number($('ecg-rate').value) || null;
  for (const rec of inputs.ecgs) {
    if (rec.plot && !force) continue;
    if (rec.plot) URL.revokeObjectURL(rec.plot);
    rec.plot = null;
    const wfdb = rec.files.some((f) => /\.(hea|dat)$/i.test(f.name));
    if (wfdb && rec.files.length < 2) {
      rec.note = 'a WFDB record needs its .hea and its .dat: add the other file';
      continue;
    }
    try {
      const png = await call('plot-ecg', { files: rec.files, rate });
      rec.plot = URL.createObjectURL(new Blob([png], { type: 'image/png' }));
      rec.note = '';
    } catch (e) {
      rec.note = e.message;
    }
  }
}

function renderInputs() {
  const items = [];
  for (const x of inputs.images) {
    const el = document.createElement('span');
    el.className = 'input-item';
    el.dataset.kind = 'image';
    const img = document.createElement('img');
    const show = () => {
      const p = x.previews[x.slice];
      img.src = p.url;
      img.alt = p.name;
      img.title = `${p.name} (${p.width}×${p.height})`;
    };
    img.className = 'thumb';
    show();
    el.append(img, `image: ${x.name}`);
    if (x.previews.length > 1) {
      // The slices the model will see (Settings: slices per volume); browse them here.
      const slider = Object.assign(document.createElement('input'), {
        type: 'range', min: 0, max: x.previews.length - 1, step: 1, value: x.slice, className: 'slices',
        title: 'slice',
      });
      slider.setAttribute('aria-label', `slice of ${x.name}`);
      slider.oninput = () => { x.slice = Number(slider.value); show(); };
      el.append(slider);
    }
    el.append(removeButton(x));
    items.push(el);
  }
  for (const rec of inputs.ecgs) {
    const el = document.createElement('span');
    el.className = 'input-item';
    el.dataset.kind = 'ecg';
    el.append(`ECG: ${rec.files.map((f) => f.name).join(' + ')}`, removeButton(rec));
    if (rec.plot) {
      const img = Object.assign(document.createElement('img'), {
        src: rec.plot, className: 'ecg-plot', alt: `12-lead ECG of ${rec.stem}`,
      });
      el.append(img);
    }
    if (rec.note) el.append(Object.assign(document.createElement('span'), { className: 'hint', textContent: ` ${rec.note}` }));
    items.push(el);
  }
  $('inputs-list').replaceChildren(...items);
}

function removeButton(x) {
  const rm = document.createElement('button');
  rm.type = 'button';
  rm.textContent = '×';
  rm.title = `remove ${x.name ?? x.stem}`;
  rm.onclick = () => {
    for (const p of x.previews ?? []) URL.revokeObjectURL(p.url);
    if (x.plot) URL.revokeObjectURL(x.plot);
    inputs.images = inputs.images.filter((y) => y !== x);
    inputs.ecgs = inputs.ecgs.filter((y) => y !== x);
    renderInputs();
  };
  return rm;
}

async function fetchInput(url, what) {
  checkAllowed(url, what);
  const r = await fetch(url, { cache: 'no-store', credentials: 'omit' });
  if (!r.ok) throw new Error(`the ${what} ${url} answered ${r.status}`);
  const name = decodeURIComponent(new URL(url).pathname.split('/').pop() || what);
  return new File([await r.blob()], name);
}

// ---------------------------------------------------------------- run
function currentRequest() {
  const num = (id) => Number($(id).value);
  return {
    prompt: $('prompt').value,
    instruction: $('instruction').value,
    temperature: num('temperature'),
    repetition_penalty: num('repetition-penalty'),
    max_new_tokens: num('max-new-tokens'),
    pixel_range: $('pixel-range').value,
    frames: imageOptions().frames,
    window: imageOptions().window,
    ecg_rate_hz: Number($('ecg-rate').value) || null,
  };
}

/** The ECG records as the engine takes them: one array of files each. */
function ecgRecords() {
  return inputs.ecgs.map((r) => r.files);
}

async function run() {
  if (!modelInfo) throw new Error('load a model first');
  clearAnswer($('reveal-manual').checked);
  showMessage('');
  setBusy(true);
  setState('running');
  const request = currentRequest();
  const t0 = performance.now();
  let first = null;
  let n = 0;
  streamHandler = (m) => {
    if (m.token === null) {
      $('stream').textContent += m.piece;
      return;
    }
    if (first === null) first = performance.now();
    n += 1;
    $('stream').textContent += m.piece;
    const dt = (performance.now() - first) / 1000;
    $('stats').textContent = `first token after ${((first - t0) / 1000).toFixed(2)} s · ${n} tokens` +
      (n > 1 && dt > 0 ? ` · ${((n - 1) / dt).toFixed(1)} tokens/s` : '');
  };
  try {
    const answer = await call('generate', {
      request, images: inputs.images.map((x) => x.file), ecgs: ecgRecords(),
    });
    const result = {
      ...answer,
      manifest_sha256: modelInfo.manifest_sha256 ?? null,
      engine_version: modelInfo.version ?? engineVersion,
    };
    showAnswer(answer, inputs.images.flatMap((x) => x.previews), { manual: $('reveal-manual').checked });
    $('stats').textContent += ` · stopped: ${answer.stop_reason}`;
    setState('done', result);
    return result;
  } finally {
    streamHandler = null;
    $('phase').textContent = '';
    $('progress').hidden = true;
    setBusy(false);
  }
}

async function guarded(fn) {
  try {
    return await fn();
  } catch (e) {
    const msg = e?.message ?? String(e);
    showMessage(msg);
    setState('error', { error: msg });
    if (lostDevice(msg)) crashed('The GPU device was lost (usually: out of GPU memory)');
    return undefined;
  }
}

// ---------------------------------------------------------------- wiring
let engineVersion = null;

function fillPresets() {
  $('preset').replaceChildren(...PRESETS.map((p) => new Option(p.name, p.id)));
  const pick = () => {
    const p = PRESETS.find((x) => x.id === $('preset').value);
    $('example').replaceChildren(...p.examples.map((q, i) => new Option(q.split('\n')[0].slice(0, 70), i)));
    $('prompt').value = p.examples[0];
  };
  $('preset').onchange = pick;
  $('example').onchange = () => {
    const p = PRESETS.find((x) => x.id === $('preset').value);
    $('prompt').value = p.examples[Number($('example').value)];
  };
  pick();
}

function wire() {
  $('download').onclick = () => guarded(async () => {
    const raw = $('model-url').value.trim() || 'model/';
    const url = new URL(raw.endsWith('/') ? raw : `${raw}/`, location.href).href;
    checkAllowed(url, 'model');
    await loadModel({ kind: 'url', value: url });
  });
  $('cancel-download').onclick = () => worker?.postMessage({ type: 'cancel-download' });
  for (const id of ['pick-folder', 'pick-files']) {
    $(id).onchange = (e) => guarded(async () => {
      const files = [...e.target.files];
      if (!files.length) return;
      await loadModel({ kind: 'files', value: files });
    });
  }
  $('pick-image').onchange = (e) => addInputs([...e.target.files], 'image');
  $('pick-ecg').onchange = (e) => addInputs([...e.target.files], 'ecg');
  for (const id of ['frames', 'window-center', 'window-width']) $(id).onchange = redecodeImages;
  $('ecg-rate').onchange = async () => { await plotEcgs(true); renderInputs(); };
  const drop = $('drop');
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add('over'); };
  drop.ondragleave = () => drop.classList.remove('over');
  drop.ondrop = (e) => { e.preventDefault(); drop.classList.remove('over'); addInputs([...e.dataTransfer.files]); };
  $('run').onclick = () => guarded(run);
  $('stop').onclick = () => worker?.postMessage({ type: 'stop' });
}

/** A shared link: set the case up from the parameters and, with autorun=1, run it. */
async function fromLink(link) {
  if (link.prompt != null) $('prompt').value = link.prompt;
  if (link.instruction) $('instruction').value = link.instruction;
  if (link.temperature != null) $('temperature').value = link.temperature;
  if (link.repetition_penalty != null) $('repetition-penalty').value = link.repetition_penalty;
  if (link.max_new_tokens != null) $('max-new-tokens').value = link.max_new_tokens;
  if (link.reveal === 'manual') $('reveal-manual').checked = true;
  if (link.pixel_range) $('pixel-range').value = link.pixel_range;
  if (link.frames) $('frames').value = link.frames;
  if (link.window) [$('window-center').value, $('window-width').value] = link.window;
  if (link.ecg_rate) $('ecg-rate').value = link.ecg_rate;
  if (link.model) {
    checkAllowed(link.model, 'model');
    $('model-url').value = link.model;
  }
  for (const u of link.image) await addInputs([await fetchInput(u, 'image')], 'image');
  const ecgFiles = [];
  for (const u of link.ecg) ecgFiles.push(await fetchInput(u, 'ECG'));
  await addInputs(ecgFiles, 'ecg');
  if (link.autorun === '1') {
    if (!link.model) throw new Error('autorun=1 needs model=URL (the model folder to run)');
    setState('loading');
    await loadModel({ kind: 'url', value: link.model });
    await run();
  }
}

async function main() {
  fillPresets();
  wire();
  let link;
  try {
    link = parseLink(location.search);
  } catch (e) {
    showMessage(`This link cannot be run: ${e.message}`);
    setState('error', { error: e.message });
    return;
  }
  try {
    await checkGpu();
    const info = await startWorker();
    engineVersion = info.version;
    $('version').textContent = info.version;
    $('gpu-status').textContent = `GPU: ${info.adapter} · largest buffer ${(info.max_storage_buffer_binding_size / 2 ** 20).toFixed(0)} MiB`;
    $('run').disabled = true;
    refreshCache();
  } catch (e) {
    $('gpu-status').textContent = 'No usable GPU.';
    showMessage(e.message);
    setState('error', { error: e.message });
    return;
  }
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register('sw.js').catch((e) => console.warn('offline cache unavailable:', e));
  }
  await guarded(() => fromLink(link));
}

main();
