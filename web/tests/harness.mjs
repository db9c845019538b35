// What the browser tests share: `qoqmed serve` on 127.0.0.1, a fault-injecting proxy in front of
// it (cut a download, corrupt a file once, go offline, drop the CSP header to act as a plain
// static host), headless Chromium through playwright-core with software WebGPU, and a record of
// every request the page and its worker make.

import { spawn, execFileSync } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const QOQMED = path.join(ROOT, 'target/release/qoqmed');
export const MODELS = path.join(ROOT, 'tests/fixtures/models');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** Starts `qoqmed serve` on a free port; resolves to {port, log: string[], stop()}. */
export function serve(model, extra = []) {
  return new Promise((resolve, reject) => {
    const child = spawn(QOQMED, ['serve', '--port', '0', '--dist', path.join(ROOT, 'web/dist'),
      '--model', model, ...extra], { env: { ...process.env, XDG_RUNTIME_DIR: '/tmp' } });
    const log = [];
    let out = '';
    child.stderr.on('data', (d) => log.push(...d.toString().split('\n').filter(Boolean)));
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/http:\/\/127\.0\.0\.1:(\d+)\//);
      if (m) resolve({ port: Number(m[1]), log, stop: () => child.kill() });
    });
    child.on('exit', (code) => reject(new Error(`qoqmed serve exited ${code}: ${log.join('\n')}`)));
  });
}

/** A proxy to `target` whose faults the test switches on: {cutOnce, corruptOnce} hold a path
 *  each and fire once, `offline` refuses every connection, `stripCsp` drops the CSP header,
 *  `slow` (a path) sends that file in 16 KiB pieces 100 ms apart. `cases` maps a path under
 *  /case/ to a fixture file it serves (a prepared case's image or ECG, on the page's origin). */
export function proxy(targetPort) {
  const faults = { cutOnce: null, corruptOnce: null, offline: false, stripCsp: false, slow: null };
  const cases = new Map();
  const log = [];
  const server = http.createServer((req, res) => {
    let body = 0;
    req.on('data', (d) => { body += d.length; });
    req.on('end', () => {
      log.push({ method: req.method, url: req.url, range: req.headers.range ?? null, body, origin: req.headers.origin ?? null });
      if (faults.offline) return req.socket.destroy();
      const file = cases.get(req.url.split('?')[0]);
      if (file) {
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Cache-Control': 'no-store' });
        return res.end(fs.readFileSync(file));
      }
      const up = http.request({ host: '127.0.0.1', port: targetPort, path: req.url, method: req.method,
        headers: req.headers }, (ur) => {
        const headers = { ...ur.headers };
        if (faults.stripCsp) delete headers['content-security-policy'];
        const p = req.url.split('?')[0];
        const cut = faults.cutOnce === p && ur.statusCode === 200;
        const corrupt = faults.corruptOnce === p && ur.statusCode === 200;
        if (cut) faults.cutOnce = null;
        if (corrupt) faults.corruptOnce = null;
        res.writeHead(ur.statusCode, headers);
        const total = Number(ur.headers['content-length'] ?? 0);
        let sent = 0;
        if (faults.slow === p && ur.statusCode < 300) {
          const pieces = [];
          ur.on('data', (d) => pieces.push(d));
          ur.on('end', () => {
            const all = Buffer.concat(pieces);
            let at = 0;
            const next = () => {
              if (res.destroyed) return;
              if (at >= all.length) return res.end();
              res.write(all.subarray(at, at + 16384));
              at += 16384;
              setTimeout(next, 100);
            };
            next();
          });
          return;
        }
        ur.on('data', (chunk) => {
          if (cut && sent + chunk.length > total / 2) {
            // Half the file, then the connection dies: the page must resume with a range request.
            res.write(chunk.subarray(0, Math.max(0, Math.floor(total / 2) - sent)));
            ur.destroy();
            setTimeout(() => res.socket?.destroy(), 50);
            sent = total;
            return;
          }
          if (corrupt && sent <= total / 2 && sent + chunk.length > total / 2) {
            chunk = Buffer.from(chunk);
            chunk[Math.floor(total / 2) - sent] ^= 0xff;
          }
          sent += chunk.length;
          res.write(chunk);
        });
        ur.on('end', () => res.end());
        ur.on('error', () => res.socket?.destroy());
      });
      up.on('error', () => res.socket?.destroy());
      up.end();
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    resolve({ port: server.address().port, faults, cases, log, stop: () => { server.closeAllConnections(); server.close(); } });
  }));
}

/** A server on another loopback address standing for "any other host": it records what reaches it. */
export function elsewhere() {
  const hits = [];
  const server = http.createServer((req, res) => {
    hits.push(`${req.method} ${req.url}`);
    res.writeHead(200, { 'Access-Control-Allow-Origin': '*' });
    res.end('leak');
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.2', () => {
    resolve({ url: `http://127.0.0.2:${server.address().port}/`, hits, stop: () => server.close() });
  }));
}

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

/** A fresh context (its own OPFS, caches, service workers) whose requests are all recorded. */
export async function context(browser) {
  const ctx = await browser.newContext();
  const requests = [];
  ctx.on('request', (r) => requests.push({ url: r.url(), method: r.method(), body: r.postDataBuffer()?.length ?? 0 }));
  ctx.on('weberror', (e) => console.error('page error:', e.error()));
  return { ctx, requests };
}

/** Waits for the app's result protocol: <html data-qoqmed-state> done or error. */
export async function result(page, timeout = 240_000) {
  await page.waitForFunction(() => ['done', 'error'].includes(document.documentElement.dataset.qoqmedState),
    null, { timeout, polling: 200 });
  const state = await page.evaluate(() => document.documentElement.dataset.qoqmedState);
  const text = await page.textContent('#qoqmed-result');
  return { state, value: text ? JSON.parse(text) : null, message: await page.textContent('#message') };
}

/** The native CLI's greedy answer for the same case; `extra` adds flags (--image, --ecg, ...). */
export function cliGenerate(model, prompt, maxNew, extra = []) {
  const out = execFileSync(QOQMED, ['generate', '--model', model, '--prompt', prompt, '--instruction', 'none',
    '--temperature', '0', '--repetition-penalty', '1', '--max-new-tokens', String(maxNew), '--json', ...extra],
  { env: { ...process.env, XDG_RUNTIME_DIR: '/tmp' } });
  return JSON.parse(out.toString());
}

export function modelFiles(model) {
  return fs.readdirSync(model).map((f) => path.join(model, f));
}

/** The link of a shared case. */
export function link(base, params) {
  const q = new URLSearchParams(params);
  return `${base}?${q}`;
}
