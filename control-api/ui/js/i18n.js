// UI strings. Every visible word comes from the language tables in js/lang/ (one module per
// language), in every language: add a key to each table at once (control-api/src/ui_checks
// fails on a key missing from one table, on a t('key') that no table has, and on literal text
// in the views). Placeholders are {name}. Should a key still be missing at run time, English is
// shown rather than a raw key.

import { en } from './lang/en.js';
import { zh } from './lang/zh-CN.js';

/** Languages offered in the switcher. */
export const LANGS = [{ code: 'en', label: 'English' }, { code: 'zh-CN', label: '简体中文' }];
const TABLES = { en, 'zh-CN': zh };
const LANG_KEY = 'clawbutler.lang';

function initial() {
  const saved = localStorage.getItem(LANG_KEY);
  if (saved && TABLES[saved]) return saved;
  return (navigator.language || '').toLowerCase().startsWith('zh') ? 'zh-CN' : 'en';
}

let current = initial();

/** The current language code. */
export function lang() { return current; }

/** Switch language (remembered in localStorage; the caller re-renders). */
export function setLang(code) {
  if (!TABLES[code]) return;
  current = code;
  localStorage.setItem(LANG_KEY, code);
}

/** The string for `key` with `{name}` placeholders filled; `fallback` if no table has it. */
export function t(key, vars = {}, fallback) {
  let s = TABLES[current][key] ?? en[key];
  if (s === undefined) s = fallback !== undefined ? String(fallback) : key;
  return s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] !== undefined ? String(vars[k]) : m));
}
