// What breaks downloads and pages elsewhere, done to ours on purpose: a shard cut mid-download,
// a shard served corrupted once, the network gone after a first visit, a folder without
// config.json, a truncated safetensors file, and GPU limits below what the model needs. Each must
// end in a visible message or a correct answer, and a page that still works.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as h from './harness.mjs';

const MODEL = path.join(h.MODELS, 'tiny-small-vocab');
const PROMPT = 'Is there a pneumothorax?';
const N = 8;
const SHARD = '/model/model.safetensors';
let browser, server, px, base, want;

before(async () => {
  want = h.cliGenerate(MODEL, PROMPT, N);
  server = await h.serve(MODEL);
  px = await h.proxy(server.port);
  base = `http://127.0.0.1:${px.port}/`;
  browser = await h.launch();
});

after(async () => {
  await browser?.close();
  px?.stop();
  server?.stop();
});

const caseLink = () => h.link(base, {
  model: 'model/', prompt: PROMPT, instruction: 'none', temperature: '0', repetition_penalty: '1',
  max_new_tokens: String(N), autorun: '1',
});

const shardRequests = (from) => px.log.slice(from).filter((r) => r.url === SHARD && r.method === 'GET');

test('a shard cut mid-download resumes with a range request', async () => {
  const { ctx } = await h.context(browser);
  const page = await ctx.newPage();
  const from = px.log.length;
  px.faults.cutOnce = SHARD;
  await page.goto(caseLink());
  const r = await h.result(page);
  assert.equal(r.state, 'done', r.message);
  assert.deepEqual(r.value.token_ids, want.token_ids);
  const gets = shardRequests(from);
  const whole = gets.filter((g) => g.range === null);
  const ranged = gets.filter((g) => /^bytes=[1-9]\d*-$/.test(g.range ?? ''));
  assert.equal(whole.length, 1, `shard requests: ${JSON.stringify(gets)}`);
  assert.ok(ranged.length >= 1, `no resuming range request: ${JSON.stringify(gets)}`);
  assert.equal(px.faults.cutOnce, null, 'the cut never happened');
  await ctx.close();
});

test('a shard served corrupted once is detected by its sha256 and fetched again', async () => {
  const { ctx } = await h.context(browser);
  const page = await ctx.newPage();
  const from = px.log.length;
  px.faults.corruptOnce = SHARD;
  await page.goto(caseLink());
  const r = await h.result(page);
  assert.equal(r.state, 'done', r.message);
  assert.deepEqual(r.value.token_ids, want.token_ids);
  assert.equal(px.faults.corruptOnce, null, 'the corruption never happened');
  assert.equal(shardRequests(from).filter((g) => g.range === null).length, 2, 'expected one refetch');
  await ctx.close();
});

test('after one visit the cached case runs with the network gone', async () => {
  const { ctx } = await h.context(browser);
  const page = await ctx.newPage();
  await page.goto(caseLink());
  assert.equal((await h.result(page)).state, 'done');
  // Let the service worker finish installing before the network goes.
  await page.evaluate(() => navigator.serviceWorker.ready);
  px.faults.offline = true;
  try {
    await page.goto(caseLink());
    const r = await h.result(page);
    assert.equal(r.state, 'done', r.message);
    assert.deepEqual(r.value.token_ids, want.token_ids);
  } finally {
    px.faults.offline = false;
  }
  await ctx.close();
});

async function readyPage() {
  const { ctx } = await h.context(browser);
  const page = await ctx.newPage();
  await page.goto(base);
  await page.waitForFunction(() => document.getElementById('version').textContent !== '', null, { timeout: 60_000 });
  return { ctx, page };
}

const message = (page) => page.waitForFunction(() => !document.getElementById('message').hidden,
  null, { timeout: 60_000 }).then(() => page.textContent('#message'));

/** After a failure the page still loads a good model and answers. */
async function stillWorks(page) {
  await page.setInputFiles('#pick-files', h.modelFiles(MODEL));
  await page.waitForFunction(() => !document.getElementById('run').disabled, null, { timeout: 120_000 });
  await page.fill('#prompt', PROMPT);
  if (!(await page.isVisible('#instruction'))) await page.click('text=Settings');
  await page.selectOption('#instruction', 'none');
  await page.fill('#temperature', '0');
  await page.fill('#repetition-penalty', '1');
  await page.fill('#max-new-tokens', String(N));
  await page.click('#run');
  const r = await h.result(page);
  assert.equal(r.state, 'done', r.message);
  assert.deepEqual(r.value.token_ids, want.token_ids);
}

test('a folder without config.json gives a message naming it, and the page works on', async () => {
  const { ctx, page } = await readyPage();
  await page.setInputFiles('#pick-files', h.modelFiles(MODEL).filter((f) => !f.endsWith('config.json') || f.endsWith('_config.json')));
  assert.match(await message(page), /lack config\.json/);
  await stillWorks(page);
  await ctx.close();
});

test('a truncated safetensors file gives a message, and the page works on', async () => {
  const { ctx, page } = await readyPage();
  const files = h.modelFiles(MODEL).map((f) => {
    const buffer = fs.readFileSync(f);
    const name = path.basename(f);
    return { name, mimeType: 'application/octet-stream', buffer: name === 'model.safetensors' ? buffer.subarray(0, buffer.length - 1000) : buffer };
  });
  await page.setInputFiles('#pick-files', files);
  assert.match(await message(page), /model\.safetensors.*truncated/s);
  await stillWorks(page);
  await ctx.close();
});

test('GPU limits below the model\'s needs stop the download before it starts', async () => {
  const { ctx } = await h.context(browser);
  // The adapter this page sees reports a 64-byte binding limit: below one row of the tiny model's
  // matrices (64 bf16 values = 128 bytes), which the engine's row split cannot go under.
  await ctx.addInitScript(() => {
    if (typeof GPUAdapter === 'undefined') return; // scripts also run where WebGPU is absent
    const real = Object.getOwnPropertyDescriptor(GPUAdapter.prototype, 'limits').get;
    Object.defineProperty(GPUAdapter.prototype, 'limits', {
      get() {
        const l = real.call(this);
        return new Proxy(l, { get: (t, k) => (k === 'maxStorageBufferBindingSize' ? 64 : t[k]) });
      },
    });
  });
  const page = await ctx.newPage();
  const from = px.log.length;
  await page.goto(caseLink());
  const r = await h.result(page);
  assert.equal(r.state, 'error');
  assert.match(r.message, /GPU cannot hold this model/);
  assert.equal(shardRequests(from).filter((g) => !g.range || !/^bytes=0-7$|^bytes=8-/.test(g.range)).length, 0,
    'the weights were downloaded anyway');
  // The controls still work: picking the same model from disk is refused with the same message.
  assert.equal(await page.isEnabled('#download'), true);
  await page.evaluate(() => { document.getElementById('message').textContent = ''; });
  await page.setInputFiles('#pick-files', h.modelFiles(MODEL));
  await page.waitForFunction(() => document.getElementById('message').textContent !== '', null, { timeout: 60_000 });
  assert.match(await page.textContent('#message'), /GPU cannot hold this model/);
  assert.equal(await page.textContent('#model-status'), 'No model loaded.');
  await ctx.close();
});

test('a corrupt DICOM gives a message naming it, and a good image is still taken', async () => {
  const { ctx, page } = await readyPage();
  // A DICOM preamble and magic, then garbage where the data set should be.
  const bad = Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), Buffer.from('\x02\x00\x10\x00UI\xff\xffbroken')]);
  await page.setInputFiles('#pick-image', { name: 'broken.dcm', mimeType: 'application/dicom', buffer: bad });
  assert.match(await message(page), /broken\.dcm cannot be used/);
  assert.equal(await page.locator('#inputs-list .input-item').count(), 0);
  await page.setInputFiles('#pick-image', path.join(h.ROOT, 'docs/annotated_retina.jpg'));
  await page.waitForSelector('#inputs-list .input-item img.thumb', { timeout: 60_000 });
  assert.match(await page.textContent('#inputs-list'), /annotated_retina\.jpg/);
  await ctx.close();
});

test('a browser without WebGPU is told which browsers work, before any download', async () => {
  const { ctx } = await h.context(browser);
  await ctx.addInitScript(() => {
    Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined });
  });
  const page = await ctx.newPage();
  const from = px.log.length;
  await page.goto(caseLink());
  const r = await h.result(page, 60_000);
  assert.equal(r.state, 'error');
  assert.match(r.message, /no WebGPU.*Chrome or Edge/s);
  assert.deepEqual(px.log.slice(from).filter((x) => x.url.startsWith('/model/')), []);
  await ctx.close();
});

test('cancel download: stops the transfer, keeps what came as partial, and the next download resumes', async () => {
  const { ctx, page } = await readyPage();
  px.faults.slow = SHARD; // 16 KiB every 100 ms: time to cancel mid-file
  try {
    await page.fill('#model-url', 'model/');
    await page.click('#download');
    await page.waitForFunction(() => /^Downloading/.test(document.getElementById('phase').textContent) &&
      document.getElementById('progress').value > 0, null, { timeout: 60_000, polling: 50 });
    assert.equal(await page.isVisible('#cancel-download'), true);
    await page.click('#cancel-download');
    assert.match(await message(page), /download cancelled/);
    assert.equal(await page.textContent('#model-status'), 'No model loaded.');
    assert.equal(await page.isDisabled('#run'), true);
    await page.click('#cache summary');
    await page.waitForFunction(() => /partial/.test(document.getElementById('cache-list').textContent), null, { timeout: 30_000 });
  } finally {
    px.faults.slow = null;
  }
  const from = px.log.length;
  await page.click('#download');
  await page.waitForFunction(() => !document.getElementById('run').disabled, null, { timeout: 120_000 });
  assert.match(await page.textContent('#model-status'), /^Loaded/);
  const gets = shardRequests(from);
  assert.ok(gets.some((g) => /^bytes=[1-9]\d*-$/.test(g.range ?? '')), `no resuming range request: ${JSON.stringify(gets)}`);
  assert.equal(gets.filter((g) => g.range === null).length, 0, `the shard was fetched from the start: ${JSON.stringify(gets)}`);
  await ctx.close();
});
