// Tiny DOM helpers. Text always goes in through textContent (never innerHTML), so nothing an
// agent puts in a prompt or command can become markup in the approver's browser.

const PROPS = new Set(['value', 'checked', 'disabled', 'selected', 'indeterminate', 'open']);

/** Create an element: h('button', {class: 'x', onclick: fn}, 'text', child, [more]). */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (PROPS.has(k)) el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

/** Append children, skipping null/false and flattening arrays. */
export function append(el, children) {
  for (const c of [children].flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** Replace all children. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A definition list from [label, value] pairs; empty values are left out. */
export function dl(pairs, cls) {
  const out = h('dl', { class: cls || 'kv' });
  for (const [k, v] of pairs) {
    if (v == null || v === '') continue;
    out.append(h('dt', {}, k), h('dd', {}, v));
  }
  return out;
}

/** A <select> from [value, label] pairs. */
export function select(props, options, current) {
  return h('select', props, options.map(([v, label]) => h('option', { value: v, selected: v === current }, label)));
}

/** Pretty JSON in a <pre>. */
export function pre(value, cls) {
  const text = typeof value === 'string' ? value : JSON.stringify(value, null, 2);
  return h('pre', { class: cls || 'code' }, text);
}
