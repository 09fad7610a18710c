// Web Push on this device: the service worker (/sw.js) shows what the sidecar pushes; this
// module registers it, asks the browser for a push subscription under the sidecar's VAPID key,
// and hands the subscription to the sidecar (POST /api/v1/notifications/push/subscriptions).
// On a phone, push works once the console is installed to the home screen (the manifest
// makes it installable).

import { post, del } from './api.js';

/** Whether this browser can receive Web Push at all. */
export function pushSupported() {
  return 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window;
}

/** Register the service worker (also what makes the console installable). */
export function registerWorker() {
  if (!('serviceWorker' in navigator)) return Promise.resolve(null);
  return navigator.serviceWorker.register('/sw.js', { scope: '/' }).catch(() => null);
}

function keyBytes(b64) {
  const s = b64.replace(/-/g, '+').replace(/_/g, '/');
  const raw = atob(s + '='.repeat((4 - (s.length % 4)) % 4));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

/** This browser's current push subscription, or null. */
export async function currentSubscription() {
  if (!pushSupported()) return null;
  const reg = await navigator.serviceWorker.getRegistration('/');
  return reg ? reg.pushManager.getSubscription() : null;
}

/** Ask permission, subscribe under `publicKey` and register with the sidecar. */
export async function subscribeDevice(publicKey, label) {
  const permission = await Notification.requestPermission();
  if (permission !== 'granted') throw new Error(permission);
  await registerWorker();
  const reg = await navigator.serviceWorker.ready;
  let sub = await reg.pushManager.getSubscription();
  if (!sub) sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(publicKey) });
  const body = sub.toJSON();
  if (label) body.label = label;
  return post('/api/v1/notifications/push/subscriptions', body);
}

/** Remove a registered subscription (and this browser's own, when it is this one). */
export async function unsubscribeDevice(id, isThisDevice) {
  await del(`/api/v1/notifications/push/subscriptions/${encodeURIComponent(id)}`);
  if (isThisDevice) {
    const sub = await currentSubscription();
    if (sub) await sub.unsubscribe();
  }
}
