// The service worker: caches the app at install so that it opens and classifies offline.
// build.py puts "use strict", VERSION, SHELL (files every visitor may fetch) and KEYED (the
// model and its labels, which need the API key when `imgcls serve --api-key` serves the app)
// above this.

// One cache per app (scope) and version: several exports can share an origin, and a new
// export's files never mix with an old one's.
const CACHE = `imgcls-app ${self.registration.scope} ${VERSION}`;
const OWN_PREFIX = `imgcls-app ${self.registration.scope} `;

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    // "no-cache": revalidated with the server, so an HTTP-cached old file can't slip in.
    await cache.addAll(SHELL.map((url) => new Request(url, { cache: "no-cache" })));
    // Without the key these fail (401); the page then fetches them with its key, and the
    // fetch handler below caches them.
    await Promise.all(KEYED.map((url) =>
      cache.add(new Request(url, { cache: "no-cache" })).catch(() => undefined)));
    await self.skipWaiting();
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith(OWN_PREFIX) && name !== CACHE) await caches.delete(name);
    }
    await self.clients.claim();  // control the page that installed us, without a reload
  })());
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  // Only the app's own files: any other request (another origin, the API) goes untouched.
  if (request.method !== "GET" || !request.url.startsWith(self.registration.scope)) return;
  event.respondWith(cachedOrFetched(request));
});

// Cache first: the app's files only change with a new export, which brings a new VERSION.
async function cachedOrFetched(request) {
  const cache = await caches.open(CACHE);
  const cached = await cache.match(request, { ignoreSearch: true });
  if (cached) return cached;
  const response = await fetch(request);
  if (response.ok && response.type === "basic") await cache.put(request, response.clone());
  return response;
}
