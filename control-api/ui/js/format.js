// Numbers, times and durations in the chosen language.

import { lang, t } from './i18n.js';

/** Local date and time of an RFC 3339 string (or '' if absent). */
export function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toLocaleString(lang(), { dateStyle: 'medium', timeStyle: 'medium' });
}

/** "3 min ago" style age of an RFC 3339 string. */
export function ago(iso) {
  if (!iso) return t('common.never');
  const s = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (Number.isNaN(s)) return String(iso);
  const rtf = new Intl.RelativeTimeFormat(lang(), { numeric: 'auto' });
  if (Math.abs(s) < 60) return rtf.format(-s, 'second');
  if (Math.abs(s) < 3600) return rtf.format(-Math.round(s / 60), 'minute');
  if (Math.abs(s) < 86400) return rtf.format(-Math.round(s / 3600), 'hour');
  return rtf.format(-Math.round(s / 86400), 'day');
}

/** Seconds as a compact countdown: 1:05:09, 4:07, 0:09. */
export function countdown(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh > 0 ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

/** US dollars; small amounts keep 4 decimals so a $0.0031 call is not shown as $0.00. */
export function usd(n) {
  if (n == null || Number.isNaN(Number(n))) return '';
  const v = Number(n);
  const digits = v !== 0 && Math.abs(v) < 1 ? 4 : 2;
  return new Intl.NumberFormat(lang(), {
    style: 'currency', currency: 'USD', minimumFractionDigits: digits, maximumFractionDigits: digits,
  }).format(v);
}

/** An RFC 3339 string from a <input type="datetime-local"> value ('' stays ''). */
export function localToIso(v) {
  if (!v) return '';
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}

/** One line describing what an audit record or approval subject is about. */
export function subjectLine(subject) {
  if (!subject || typeof subject !== 'object') return subject ? String(subject) : '';
  if (subject.command) return subject.command;
  if (typeof subject.rollback === 'string') return subject.rollback;
  if (typeof subject.import === 'string') return subject.import;
  if (typeof subject.model_change === 'string') return subject.model_change;
  if (Array.isArray(subject.argv)) return subject.argv.join(' ');
  if (subject.tool || subject.name && subject.server) {
    return `${subject.server ? `${subject.server}/` : ''}${subject.tool || subject.name}`;
  }
  const model = subject.model && typeof subject.model === 'object' ? subject.model : subject;
  const parts = [];
  if (model.upstream) parts.push(model.upstream);
  if (model.name || typeof subject.model === 'string') parts.push(model.name || subject.model);
  if (model.endpoint) parts.push(`(${model.endpoint})`);
  return parts.join(' ') || JSON.stringify(subject).slice(0, 120);
}

/** A size in bytes, in the unit a person reads. */
export function bytes(n) {
  if (n == null) return '';
  if (n < 1024) return t('unit.bytes', { n });
  return t('unit.kib', { n: (n / 1024).toFixed(1) });
}
