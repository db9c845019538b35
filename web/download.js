// The model cache: a model folder fetched by URL into the origin-private file system (OPFS),
// resumable, verified, and never marked complete while any file is partial or unverified.
//
// Layout: OPFS/qoqmed-models/<key>/{meta.json, manifest.json?, config.json, ..., *.safetensors}.
// meta.json = {url, complete, files: [{path, size, sha256}], verified: {path: true}, manifest_sha256}
// is rewritten (atomically, by createWritable) after every state change, so a reload finds
// either a complete folder or a partial one it can resume. Runs in the worker: it needs
// createSyncAccessHandle, which writes in place (a killed tab keeps what was written).

const ROOT = 'qoqmed-models';
const PIECE = 8 << 20; // bytes per hash read
const RETRIES = 6; // network attempts per file before giving up
const OPTIONAL = ['generation_config.json', 'tokenizer_config.json', 'chat_template.json',
  'chat_template.jinja', 'preprocessor_config.json'];

export async function modelsDir() {
  const root = await navigator.storage.getDirectory();
  return root.getDirectoryHandle(ROOT, { create: true });
}

/** A folder name for a model URL: readable, and distinct for distinct URLs. */
export function cacheKey(url) {
  const clean = url.replace(/^[a-z]+:\/\//i, '').replace(/[^A-Za-z0-9._-]+/g, '_');
  return clean.length > 180 ? clean.slice(0, 90) + '~' + clean.slice(-89) : clean;
}

async function readJsonFile(dir, name) {
  try {
    const f = await (await dir.getFileHandle(name)).getFile();
    return JSON.parse(await f.text());
  } catch {
    return null;
  }
}

async function writeFile(dir, name, data) {
  const w = await (await dir.getFileHandle(name, { create: true })).createWritable();
  await w.write(data);
  await w.close();
}

const writeMeta = (dir, meta) => writeFile(dir, 'meta.json', JSON.stringify(meta));

/** Every cached model: {key, url, complete, bytes}. */
export async function listCache() {
  const out = [];
  const root = await modelsDir();
  for await (const [key, handle] of root.entries()) {
    if (handle.kind !== 'directory') continue;
    const meta = await readJsonFile(handle, 'meta.json');
    let bytes = 0;
    for await (const [, f] of handle.entries()) {
      if (f.kind === 'file') bytes += (await f.getFile()).size;
    }
    out.push({ key, url: meta?.url ?? '(unknown)', complete: !!meta?.complete, bytes });
  }
  return out.sort((a, b) => a.key.localeCompare(b.key));
}

export async function deleteCache(key) {
  const root = await modelsDir();
  await root.removeEntry(key, { recursive: true });
}

/** The files of a complete cached model, as File objects, or null. */
export async function cachedFiles(url) {
  const root = await modelsDir();
  let dir;
  try {
    dir = await root.getDirectoryHandle(cacheKey(url));
  } catch {
    return null;
  }
  const meta = await readJsonFile(dir, 'meta.json');
  if (!meta?.complete) return null;
  const files = [];
  for (const f of meta.files) files.push(await (await dir.getFileHandle(f.path)).getFile());
  return { files, manifestSha256: meta.manifest_sha256 ?? null };
}

/** A manifest's file list, whatever spelling it uses: {files: [{path|name, size|bytes, sha256}]}
 *  or {files: {name: {size, sha256}}}. */
export function manifestFiles(manifest) {
  const raw = manifest.files ?? manifest;
  const list = Array.isArray(raw)
    ? raw
    : Object.entries(raw).map(([path, v]) => ({ path, ...(typeof v === 'object' ? v : { size: v }) }));
  return list.map((f) => {
    const path = f.path ?? f.name ?? f.file;
    const size = f.size ?? f.bytes ?? f.len ?? null;
    if (typeof path !== 'string' || !/^[^/\\]+$/.test(path) || path.startsWith('.')) {
      throw new Error(`manifest.json names a file "${path}" that is not a plain file name in the folder`);
    }
    if (path === 'meta.json') throw new Error('manifest.json lists meta.json, a name qoqmed reserves');
    return { path, size: size == null ? null : Number(size), sha256: f.sha256 ?? null };
  });
}

async function sha256Hex(bytes) {
  const d = await crypto.subtle.digest('SHA-256', bytes);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

function httpError(url, r) {
  return new Error(`${url} answered ${r.status} ${r.statusText}`.trim());
}

/** What to fetch: from manifest.json when the folder has one, else by the HF folder layout. */
export async function plan(base, signal) {
  const get = (name, init = {}) => fetch(new URL(name, base), { signal, cache: 'no-store', ...init });
  const m = await get('manifest.json');
  if (m.ok) {
    const bytes = new Uint8Array(await m.arrayBuffer());
    let manifest;
    try {
      manifest = JSON.parse(new TextDecoder().decode(bytes));
    } catch (e) {
      throw new Error(`manifest.json at ${base} is not JSON (${e.message})`);
    }
    return { files: manifestFiles(manifest), manifest: bytes, manifestSha256: await sha256Hex(bytes) };
  }
  if (m.status !== 404) throw httpError(new URL('manifest.json', base), m);
  // A plain Hugging Face folder: probe the names ModelFiles reads.
  const files = [];
  const size = async (name, required) => {
    const r = await get(name, { method: 'HEAD' });
    if (r.ok) {
      const n = r.headers.get('Content-Length');
      files.push({ path: name, size: n == null ? null : Number(n), sha256: null });
      return true;
    }
    if (r.status === 404 && !required) return false;
    if (r.status === 404) {
      throw new Error(`the model folder at ${base} has no ${name}; a model folder must contain ` +
        'config.json, tokenizer.json and model.safetensors (or model.safetensors.index.json and its shards)');
    }
    throw httpError(new URL(name, base), r);
  };
  await size('config.json', true);
  await size('tokenizer.json', true);
  const index = await get('model.safetensors.index.json');
  if (index.ok) {
    const json = await index.json();
    files.push({ path: 'model.safetensors.index.json', size: null, sha256: null });
    const shards = [...new Set(Object.values(json.weight_map ?? {}))].sort();
    if (!shards.length) throw new Error('model.safetensors.index.json lists no shard');
    for (const s of shards) await size(s, true);
  } else if (index.status === 404) {
    await size('model.safetensors', true);
  } else {
    throw httpError(new URL('model.safetensors.index.json', base), index);
  }
  for (const name of OPTIONAL) await size(name, false);
  return { files, manifest: null, manifestSha256: null };
}

/** Reads a safetensors header through `read(offset, len) -> Uint8Array`; returns its tensors'
 *  byte sizes and the bytes of their smallest GPU piece: the engine splits a matrix at row
 *  boundaries below the binding limit (docs/weights.md), so one row must fit; a 1-D tensor is
 *  one piece. Used before a download to check what the GPU must hold. */
export async function safetensorsTensors(name, read, fileLen) {
  const prefix = await read(0, 8);
  if (prefix.length < 8) throw new Error(`${name}: shorter than 8 bytes; not a safetensors file`);
  const n = Number(new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true));
  if (n > 100_000_000 || (fileLen != null && n > fileLen - 8)) {
    throw new Error(`${name}: its safetensors header claims ${n} bytes but the file has ${fileLen}; ` +
      'the file is truncated or not a safetensors file');
  }
  let header;
  try {
    header = JSON.parse(new TextDecoder().decode(await read(8, n)));
  } catch (e) {
    throw new Error(`${name}: the safetensors header is not JSON (${e.message}); the file is damaged`);
  }
  return Object.entries(header)
    .filter(([k]) => k !== '__metadata__')
    .map(([k, v]) => {
      const bytes = v.data_offsets[1] - v.data_offsets[0];
      const rows = v.shape?.length >= 2 ? v.shape[0] : 1;
      return { name: k, bytes, piece: rows > 0 ? bytes / rows : bytes };
    });
}

/** Downloads the model at `base` into OPFS (resuming what is there) and returns its files.
 *  ctx: {signal, hasher(): {update(bytes), hex()}, onProgress(phase, done, total), log(msg)} */
export async function download(base, plan_, ctx) {
  const root = await modelsDir();
  const key = cacheKey(base);
  const dir = await root.getDirectoryHandle(key, { create: true });
  const old = await readJsonFile(dir, 'meta.json');
  const same = old && JSON.stringify(old.files) === JSON.stringify(plan_.files);
  const meta = {
    url: base, complete: false, files: plan_.files,
    verified: same ? (old.verified ?? {}) : {}, manifest_sha256: plan_.manifestSha256,
  };
  if (!same && old) {
    // Another version of the folder: start clean rather than resume into a different file.
    for (const f of old.files ?? []) await dir.removeEntry(f.path).catch(() => {});
  }
  await writeMeta(dir, meta);
  if (plan_.manifest) await writeFile(dir, 'manifest.json', plan_.manifest);

  const total = plan_.files.reduce((s, f) => s + (f.size ?? 0), 0);
  let done = 0;
  for (const f of plan_.files) {
    if (meta.verified[f.path]) done += f.size ?? 0;
  }
  const progress = (n) => {
    done += n;
    ctx.onProgress('download', done, total);
  };
  ctx.onProgress('download', done, total);
  for (const f of plan_.files) {
    if (meta.verified[f.path]) continue;
    const before = done;
    await fetchOne(dir, new URL(f.path, base).href, f, ctx, progress, () => { done = before; });
    meta.verified[f.path] = true;
    await writeMeta(dir, meta);
  }
  meta.complete = true;
  await writeMeta(dir, meta);
  const files = [];
  for (const f of plan_.files) files.push(await (await dir.getFileHandle(f.path)).getFile());
  return { key, files, manifestSha256: plan_.manifestSha256 };
}

const sleep = (ms, signal) => new Promise((resolve, reject) => {
  const t = setTimeout(resolve, ms);
  signal?.addEventListener('abort', () => { clearTimeout(t); reject(signal.reason); }, { once: true });
});

/** One file: resume from what is on disk with a range request, verify size and sha256, and
 *  fetch it again (once) if the bytes are wrong. */
async function fetchOne(dir, url, entry, ctx, progress, rewind) {
  const handle = await dir.getFileHandle(entry.path, { create: true });
  const h = await handle.createSyncAccessHandle();
  try {
    let failures = 0;
    let corrupt = 0;
    for (;;) {
      ctx.signal?.throwIfAborted();
      let have = h.getSize();
      if (entry.size != null && have > entry.size) {
        h.truncate(0);
        have = 0;
      }
      progress(have);
      if (entry.size == null || have < entry.size) {
        try {
          await streamInto(h, url, have, entry, ctx, progress);
        } catch (e) {
          if (ctx.signal?.aborted) throw ctx.signal.reason ?? e;
          if (e.fatal || ++failures > RETRIES) throw e;
          ctx.log?.(`${entry.path}: ${e.message}; resuming (attempt ${failures + 1})`);
          rewind();
          await sleep(Math.min(250 * 2 ** failures, 4000), ctx.signal);
          continue;
        }
      }
      const size = h.getSize();
      if (entry.size != null && size !== entry.size) {
        rewind();
        if (++failures > RETRIES) {
          throw new Error(`${entry.path}: got ${size} bytes, expected ${entry.size}`);
        }
        continue;
      }
      if (entry.sha256) {
        ctx.onProgress('verify', 0, size);
        const hasher = ctx.hasher();
        const buf = new Uint8Array(Math.min(PIECE, Math.max(size, 1)));
        for (let at = 0; at < size; at += buf.length) {
          const n = h.read(buf, { at });
          hasher.update(buf.subarray(0, n));
          ctx.onProgress('verify', at + n, size);
        }
        const got = hasher.hex();
        if (got !== entry.sha256.toLowerCase()) {
          ctx.log?.(`${entry.path}: sha256 ${got} is not the manifest's ${entry.sha256}; fetching it again`);
          if (++corrupt > 1) {
            throw Object.assign(new Error(`${entry.path} failed its sha256 check twice ` +
              `(got ${got}, manifest says ${entry.sha256}); the server holds a damaged copy`), { fatal: true });
          }
          h.truncate(0);
          rewind();
          continue;
        }
      }
      h.flush();
      return;
    }
  } finally {
    h.close();
  }
}

async function streamInto(h, url, have, entry, ctx, progress) {
  const headers = have > 0 ? { Range: `bytes=${have}-` } : {};
  const r = await fetch(url, { headers, signal: ctx.signal, cache: 'no-store' });
  let at = have;
  if (have > 0 && r.status === 416) return; // already whole
  if (!r.ok) {
    const err = httpError(url, r);
    err.fatal = r.status === 404 || r.status === 403 || r.status === 401;
    throw err;
  }
  if (have > 0 && r.status === 200) {
    // The server ignored the range: start the file over.
    progress(-have);
    h.truncate(0);
    at = 0;
  } else if (have > 0) {
    const start = Number((r.headers.get('Content-Range') ?? '').match(/bytes (\d+)-/)?.[1]);
    if (start !== have) {
      throw Object.assign(new Error(`${url}: asked for bytes ${have}- and got ${r.headers.get('Content-Range')}`), { fatal: true });
    }
  }
  const reader = r.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    h.write(value, { at });
    at += value.length;
    progress(value.length);
  }
  h.flush();
  if (entry.size == null) entry.size = at;
}
