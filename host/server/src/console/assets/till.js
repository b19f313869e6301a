// The till: a card number (typed, or scanned: a scanner types it and presses Enter), an
// offer of the program's catalogue, persons and amount where the program takes them; the
// answer large, in the program's language, and what is left.

import { api, now, requestId } from './api.js';
import { h, fill, select } from './dom.js';
import { t, has, formatRenewal, locale } from './i18n.js';

export function render(main, ctx) {
  const p = ctx.program;
  const actions = tillActions(ctx);
  const card = h('input', { id: 'till-card', class: 'big', required: true, autocomplete: 'off', autofocus: true, spellcheck: 'false', inputmode: 'text' });
  const offer = select({ id: 'till-offer' }, p.offers.map((o) => [o.id, o.provider && o.provider !== o.name ? `${o.name} — ${o.provider}` : o.name]));
  const action = select({ id: 'till-action' }, actions.map((a) => [a, a]), actions[0]);
  const party = h('input', { id: 'till-party', type: 'number', min: 1, value: '1', inputmode: 'numeric' });
  const takesAmount = p.assets.length > 0;
  const amount = h('input', { id: 'till-amount', type: 'number', min: 1, step: 1, inputmode: 'numeric' });
  const answer = h('div', { id: 'till-answer', 'aria-live': 'assertive' });
  const form = h('form', { id: 'till-form', onsubmit: (e) => { e.preventDefault(); ask(); } },
    h('label', {}, t('card'), card, h('small', {}, t('cardHelp'))),
    h('div', { class: 'grid' },
      h('label', {}, t('offer'), offer),
      actions.length > 1 ? h('label', {}, t('action'), action) : null,
      h('label', {}, t('party'), party),
      takesAmount ? h('label', {}, t('amount'), amount, h('small', {}, t('amountHelp'))) : null),
    h('button', { class: 'primary', type: 'submit', id: 'till-submit' }, t('check')));
  main.append(h('section', { class: 'panel' }, h('h2', {}, `${t('till')} — ${p.name}`), form), answer);
  card.focus();

  async function ask() {
    const request = {
      program: p.program,
      card: card.value.trim(),
      action: action.value,
      offer: offer.value,
      at: now(),
      id: requestId(),
      language: ctx.language,
    };
    const persons = Number(party.value);
    if (persons > 1) request.party = persons;
    if (takesAmount && amount.value !== '') request.amount = Number(amount.value);
    fill(answer, h('p', { class: 'muted' }, '…'));
    try {
      const decision = await api.decide(request);
      let limits = [];
      if (p.allowances['per-offer'].includes(request.action)) {
        limits = await remaining(p, request, ctx.language);
      }
      fill(answer, decisionPanel(decision, limits, p, offerName(p, request.offer)));
    } catch (e) {
      fill(answer, h('p', { class: 'panel error', role: 'alert' }, e.message));
    }
    card.focus();
    card.select();
  }
}

/** The actions a till asks: those the program's allowances ask per offer, else all the
 *  policy's; only those the token may ask. */
function tillActions(ctx) {
  const p = ctx.program;
  let actions = p.allowances['per-offer'].length ? p.allowances['per-offer'] : p.actions;
  const allowed = ctx.caller.actions;
  if (allowed) {
    const kept = actions.filter((a) => allowed.includes(a));
    actions = kept.length ? kept : allowed;
  }
  return actions;
}

function offerName(p, id) {
  const offer = p.offers.find((o) => o.id === id);
  return offer ? offer.name : id;
}

/** The counting rules of the card's allowance for the offer and action, after the answer. */
async function remaining(p, request, language) {
  try {
    const answer = await api.allowances(p.program, request.card, { offer: request.offer, action: request.action, language });
    const entry = answer.allowances.find((a) => a.offer === request.offer && a.action === request.action);
    return (entry && entry.limits) || [];
  } catch {
    return [];
  }
}

/** A decision, large: allowed or denied, the message, admitted, price, notes, balances
 *  and what is left. */
export function decisionPanel(decision, limits, program, what) {
  const allowed = decision.allow;
  return h('section', { class: `answer ${allowed ? 'allowed' : 'denied'}`, id: 'answer', role: 'status' },
    h('p', { class: 'verdict' }, allowed ? `✓ ${t('allowed')}` : `✗ ${t('denied')}`),
    what ? h('p', { class: 'muted' }, what) : null,
    h('p', { class: 'message', id: 'answer-message' }, decision.message),
    h('div', { class: 'facts' },
      allowed ? h('span', {}, `${t('admitted')}: `, h('strong', {}, String(decision.admitted))) : null,
      decision.price !== null && decision.price !== undefined ? h('span', {}, `${t('price')}: `, h('strong', {}, money(decision.price, program))) : null,
      Object.keys(decision.balances || {}).length ? h('span', {}, `${t('balances')}: `, h('strong', {}, Object.entries(decision.balances).map(([a, u]) => balance(a, u)).join(', '))) : null,
      h('span', { class: 'muted' }, decision.reason)),
    (decision.notes || []).length ? h('div', { id: 'answer-notes' }, decision.notes.map((n) => h('span', { class: 'note' }, has(`note:${n}`) ? t(`note:${n}`) : n))) : null,
    limits.map((limit) => leftLine(limit, program)));
}

/** "1 of 4 left — yearly-limit, renews 1 January 2025". A program with a currency counts
 *  money in its limits (Albertslund's daily limit and funds, in øre): shown as money. */
export function leftLine(limit, program) {
  const show = (n) => money(n, program);
  return h('p', { class: 'left' },
    t('left', { remaining: show(limit.remaining), limit: show(limit.limit) }),
    h('span', { class: 'muted' }, ` — ${limit.rule}`),
    limit.until ? `, ${t('renews', { date: formatRenewal(limit.until, program['time-zone']) })}` : '');
}

/** The program's currency: its first asset named like one (`DKK`, `EUR`), if any. */
function currencyOf(program) {
  return (program.assets || []).find((a) => /^[A-Z]{3}$/.test(a));
}

/** Minor units as money in `currency` ("kr. 75,00"), or the plain number without one. */
function inCurrency(units, currency) {
  if (!currency) return units.toLocaleString(locale());
  try {
    return new Intl.NumberFormat(locale(), { style: 'currency', currency }).format(units / 100);
  } catch {
    return `${currency} ${units.toLocaleString(locale())}`;
  }
}

/** A price in minor units: as money when the program has a currency. */
export function money(units, program) {
  return inCurrency(units, currencyOf(program));
}

/** A balance: money for a currency, else the asset's units ("saving 40"). */
export function balance(asset, units) {
  return /^[A-Z]{3}$/.test(asset) ? inCurrency(units, asset) : `${asset} ${units.toLocaleString(locale())}`;
}
