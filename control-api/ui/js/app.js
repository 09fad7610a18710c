// The console's shell: sign-in, navigation (hash routes), language switch, and the one live
// event stream that every page listens to through `ctx.bus`.

import { h, replace, select } from './dom.js';
import { t, lang, setLang, LANGS } from './i18n.js';
import { session, onUnauthorized, get } from './api.js';
import { subscribe } from './sse.js';
import { errorText, retranslateToasts } from './components.js';
import * as approvals from './views/approvals.js';
import * as grants from './views/grants.js';
import * as audit from './views/audit.js';
import * as budgets from './views/budgets.js';
import * as cost from './views/cost.js';
import * as cron from './views/cron.js';
import * as reports from './views/reports.js';
import * as policies from './views/policies.js';
import * as agents from './views/agents.js';
import * as notifications from './views/notifications.js';
import * as mcp from './views/mcp.js';
import * as backups from './views/backups.js';
import * as fleet from './views/fleet.js';
import { registerWorker } from './push.js';

const VIEWS = { approvals, grants, audit, budgets, cost, cron, reports, policies, agents, mcp, backups, notifications, fleet };
/** Tabs shown only when the sidecar runs them (fleet mode: `[fleet]` in its config). */
const OPTIONAL = new Set(['fleet']);
const bus = new EventTarget();
let live = 'connecting';
let stopEvents = null;
let unmount = null;
let signInNotice = '';
/** The signed-in token's name and role (`/api/v1/whoami`); null until known. */
let me = null;

const ctx = {
  bus,
  live: () => live,
  navigate: (hash) => { location.hash = hash; },
  /** Fleet mode: true once GET /api/v1/fleet/sidecars answered, false when it did not. */
  fleet: null,
};

/** Learn whether this sidecar is in a fleet (its fleet routes answer), then show the tab. */
async function loadFleet() {
  try {
    await get('/api/v1/fleet/sidecars', { noRedirect: true });
    ctx.fleet = true;
  } catch {
    ctx.fleet = false;
  }
  const tab = document.querySelector('[data-testid="nav-fleet"]');
  if (tab) tab.hidden = !ctx.fleet;
}

function startEvents() {
  if (stopEvents) return;
  stopEvents = subscribe({
    onEvent: (ev) => bus.dispatchEvent(new CustomEvent('event', { detail: ev })),
    onState: (state) => {
      live = state;
      if (state === 'unauthorized') { signOut(t('signin.rejected')); return; }
      const el = document.getElementById('live');
      if (el) updateLive(el);
      bus.dispatchEvent(new CustomEvent('live', { detail: state }));
    },
  });
}

function updateLive(el) {
  el.className = `live live-${live}`;
  el.textContent = t(`live.${live}`);
  el.title = t(`live.${live}_hint`);
}

/** Show who is signed in, and let the stylesheet hide what the role may not do (`data-needs`). */
function applyIdentity() {
  document.body.dataset.role = me ? me.role : '';
  const el = document.getElementById('whoami');
  if (el) el.textContent = me ? `${me.name} · ${t(`role.${me.role}`)}` : '';
}

async function loadIdentity() {
  try {
    me = await get('/api/v1/whoami', { noRedirect: true });
  } catch {
    // Role unknown (the request failed): offer every action; the server still refuses with 403.
    me = null;
  }
  applyIdentity();
}

function signOut(notice) {
  session.clear();
  me = null;
  ctx.fleet = null;
  applyIdentity();
  if (stopEvents) { stopEvents(); stopEvents = null; }
  signInNotice = notice || '';
  if (location.hash) history.replaceState(null, '', location.pathname);
  render();
}

onUnauthorized((err) => signOut(`${t('signin.rejected')} ${err.detail || ''}`.trim()));

function langPicker() {
  return select(
    { class: 'lang', 'aria-label': t('nav.language'), 'data-testid': 'lang', onchange: (e) => { setLang(e.target.value); render(); } },
    LANGS.map((l) => [l.code, l.label]), lang());
}

function renderSignIn(root) {
  const input = h('input', {
    type: 'password', id: 'token', name: 'token', autocomplete: 'off', autocapitalize: 'off', spellcheck: 'false',
    required: true, placeholder: 'cbt_…', 'data-testid': 'token',
  });
  const msg = h('div', { class: 'form-msg', role: 'alert' }, signInNotice);
  const button = h('button', { type: 'submit', class: 'primary big', 'data-testid': 'signin' }, t('signin.submit'));
  const form = h('form', {
    class: 'signin card',
    onsubmit: async (e) => {
      e.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      button.disabled = true;
      msg.textContent = '';
      session.set(token);
      try {
        me = await get('/api/v1/whoami', { noRedirect: true });
        signInNotice = '';
        render();
      } catch (err) {
        session.clear();
        msg.textContent = err.status === 401
          ? `${t('signin.bad_token')} ${err.detail || ''}`.trim()
          : errorText(err);
      } finally {
        button.disabled = false;
      }
    },
  },
  h('div', { class: 'brand big' }, h('img', { src: '/ui/icon.svg', alt: '', width: 40, height: 40 }), 'ClawButler'),
  h('h1', {}, t('signin.title')),
  h('p', { class: 'muted' }, t('signin.hint')),
  h('label', { for: 'token' }, t('signin.token')),
  input, msg, button,
  h('p', { class: 'muted small' }, t('signin.storage')),
  h('div', { class: 'signin-lang' }, langPicker()));
  replace(root, h('div', { class: 'signin-wrap' }, form));
  input.focus();
}

function currentView() {
  const name = location.hash.replace(/^#\/?/, '').split(/[/?]/)[0];
  return VIEWS[name] ? name : 'approvals';
}

function render() {
  const root = document.getElementById('app');
  document.documentElement.lang = lang();
  document.title = t('app.title');
  retranslateToasts();
  if (unmount) { unmount(); unmount = null; }
  if (!session.token) { renderSignIn(root); return; }
  startEvents();
  const view = currentView();
  const liveEl = h('span', { id: 'live', 'data-testid': 'live' });
  updateLive(liveEl);
  const nav = h('nav', { class: 'tabs', 'aria-label': t('nav.label') },
    Object.keys(VIEWS).map((name) => h('a', {
      href: `#/${name}`, class: name === view ? 'active' : '', 'aria-current': name === view ? 'page' : null,
      'data-testid': `nav-${name}`, hidden: OPTIONAL.has(name) && !ctx.fleet,
    }, t(`nav.${name}`))));
  const header = h('header', { class: 'top' },
    h('div', { class: 'topbar' },
      h('a', { class: 'brand', href: '#/approvals', 'aria-label': 'ClawButler' }, h('img', { src: '/ui/icon.svg', alt: '', width: 28, height: 28 }), h('span', { class: 'brand-name' }, 'ClawButler')),
      liveEl,
      h('div', { class: 'spacer' }),
      h('span', { id: 'whoami', class: 'whoami muted', 'data-testid': 'whoami' }),
      langPicker(),
      h('button', { class: 'ghost', 'data-testid': 'signout', onclick: () => signOut('') }, t('nav.signout'))),
    nav);
  const main = h('main', { id: 'main', 'data-view': view });
  replace(root, header, main);
  if (me) applyIdentity(); else loadIdentity();
  if (ctx.fleet === null) loadFleet();
  unmount = VIEWS[view].mount(main, ctx) || null;
}

window.addEventListener('hashchange', render);
// The service worker shows Web Push notifications and makes the console installable.
registerWorker();
render();
