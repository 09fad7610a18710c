// The console's service worker (served at /sw.js so it controls the whole console): shows the
// Web Push notifications the sidecar sends and opens the page a tap asks for. It caches
// nothing: the console always talks to the live sidecar. The payload is the small JSON object
// the push channel sends ({title, body, url, tag, risk, event}); its text comes from the server.

self.addEventListener('install', () => { self.skipWaiting(); });
self.addEventListener('activate', (event) => { event.waitUntil(self.clients.claim()); });

self.addEventListener('push', (event) => {
  let data = {};
  try { data = event.data ? event.data.json() : {}; } catch { data = {}; }
  const urgent = data.risk === 'high' || data.risk === 'critical' || String(data.event || '').startsWith('approval.');
  event.waitUntil(self.registration.showNotification(data.title || 'ClawButler', {
    body: data.body || '',
    tag: data.tag || undefined,
    renotify: Boolean(data.tag),
    requireInteraction: urgent,
    icon: '/ui/icon.svg',
    badge: '/ui/icon.svg',
    data: { url: data.url || '/' },
  }));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const url = (event.notification.data && event.notification.data.url) || '/';
  event.waitUntil((async () => {
    // Only our own pages: a link elsewhere is not opened from a notification.
    const target = new URL(url, self.location.origin);
    if (target.origin !== self.location.origin) return;
    const wins = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    for (const w of wins) {
      if ('focus' in w && new URL(w.url).origin === target.origin && !target.pathname.startsWith('/n/')) {
        await w.navigate(target.href);
        return w.focus();
      }
    }
    return self.clients.openWindow(target.href);
  })());
});
