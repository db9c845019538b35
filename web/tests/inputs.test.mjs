// Images and ECGs through the web app, against `qoqmed serve` and the tiny Omni fixture model (a
// vision tower and an ECG branch with random weights): a shared link with a DICOM image (window,
// pixel range), the same case through the UI, and a link with a WFDB ECG record each give the
// native CLI's greedy ids; the ECG is shown as its 12-lead plot; a known answer's boxes are drawn
// over the image by the page's own rendering (the screenshot in docs/web-boxes.png).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import fs from 'node:fs';
import * as h from './harness.mjs';

const MODEL = path.join(h.MODELS, 'tiny-omni');
const FIX = path.join(h.ROOT, 'tests/fixtures');
const CT = path.join(FIX, 'images/dicom/CT_small.dcm');
const CXR = path.join(FIX, 'images/dicom/CR_RG1_every4th.dcm');
const HEA = path.join(FIX, 'ecg/waveform_ecg_16.hea');
const DAT = path.join(FIX, 'ecg/waveform_ecg_16.dat');
const NII = path.join(FIX, 'images/nifti/anatomical.nii');
const SLICES = ['expected_anatomical_n2_z0.png', 'expected_anatomical_n2_z24.png', 'expected_anatomical_n4_z8.png']
  .map((f) => path.join(FIX, 'images/nifti', f));
const PROMPT = 'What does this study show?';
const N = 8;
const WINDOW = '40,400';
let browser, server, px, base;

before(async () => {
  server = await h.serve(MODEL);
  px = await h.proxy(server.port);
  for (const f of [CT, CXR, HEA, DAT, ...SLICES]) px.cases.set(`/case/${path.basename(f)}`, f);
  base = `http://127.0.0.1:${px.port}/`;
  browser = await h.launch();
});

after(async () => {
  await browser?.close();
  px?.stop();
  server?.stop();
});

const settings = { prompt: PROMPT, instruction: 'none', temperature: '0', repetition_penalty: '1', max_new_tokens: String(N) };

function assertSameAsCli(got, want, what) {
  assert.equal(got.state, 'done', `${what}: ${got.message}`);
  assert.deepEqual(got.value.token_ids, want.token_ids, `${what}: token ids`);
  assert.equal(got.value.prompt_tokens, want.prompt_tokens, `${what}: prompt tokens`);
  assert.equal(got.value.text, want.text, `${what}: text`);
}

test('a DICOM image with a window: the link and the UI give the native CLI greedy ids', async () => {
  const want = h.cliGenerate(MODEL, PROMPT, N, ['--image', CT, '--window', WINDOW, '--pixel-range', 'model']);
  // The image really is in the prompt: without it the prompt is shorter.
  const textOnly = h.cliGenerate(MODEL, PROMPT, 1);
  assert.ok(want.prompt_tokens > textOnly.prompt_tokens + 4, `${want.prompt_tokens} vs ${textOnly.prompt_tokens}`);

  const { ctx, requests } = await h.context(browser);
  const page = await ctx.newPage();
  await page.goto(h.link(base, {
    model: 'model/', image: 'case/CT_small.dcm', window: WINDOW, pixel_range: 'model', ...settings, autorun: '1',
  }));
  const linked = await h.result(page);
  assertSameAsCli(linked, want, 'link');
  assert.ok(linked.value.timings.vision_s > 0, 'no vision time reported');
  console.log(`tiny-omni + CT_small.dcm in headless Chromium: vision ${linked.value.timings.vision_s.toFixed(3)} s, ` +
    `TTFT ${linked.value.timings.time_to_first_token_s.toFixed(3)} s, decode ${linked.value.timings.decode_tokens_per_s.toFixed(1)} tok/s`);
  // The image is shown under the answer (boxes would be drawn over it).
  assert.equal(await page.locator('#figures .figure img').count(), 1);
  for (const r of requests) assert.equal(new URL(r.url).origin === new URL(base).origin || /^(blob|data):/.test(r.url), true, r.url);

  // The same case through the UI: model files and the image picked, settings typed, Ask clicked.
  await page.goto(base);
  const uiFrom = requests.length;
  await page.waitForFunction(() => document.getElementById('version').textContent !== '', null, { timeout: 60_000 });
  await page.setInputFiles('#pick-files', h.modelFiles(MODEL));
  await page.click('text=Settings');
  await page.selectOption('#instruction', 'none');
  await page.fill('#temperature', '0');
  await page.fill('#repetition-penalty', '1');
  await page.fill('#max-new-tokens', String(N));
  await page.selectOption('#pixel-range', 'model');
  await page.setInputFiles('#pick-image', CT);
  await page.waitForSelector('#inputs-list img.thumb');
  const before = await page.getAttribute('#inputs-list img.thumb', 'src');
  // Window/level re-decodes the preview (what the model will see).
  const [c, w] = WINDOW.split(',');
  await page.fill('#window-center', c);
  await page.fill('#window-width', w);
  await page.locator('#window-width').dispatchEvent('change');
  await page.waitForFunction((old) => document.querySelector('#inputs-list img.thumb')?.src !== old, before, { timeout: 30_000 });
  await page.fill('#prompt', PROMPT);
  await page.waitForFunction(() => !document.getElementById('run').disabled, null, { timeout: 180_000 });
  await page.click('#run');
  const ui = await h.result(page);
  assertSameAsCli(ui, want, 'UI');
  const fetched = requests.slice(uiFrom).filter((r) => /\/(case|model)\//.test(r.url));
  assert.deepEqual(fetched.map((r) => r.url), [], 'picked files were fetched from the server');
  await ctx.close();
});

test('a WFDB ECG (.hea + .dat) by link gives the native CLI greedy ids and shows the 12-lead plot', async () => {
  const want = h.cliGenerate(MODEL, PROMPT, N, ['--ecg', HEA]);
  const { ctx } = await h.context(browser);
  const page = await ctx.newPage();
  await page.goto(`${h.link(base, { model: 'model/', ...settings, autorun: '1' })}&ecg=case/waveform_ecg_16.hea&ecg=case/waveform_ecg_16.dat`);
  const got = await h.result(page);
  assertSameAsCli(got, want, 'ECG link');
  assert.ok(got.value.timings.ecg_s > 0, 'no ECG time reported');
  // One record (the pair grouped), drawn as the 12-lead plot by the engine's plot code.
  assert.equal(await page.locator('#inputs-list [data-kind="ecg"]').count(), 1);
  const plot = await page.evaluate(() => {
    const img = document.querySelector('#inputs-list img.ecg-plot');
    return img && { w: img.naturalWidth, h: img.naturalHeight };
  });
  assert.ok(plot && plot.w > 1000 && plot.w > plot.h, `12-lead plot: ${JSON.stringify(plot)}`);
  await ctx.close();
});

test('a known answer: its boxes are drawn over the image by the page (docs/web-boxes.png)', async () => {
  // The repository's checkpoints have random weights and write no boxes, so this answer text is
  // written by hand (docs/annotated_cxr_answer.txt, the CLI's example). It goes through the same
  // parser and box placement as a generated answer (wasm answerFromText = qoqmed_output::parse +
  // qoqmed_pipeline::place_boxes) and the page's render.js showAnswer; no model runs.
  const text = fs.readFileSync(path.join(h.ROOT, 'docs/annotated_cxr_answer.txt'), 'utf8');
  const { ctx } = await h.context(browser);
  const page = await ctx.newPage();
  await page.setViewportSize({ width: 1000, height: 900 });
  await page.goto(base);
  await page.waitForFunction(() => document.getElementById('version').textContent !== '', null, { timeout: 60_000 });
  await page.selectOption('#preset', { label: 'Chest X-ray' });
  await page.fill('#prompt', 'Are there nodules in this chest X-ray? Mark them.');
  await page.setInputFiles('#pick-image', CXR);
  await page.waitForSelector('#inputs-list img.thumb');
  const answer = await page.workers()[0].evaluate(async ({ origin, text }) => {
    const m = await import(`${origin}/pkg/qoqmed_web.js`);
    const bytes = await (await fetch(`${origin}/case/CR_RG1_every4th.dcm`)).arrayBuffer();
    return JSON.parse(await m.answerFromText(text, [new File([bytes], 'CR_RG1_every4th.dcm')], 'qoq', 2));
  }, { origin: new URL(base).origin, text });
  assert.equal(answer.boxes.length, 3);
  assert.equal(answer.answer, 'Nodule');
  const drawn = await page.evaluate(async ({ answer, text }) => {
    const r = await import('./render.js');
    const thumb = document.querySelector('#inputs-list img.thumb');
    r.clearAnswer(false);
    document.getElementById('stream').textContent = text;
    r.showAnswer(answer, [{ name: thumb.alt, url: thumb.src, width: thumb.naturalWidth, height: thumb.naturalHeight }], { manual: false });
    const img = document.querySelector('#figures .figure img');
    await img.decode();
    const ir = img.getBoundingClientRect();
    return [...document.querySelectorAll('#figures .figure .box')].map((b) => {
      const br = b.getBoundingClientRect();
      return { label: b.textContent, x: (br.left - ir.left) / ir.width, y: (br.top - ir.top) / ir.height,
        w: br.width / ir.width, h: br.height / ir.height, iw: img.naturalWidth, ih: img.naturalHeight };
    });
  }, { answer, text });
  assert.equal(drawn.length, 3);
  for (const [i, d] of drawn.entries()) {
    const [x1, y1, x2, y2] = answer.boxes[i].bbox_original;
    assert.equal(d.label, 'nodule');
    assert.equal(answer.boxes[i].image, 0);
    for (const [got, exp] of [[d.x, x1 / d.iw], [d.y, y1 / d.ih], [d.w, (x2 - x1) / d.iw], [d.h, (y2 - y1) / d.ih]]) {
      assert.ok(Math.abs(got - exp) < 0.01, `box ${i}: ${got} vs ${exp}`);
    }
  }
  assert.equal(await page.textContent('#answer'), 'Nodule');
  assert.equal(await page.isVisible('#think'), true);
  fs.mkdirSync(path.join(h.ROOT, 'web/test-results'), { recursive: true });
  await page.screenshot({ path: path.join(h.ROOT, 'web/test-results/web-boxes.png'), fullPage: true });
  await ctx.close();
});

test('a NIfTI volume: the slider shows each sampled slice as the readers decode it (within one grey level of nibabel)', async () => {
  const { ctx } = await h.context(browser);
  const page = await ctx.newPage();
  await page.goto(base);
  await page.waitForFunction(() => document.getElementById('version').textContent !== '', null, { timeout: 60_000 });
  await page.setInputFiles('#pick-image', NII);
  await page.waitForSelector('#inputs-list img.thumb');
  /** The grey levels of an image URL (the first channel of each pixel), with its size. */
  const grey = (url) => page.evaluate(async (u) => {
    const img = new Image();
    img.src = u;
    await img.decode();
    const c = Object.assign(document.createElement('canvas'), { width: img.naturalWidth, height: img.naturalHeight });
    const g = c.getContext('2d');
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    return { w: c.width, h: c.height, v: Array.from(d.filter((_, i) => i % 4 === 0)) };
  }, url);
  const shown = async () => grey(await page.getAttribute('#inputs-list img.thumb', 'src'));
  const expected = (i) => grey(`${base}case/${path.basename(SLICES[i])}`);
  const slide = (v) => page.evaluate((x) => {
    const s = document.querySelector('#inputs-list input.slices');
    s.value = String(x);
    s.dispatchEvent(new Event('input'));
  }, v);
  // Within one grey level of the nibabel pictures, the readers' own tolerance (dicom_nifti.rs).
  const same = (got, want, what) => {
    assert.deepEqual([got.w, got.h], [want.w, want.h], what);
    const diff = got.v.reduce((m, x, i) => Math.max(m, Math.abs(x - want.v[i])), 0);
    assert.ok(diff <= 1, `${what}: max diff ${diff}`);
  };
  // Two sampled slices (the default): z = 0 and 24, the CLI readers' expected pictures.
  assert.equal(await page.getAttribute('#inputs-list input.slices', 'max'), '1');
  same(await shown(), await expected(0), 'slice 0 of 2');
  await slide(1);
  same(await shown(), await expected(1), 'slice 1 of 2');
  assert.notDeepEqual(await expected(0), await expected(1));
  // Four slices: the previews are decoded again (z = 0, 8, 16, 24).
  await page.click('text=Settings');
  await page.fill('#frames', '4');
  await page.locator('#frames').dispatchEvent('change');
  await page.waitForFunction(() => document.querySelector('#inputs-list input.slices')?.max === '3', null, { timeout: 30_000 });
  await slide(1);
  same(await shown(), await expected(2), 'slice 1 of 4');
  await ctx.close();
});
