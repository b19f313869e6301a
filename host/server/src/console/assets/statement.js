// A card's statement (GET …/cards/{card}/history), over a period, page by page; and for
// a decision, why (GET …/history/{seq}/why): its checks with used, limit and until, and
// what the policy read.

import { api } from './api.js';
import { h, fill } from './dom.js';
import { t, formatTime } from './i18n.js';
import { balance } from './till.js';

/** The statement of `card`, with a period and a "why" for each decision. */
export function statement(ctx, card) {
  const p = ctx.program;
  const since = h('input', { type: 'date', id: 'statement-since' });
  const until = h('input', { type: 'date', id: 'statement-until' });
  const body = h('tbody', {});
  const more = h('button', { type: 'button', hidden: true, id: 'statement-more' }, t('more'));
  const why = h('div', { id: 'why' });
  const error = h('p', { class: 'error', role: 'alert' });
  let next = null;

  async function load(append) {
    fill(error);
    try {
      const page = await api.history(p.program, card, {
        since: since.value ? `${since.value}T00:00:00Z` : '',
        until: until.value ? `${until.value}T00:00:00Z` : '',
        after: append ? next : '',
        limit: 50,
      });
      if (!append) fill(body);
      for (const entry of page.entries) body.append(row(entry));
      next = page.next;
      more.hidden = !next;
    } catch (e) {
      fill(error, e.message);
    }
  }

  function row(entry) {
    const what = entry.kind === 'registered' ? t('registered')
      : [entry.action, entry.offer ? offerName(p, entry.offer) : null, entry.amount, entry.kind === 'replaced' ? t('replaced', { card: entry['new-card'] }) : null]
        .filter((x) => x !== null && x !== undefined).join(' · ');
    const outcome = entry.kind === 'registered' ? '' : [
      h('span', { class: entry.allow ? 'pass' : 'fail' }, entry.allow ? '✓' : '✗'), ' ',
      entry.message || '', ' ', h('span', { class: 'muted' }, entry.reason)];
    const button = entry.kind === 'registered' ? null : h('button', {
      type: 'button', class: 'why', 'data-seq': entry.seq,
      onclick: () => explain(entry.seq),
    }, t('why'));
    return h('tr', { 'data-seq': entry.seq },
      h('td', {}, formatTime(entry.at, p['time-zone'])),
      h('td', { class: 'mono' }, entry.card),
      h('td', {}, what),
      h('td', {}, outcome),
      h('td', {}, Object.entries(entry.balances || {}).map(([a, u]) => balance(a, u)).join(', ')),
      h('td', {}, button));
  }

  async function explain(seq) {
    fill(why, '…');
    try {
      fill(why, whyPanel(await api.why(p.program, card, seq, ctx.language), p));
      why.scrollIntoView({ block: 'nearest' });
    } catch (e) {
      fill(why, h('p', { class: 'error' }, e.message));
    }
  }

  load(false);
  return h('section', { class: 'panel', id: 'statement' },
    h('h2', {}, `${t('statement')} — ${card}`),
    h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); load(false); } },
      h('label', {}, t('since'), since), h('label', {}, t('until'), until),
      h('button', { type: 'submit' }, t('show'))),
    error,
    h('table', {}, h('thead', {}, h('tr', {}, [t('when'), t('card'), t('what'), t('outcome'), t('balances'), ''].map((c) => h('th', {}, c)))), body),
    more, why);
}

function offerName(p, id) {
  const offer = p.offers.find((o) => o.id === id);
  return offer ? offer.name : id;
}

/** An entry explained: the decision as recorded and again with its checks and reads. */
export function whyPanel(why, p) {
  const d = why.explained;
  return h('section', { class: 'panel', id: 'why-panel' },
    h('h3', {}, `${t('why')} #${why.seq}`),
    h('p', {}, `${t('recorded')}: `, h('strong', { class: why.recorded.allow ? 'pass' : 'fail' }, why.recorded.reason), ` — ${why.recorded.message}`),
    h('p', {}, `${t('explained')}: `, h('strong', { class: d.allow ? 'pass' : 'fail' }, d.reason), ` — ${d.message}`),
    why['same-version'] ? null : h('p', { class: 'error' }, t('otherVersion')),
    h('h3', {}, t('checks')),
    h('table', { id: 'why-checks' },
      h('thead', {}, h('tr', {}, [t('rule'), '', t('reason'), t('used'), t('limit'), t('untilCol')].map((c) => h('th', {}, c)))),
      h('tbody', {}, (d.checks || []).map((c) => h('tr', {},
        h('td', {}, c.rule),
        h('td', { class: c.passed ? 'pass' : 'fail' }, c.passed ? `✓ ${t('held')}` : `✗ ${t('failed')}`),
        h('td', {}, c.reason),
        h('td', { class: 'num' }, c.used ?? ''),
        h('td', { class: 'num' }, c.limit ?? ''),
        h('td', {}, c.until ? formatTime(c.until, p['time-zone']) : ''))))),
    h('h3', {}, t('reads')),
    h('table', { id: 'why-reads' },
      h('tbody', {}, (d.reads || []).map((r) => h('tr', {},
        h('td', { class: 'mono' }, r.call),
        h('td', { class: 'mono' }, JSON.stringify(r.args)),
        h('td', { class: 'mono' }, JSON.stringify(r.answer)))))));
}
