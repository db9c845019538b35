// The web app end to end against `qoqmed serve` and the tiny fixture model, in headless Chromium
// on software WebGPU: a shared link and the same case through the UI give the native CLI's greedy
// ids, twice; nothing leaves the origin; the CSP blocks other hosts for the page and its worker,
// with the header and with the meta tag alone; nothing of the case is stored.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import fs from 'node:fs';
import * as h from './harness.mjs';

const MODEL = path.join(h.MODELS, 'tiny-small-vocab');
const PROMPT = 'Describe the chest X-ray.';
const N = 12;
let browser, server, px, other, base, want;

before(async () => {
  want = h.cliGenerate(MODEL, PROMPT, N);
  server = await h.serve(MODEL);
  px = await h.proxy(server.port);
  other = await h.elsewhere();
  base = `http://127.0.0.1:${px.port}/`;
  browser = await h.launch();
});

after(async () => {
  await browser?.close();
  px?.stop();
  other?.stop();
  server?.stop();
});

const caseLink = () => h.link(base, {
  model: 'model/', prompt: PROMPT, instruction: 'none', temperature: '0', repetition_penalty: '1',
  max_new_tokens: String(N), autorun: '1',
});

/** No request left the origin, none carried a body, none carried the question. */
function assertPrivate(requests, what) {
  const origin = new URL(base).origin;
  for (const r of requests) {
    const u = new URL(r.url);
    if (u.protocol === 'blob:' || u.protocol === 'data:') continue;
    assert.equal(u.origin, origin, `${what}: request off the origin: ${r.url}`);
    assert.equal(r.body, 0, `${what}: request with a body: ${r.method} ${r.url}`);
    assert.ok(!decodeURIComponent(r.url).includes('chest X-ray') || r.url.startsWith(base + '?'),
      `${what}: the question in a request: ${r.url}`);
  }
}

function assertServerLogPrivate(from) {
  for (const r of px.log.slice(from)) {
    assert.ok(['GET', 'HEAD'].includes(r.method), `server saw ${r.method} ${r.url}`);
    assert.equal(r.body, 0, `server saw a body on ${r.url}`);
    const p = r.url.split('?')[0];
    assert.ok(p === '/' || /^\/[\w./-]+$/.test(p), `server saw ${r.url}`);
  }
}

test('an autorun link gives the native CLI greedy ids, twice, and the second time from storage', async () => {
  const { ctx, requests } = await h.context(browser);
  const page = await ctx.newPage();
  const logFrom = px.log.length;
  await page.goto(caseLink());
  const first = await h.result(page);
  assert.equal(first.state, 'done', first.message);
  assert.deepEqual(first.value.token_ids, want.token_ids);
  assert.equal(first.value.prompt_tokens, want.prompt_tokens);
  assert.equal(first.value.text, want.text);
  assert.match(first.value.manifest_sha256, /^[0-9a-f]{64}$/);
  assert.equal(typeof first.value.engine_version, 'string');
  console.log(`tiny-small-vocab in headless Chromium (${first.value.adapter}): load ${first.value.timings.load_s.toFixed(3)} s, ` +
    `prefill ${first.value.timings.prefill_tokens_per_s.toFixed(1)} tok/s, decode ${first.value.timings.decode_tokens_per_s.toFixed(1)} tok/s`);

  const shardGets = () => px.log.filter((r) => r.url === '/model/model.safetensors' && r.method === 'GET').length;
  const before = shardGets();
  await page.goto(caseLink());
  const second = await h.result(page);
  assert.equal(second.state, 'done', second.message);
  assert.deepEqual(second.value.token_ids, want.token_ids);
  assert.equal(shardGets(), before, 'the second run downloaded the weights again');
  assertPrivate(requests, 'autorun');
  assertServerLogPrivate(logFrom);

  // After a reload, no storage holds anything of the case.
  await page.goto(base);
  const stored = await page.evaluate(async () => {
    const opfs = [];
    const walk = async (dir, prefix) => {
      for await (const [name, hd] of dir.entries()) {
        if (hd.kind === 'directory') await walk(hd, `${prefix}${name}/`);
        else opfs.push({ name: `${prefix}${name}`, text: await (await hd.getFile()).text() });
      }
    };
    await walk(await navigator.storage.getDirectory(), '');
    const cached = [];
    for (const k of await caches.keys()) {
      for (const r of await (await caches.open(k)).keys()) cached.push({ url: r.url, text: await (await caches.match(r)).text() });
    }
    return { local: localStorage.length, session: sessionStorage.length, idb: (await indexedDB.databases()).length, opfs, cached };
  });
  assert.equal(stored.local, 0);
  assert.equal(stored.session, 0);
  assert.equal(stored.idb, 0);
  for (const f of [...stored.opfs, ...stored.cached]) {
    assert.ok(!f.text.includes(PROMPT), `${f.name ?? f.url} holds the question`);
  }
  for (const f of stored.opfs) assert.match(f.name, /^qoqmed-models\/[^/]+\/[^/]+$/);
  for (const c of stored.cached) assert.ok(!c.url.includes('?'), `cached a URL with parameters: ${c.url}`);

  // The cache list shows the model with its size; Delete empties OPFS of it.
  await page.click('#cache summary');
  await page.waitForFunction(() => /MB/.test(document.getElementById('cache-list').textContent), null, { timeout: 30_000 });
  assert.match(await page.textContent('#cache-list'), /^http:\/\/127\.0\.0\.1:\d+\/model\/ — 0\.\d MB/);
  await page.click('#cache-list button');
  await page.waitForFunction(() => document.getElementById('cache-list').textContent === 'none', null, { timeout: 30_000 });
  const left = await page.evaluate(async () => {
    const names = [];
    for await (const [name] of (await (await navigator.storage.getDirectory()).getDirectoryHandle('qoqmed-models')).entries()) names.push(name);
    return names;
  });
  assert.deepEqual(left, []);
  await ctx.close();
});

test('the same case through the UI (picked files, clicks) gives the same ids', async () => {
  const { ctx, requests } = await h.context(browser);
  const page = await ctx.newPage();
  await page.goto(base);
  await page.waitForFunction(() => document.getElementById('version').textContent !== '', null, { timeout: 60_000 });
  await page.setInputFiles('#pick-files', h.modelFiles(MODEL));
  await page.waitForFunction(() => !document.getElementById('run').disabled, null, { timeout: 120_000 });
  await page.fill('#prompt', PROMPT);
  await page.click('text=Settings');
  await page.selectOption('#instruction', 'none');
  await page.fill('#temperature', '0');
  await page.fill('#repetition-penalty', '1');
  await page.fill('#max-new-tokens', String(N));
  await page.click('#run');
  const got = await h.result(page);
  assert.equal(got.state, 'done', got.message);
  assert.deepEqual(got.value.token_ids, want.token_ids);
  assert.equal(got.value.manifest_sha256, null, 'picked files have no manifest');
  const streamed = await page.textContent('#stream');
  assert.equal(streamed, want.text);
  assertPrivate(requests, 'ui');
  // Picked files are read in place: no model request reached the server.
  assert.ok(!requests.some((r) => r.url.includes('/model/')), 'a picked model was fetched from the server');
  await ctx.close();
});

for (const mode of ['header', 'meta-only']) {
  test(`the CSP blocks other hosts for the page and its worker (${mode})`, async () => {
    px.faults.stripCsp = mode === 'meta-only';
    try {
      const { ctx } = await h.context(browser);
      const page = await ctx.newPage();
      const resp = await page.goto(base);
      assert.equal(resp.headers()['content-security-policy'] !== undefined, mode === 'header');
      await page.waitForFunction(() => document.getElementById('version').textContent !== '', null, { timeout: 60_000 });
      const attempt = (url) => fetch(url, { mode: 'no-cors' }).then(() => 'sent', (e) => `blocked: ${e.message}`);
      const fromPage = await page.evaluate(attempt, other.url + 'page');
      assert.match(fromPage, /^blocked/, 'page fetch');
      const workers = page.workers();
      assert.equal(workers.length, 1, 'one engine worker');
      const fromWorker = await workers[0].evaluate(attempt, other.url + 'worker');
      assert.match(fromWorker, /^blocked/, 'worker fetch');
      // A link to a model on a host that is not allowed: a message, and no request.
      const hits = other.hits.length;
      await page.goto(h.link(base, { model: other.url + 'model/', prompt: 'x', autorun: '1' }));
      const r = await h.result(page);
      assert.equal(r.state, 'error');
      assert.match(r.message, /does not allow/);
      assert.equal(other.hits.length, hits);
      assert.deepEqual(other.hits, [], 'a request reached the other host');
      await ctx.close();
    } finally {
      px.faults.stripCsp = false;
    }
  });
}

test('a link with a parameter the app cannot honour is an error', async () => {
  const { ctx } = await h.context(browser);
  const page = await ctx.newPage();
  for (const [params, re] of [[{ top_q: '1' }, /top_q/], [{ instruction: 'maybe' }, /qoq or none/],
    [{ max_new_tokens: '-3' }, /whole number/], [{ frames: '9' }, /at most 4/],
    [{ window: '40' }, /CENTER,WIDTH/], [{ window: '40,-1' }, /width > 0/]]) {
    await page.goto(h.link(base, params));
    const r = await h.result(page, 30_000);
    assert.equal(r.state, 'error');
    assert.match(r.value.error, re);
  }
  await ctx.close();
});

test('stop ends a run within a step, and the page answers again afterwards', async () => {
  const { ctx } = await h.context(browser);
  const page = await ctx.newPage();
  await page.goto(h.link(base, {
    model: 'model/', prompt: PROMPT, instruction: 'none', temperature: '0', repetition_penalty: '1',
    max_new_tokens: '3000', autorun: '1',
  }));
  await page.waitForFunction(() => document.getElementById('stream').textContent.length > 0, null, { timeout: 120_000 });
  await page.click('#stop');
  const r = await h.result(page);
  assert.equal(r.state, 'done', r.message);
  assert.equal(r.value.stop_reason, 'cancelled');
  assert.ok(r.value.token_ids.length < 3000, `${r.value.token_ids.length} tokens after stop`);
  assert.deepEqual(r.value.token_ids.slice(0, N), want.token_ids.slice(0, Math.min(N, r.value.token_ids.length)));
  // A screenshot of a finished answer for the docs (web/test-results is not committed).
  fs.mkdirSync(path.join(h.ROOT, 'web/test-results'), { recursive: true });
  await page.screenshot({ path: path.join(h.ROOT, 'web/test-results/stopped.png'), fullPage: true });
  if (!(await page.isVisible('#max-new-tokens'))) await page.click('text=Settings');
  await page.fill('#max-new-tokens', String(N));
  await page.click('#run');
  const again = await h.result(page);
  assert.equal(again.state, 'done', again.message);
  assert.deepEqual(again.value.token_ids, want.token_ids);
  await ctx.close();
});

test('reveal=manual hides the answer until the learner asks', async () => {
  const { ctx } = await h.context(browser);
  const page = await ctx.newPage();
  await page.goto(h.link(base, {
    model: 'model/', prompt: PROMPT, instruction: 'none', temperature: '0', repetition_penalty: '1',
    max_new_tokens: String(N), autorun: '1', reveal: 'manual',
  }));
  const r = await h.result(page);
  assert.equal(r.state, 'done', r.message);
  assert.equal(await page.isVisible('#answer-block'), false);
  assert.equal(await page.isVisible('#stream'), false, 'the streamed answer shows before the reveal');
  assert.equal(await page.isVisible('#reveal'), true);
  await page.click('#reveal');
  assert.equal(await page.isVisible('#answer-block'), true);
  assert.equal(await page.textContent('#stream'), r.value.text);
  assert.equal(await page.isVisible('#stream'), true);
  assert.equal(await page.isVisible('#reveal'), false);
  await ctx.close();
});
