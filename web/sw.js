// Offline after one visit: the app's own files are kept in Cache Storage and served from there
// when the network is gone (network first, so a new deployment is picked up at once). Models live
// in OPFS (download.js); nothing else is cached, and requests to other paths pass untouched.
const VERSION = '__VERSION__';
const SHELL = __SHELL__;
const CACHE = `qoqmed-app-${VERSION}`;

self.addEventListener('install', (e) => {
  e.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (e) => {
  e.waitUntil((async () => {
    for (const k of await caches.keys()) if (k !== CACHE) await caches.delete(k);
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== 'GET' || url.origin !== location.origin) return;
  const scope = new URL(self.registration.scope);
  const path = url.pathname.startsWith(scope.pathname) ? url.pathname.slice(scope.pathname.length) : null;
  const key = path === '' ? './' : path;
  if (key === null || !SHELL.includes(key)) return;
  e.respondWith((async () => {
    try {
      const fresh = await fetch(e.request);
      if (fresh.ok) {
        const c = await caches.open(CACHE);
        await c.put(new URL(key, scope).href, fresh.clone());
      }
      return fresh;
    } catch (err) {
      const hit = await caches.match(new URL(key, scope).href);
      if (hit) return hit;
      throw err;
    }
  })());
});
