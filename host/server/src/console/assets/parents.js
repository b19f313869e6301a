// The parents' portal: their cards only (the token's `cards`), each with its balance and
// what is left, a top-up, the settings the schema marks `guardian = true`, a lost card
// blocked, and the statement over a period.

import { api, now, requestId } from './api.js';
import { h, fill, facts } from './dom.js';
import { t } from './i18n.js';
import { attributeFields, attributeValue, clearErrors, showError } from './forms.js';
import { statement } from './statement.js';
import { balance, leftLine } from './till.js';

export function render(main, ctx) {
  const cards = ctx.caller.cards || [];
  main.append(h('h2', {}, t('myCards')));
  for (const card of cards) {
    const place = h('div', { 'data-card': card });
    main.append(place);
    show(place, ctx, card);
  }
}

async function show(place, ctx, card) {
  const p = ctx.program;
  let view;
  try {
    view = await api.card(p.program, card);
  } catch (e) {
    fill(place, h('p', { class: 'panel error' }, `${card}: ${e.message}`));
    return;
  }
  const may = (action) => !ctx.caller.actions || ctx.caller.actions.includes(action);
  const message = h('p', { role: 'status', class: 'parents-result' });
  const decide = async (request) => {
    try {
      const decision = await api.decide({ program: p.program, card, at: now(), id: requestId(), language: ctx.language, ...request });
      fill(message, h('span', { class: decision.allow ? 'pass' : 'fail' }, decision.message));
      if (decision.allow) setTimeout(() => show(place, ctx, card), 600);
    } catch (e) {
      fill(message, h('span', { class: 'error' }, e.message));
    }
  };

  const amount = h('input', { id: `topup-${card}`, type: 'number', min: 1, inputmode: 'numeric' });
  const topUp = may('top-up') && p.actions.includes('top-up')
    ? h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); decide({ action: 'top-up', amount: Number(amount.value) }); } },
      h('label', {}, `${t('amount')} (${t('amountHelp')})`, amount),
      h('button', { class: 'primary', type: 'submit' }, t('topUp')))
    : null;

  const schema = p.schema.holder || {};
  const keys = Object.keys(schema).filter((k) => schema[k].guardian).sort();
  const general = h('p', { class: 'error', role: 'alert' });
  const settings = keys.length ? h('form', { class: 'settings', novalidate: true, 'data-card': card, onsubmit: save },
    h('div', { class: 'grid' }, attributeFields(schema, keys, view.attributes)),
    general,
    h('button', { class: 'primary', type: 'submit', id: `settings-save-${card}` }, t('save'))) : null;
  async function save(e) {
    e.preventDefault();
    clearErrors(settings);
    fill(general);
    const attributes = {};
    for (const key of keys) attributes[key] = attributeValue(schema[key], settings.querySelector(`#attr-${CSS.escape(key)}`));
    try {
      await api.patch(p.program, card, attributes);
      fill(message, h('span', { class: 'pass' }, t('saved')));
      setTimeout(() => show(place, ctx, card), 600);
    } catch (error) {
      showError(settings, general, error.message);
    }
  }

  let confirming = false;
  const block = may('block-card') && p.actions.includes('block-card') && view.state !== 'blocked'
    ? h('button', { type: 'button', onclick: (e) => {
      if (!confirming) {
        confirming = true;
        e.target.textContent = t('confirmBlock', { card });
        return;
      }
      decide({ action: 'block-card' });
    } }, t('blockLost'))
    : null;

  let left = [];
  try {
    const answer = await api.allowances(p.program, card, { language: ctx.language });
    left = answer.allowances.filter((a) => a.offer === null).concat(answer.allowances.filter((a) => a.offer !== null).slice(0, 1));
  } catch {
    left = [];
  }

  fill(place,
    h('section', { class: 'panel', id: `card-${card}` },
      h('h2', {}, card),
      facts([
        [t('state'), t(view.state)],
        [t('balances'), Object.entries(view.balances).map(([a, u]) => balance(a, u)).join(', ') || '—'],
      ]),
      left.length ? h('h3', {}, t('allowances')) : null,
      left.map((a) => h('div', {}, h('strong', {}, a.action), ' ', h('span', { class: a.allow ? 'pass' : 'fail' }, a.message),
        (a.limits || []).map((limit) => leftLine(limit, p)))),
      topUp,
      settings ? h('h3', {}, t('settings')) : null,
      settings,
      block,
      message),
    statement(ctx, card));
}
