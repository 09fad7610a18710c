// Agents: health, last activity and the kill switch. Kill and recover both ask for a reason
// and a second tap; recover sends confirm: true, which the API requires.

import { h, replace, dl } from '../dom.js';
import { t } from '../i18n.js';
import { get, post, eventKind } from '../api.js';
import { errorBox, emptyState, loading, busy, toast, pageHead, errorText } from '../components.js';
import { when, ago } from '../format.js';

export function mount(root, ctx) {
  const listEl = h('div', { class: 'list', 'data-testid': 'agents' });
  replace(root, pageHead(t('agents.title')), listEl);

  async function load() {
    if (!listEl.childElementCount) replace(listEl, loading());
    try {
      const page = await get('/api/v1/agents');
      const items = (page && page.items) || [];
      replace(listEl, items.length ? items.map(card) : emptyState(t('agents.empty'), t('agents.empty_hint')));
    } catch (err) {
      replace(listEl, errorBox(err));
    }
  }

  function card(a) {
    const panel = h('div', { class: 'panel' });
    const msg = h('div', { class: 'card-msg', role: 'status' });
    const act = (kind) => () => {
      const reason = h('input', { type: 'text', required: true, placeholder: t('agents.reason') });
      replace(panel, h('form', {
        class: 'editor', onsubmit: (e) => {
          e.preventDefault();
          const body = kind === 'kill' ? { reason: reason.value.trim() } : { reason: reason.value.trim(), confirm: true };
          busy(e.currentTarget.querySelector('button[type=submit]'), async () => {
            await post(`/api/v1/agents/${encodeURIComponent(a.id)}/${kind}`, body);
            toast(t(`agents.${kind}_done`, { name: a.name || a.id }));
            await load();
          }, (err) => { msg.textContent = errorText(err); msg.className = 'card-msg error'; });
        },
      },
      h('p', {}, t(`agents.${kind}_confirm`, { name: a.name || a.id })),
      h('label', {}, t('agents.reason'), reason),
      h('div', { class: 'actions' },
        h('button', { type: 'submit', class: kind === 'kill' ? 'deny' : 'allow' }, t(`agents.${kind}`)),
        h('button', { type: 'button', class: 'ghost', onclick: () => replace(panel) }, t('common.cancel')))));
      reason.focus();
    };
    return h('article', { class: `card agent-card${a.killed ? ' killed' : ''}`, 'data-testid': 'agent' },
      h('div', { class: 'card-head' },
        h('strong', {}, a.name || a.id),
        h('span', { class: `badge health-${a.health}` }, t(`health.${a.health}`, {}, a.health || '')),
        a.killed ? h('span', { class: 'badge risk-critical' }, t('agents.killed')) : null),
      dl([
        [t('field.id'), a.id],
        [t('agents.last_activity'), a.last_activity ? t('agents.activity', { ago: ago(a.last_activity), time: when(a.last_activity) }) : t('common.never')],
      ]),
      h('div', { class: 'actions' }, a.killed
        ? h('button', { class: 'allow', 'data-needs': 'admin', onclick: act('recover') }, t('agents.recover'))
        : h('button', { class: 'deny', 'data-needs': 'admin', onclick: act('kill') }, t('agents.kill'))),
      panel, msg);
  }

  const onEvent = (e) => { const k = eventKind(e.detail); if (k === 'kill' || k === 'kill_switch' || k === 'agent') load(); };
  ctx.bus.addEventListener('event', onEvent);
  const poll = setInterval(load, 15000);
  load();
  return () => { ctx.bus.removeEventListener('event', onEvent); clearInterval(poll); };
}
