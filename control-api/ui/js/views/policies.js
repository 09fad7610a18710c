// Policies: the serving bundle (revision, files, load time, last reload error), reload, and a
// dry run of the decision for an input the author pastes. Not a list, so not a listPage.

import { h, replace, dl, pre } from '../dom.js';
import { t } from '../i18n.js';
import { get, post } from '../api.js';
import { errorBox, loading, busy, toast, pageHead, statusBadge, riskBadge, cardMsg, setMsg, errorText } from '../components.js';
import { when } from '../format.js';

const SAMPLE = {
  version: 1,
  kind: 'exec',
  agent: 'main',
  exec: { command: 'rm -rf /tmp/build', argv: ['rm', '-rf', '/tmp/build'], cwd: '/home/agent/work' },
};

export function mount(root) {
  const statusEl = h('div', { 'data-testid': 'policy-status' });
  const input = h('textarea', { rows: 10, class: 'mono', spellcheck: 'false', 'data-testid': 'eval-input', value: JSON.stringify(SAMPLE, null, 2) });
  const resultEl = h('div', { 'data-testid': 'eval-result' });
  const reloadMsg = cardMsg();

  const reload = h('button', {
    class: 'primary', 'data-testid': 'policy-reload', 'data-needs': 'admin', onclick: (e) => busy(e.currentTarget, async () => {
      const st = await post('/api/v1/policies/reload', {});
      setMsg(reloadMsg, '');
      toast(() => t('policies.reloaded', { rev: st.revision }));
      drawStatus(st);
    }, (err) => setMsg(reloadMsg, errorText(err), 'error')),
  }, t('policies.reload'));

  const evalForm = h('form', {
    class: 'card', onsubmit: (e) => {
      e.preventDefault();
      let value;
      try { value = JSON.parse(input.value); } catch (err) {
        replace(resultEl, errorBox({ title: t('policies.bad_json'), detail: err.message }));
        return;
      }
      busy(e.currentTarget.querySelector('button'), async () => {
        const d = await post('/api/v1/policies/eval', value);
        replace(resultEl, h('div', { class: 'decision' },
          h('div', { class: 'card-head' }, statusBadge(d.action), riskBadge(d.risk), d.rule ? h('code', {}, d.rule) : null),
          d.reason ? h('p', {}, d.reason) : null,
          pre(d)));
      }, (err) => replace(resultEl, errorBox(err)));
    },
  },
  h('h2', {}, t('policies.eval_title')),
  h('p', { class: 'muted' }, t('policies.eval_hint')),
  input,
  h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', 'data-testid': 'eval-run' }, t('policies.eval_run'))),
  resultEl);

  replace(root, pageHead(t('policies.title'), reload), reloadMsg, statusEl, evalForm);

  function drawStatus(st) {
    replace(statusEl, h('section', { class: 'card' },
      dl([
        [t('policies.revision'), h('code', { 'data-testid': 'policy-revision' }, st.revision)],
        [t('policies.source'), st.source],
        [t('policies.loaded_at'), when(st.loaded_at)],
        [t('policies.files'), h('ul', { class: 'files' }, (st.files || []).map((f) => h('li', {}, h('code', {}, f))))],
      ]),
      st.last_error ? errorBox({ title: t('policies.last_error'), detail: st.last_error }) : null));
  }

  (async () => {
    replace(statusEl, loading());
    try { drawStatus(await get('/api/v1/policies')); } catch (err) { replace(statusEl, errorBox(err)); }
  })();
  return null;
}
