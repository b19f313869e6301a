// The registration desk: find a card; register or change a holder with the form the
// program's schema gives; block, unblock or replace a card; its statement with balances,
// and for any entry, why.

import { api, now, requestId } from './api.js';
import { h, fill, facts } from './dom.js';
import { t } from './i18n.js';
import { holderForm } from './forms.js';
import { statement } from './statement.js';
import { balance } from './till.js';

export function render(main, ctx) {
  const p = ctx.program;
  const search = h('input', { id: 'desk-card', required: true, autocomplete: 'off', autofocus: true, spellcheck: 'false' });
  const found = h('div', { id: 'desk-found' });
  const registration = h('div', { id: 'desk-register' });
  main.append(
    h('section', { class: 'panel' }, h('h2', {}, `${t('desk')} — ${p.name}`),
      h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); find(search.value.trim()); } },
        h('label', {}, t('card'), search),
        h('button', { class: 'primary', type: 'submit', id: 'desk-find' }, t('find')))),
    found, registration);
  showForm(null);
  search.focus();

  function showForm(holder) {
    fill(registration, h('section', { class: 'panel' }, h('h2', {}, t('register')),
      holderForm(ctx, holder, (view) => find(view.card),
        (card, body) => api.register(p.program, card, body))));
  }

  async function find(card) {
    fill(found);
    let view;
    try {
      view = await api.card(p.program, card);
    } catch (e) {
      fill(found, h('p', { class: 'panel error', role: 'alert' }, e.status === 404 ? `${t('cardNotFound')} ${e.message}` : e.message));
      return;
    }
    fill(found, cardPanel(view), statement(ctx, card));
  }

  function cardPanel(view) {
    const message = h('p', { role: 'status', id: 'desk-action-result' });
    const act = async (request) => {
      try {
        const decision = await api.decide({ program: p.program, card: view.card, at: now(), id: requestId(), language: ctx.language, ...request });
        fill(message, h('span', { class: decision.allow ? 'pass' : 'fail' }, decision.message));
        if (decision.allow) setTimeout(() => find(request['new-card'] || view.card), 600);
      } catch (e) {
        fill(message, h('span', { class: 'error' }, e.message));
      }
    };
    const setState = async (state) => {
      const { card, 'birth-date': birth, municipality, statuses, attributes } = view;
      try {
        await api.register(p.program, card, { 'birth-date': birth, municipality, statuses, state, attributes });
        find(card);
      } catch (e) {
        fill(message, h('span', { class: 'error' }, e.message));
      }
    };
    const newCard = h('input', { id: 'desk-new-card', autocomplete: 'off' });
    const blocked = view.state === 'blocked';
    return h('section', { class: 'panel', id: 'desk-card-view' },
      h('h2', {}, view.card),
      facts([
        [t('state'), t(view.state)],
        [t('birthDate'), view['birth-date']],
        [t('municipality'), view.municipality],
        [t('statuses'), view.statuses.join(', ') || '—'],
        [t('attributes'), Object.entries(view.attributes).map(([k, v]) => `${k} = ${v}`).join(', ') || '—'],
        [t('balances'), Object.entries(view.balances).map(([a, u]) => balance(a, u)).join(', ') || '—'],
      ]),
      h('div', { class: 'row' },
        h('button', { type: 'button', id: 'desk-edit', onclick: () => showForm(view) }, t('edit')),
        blocked
          ? h('button', { type: 'button', id: 'desk-unblock', onclick: () => (p.actions.includes('unblock-card') ? act({ action: 'unblock-card' }) : setState('active')) }, t('unblock'))
          : h('button', { type: 'button', id: 'desk-block', onclick: () => (p.actions.includes('block-card') ? act({ action: 'block-card' }) : setState('blocked')) }, t('block'))),
      p.actions.includes('replace-card') ? h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); act({ action: 'replace-card', 'new-card': newCard.value.trim() }); } },
        h('label', {}, t('newCard'), newCard),
        h('button', { type: 'submit', id: 'desk-replace' }, t('replace'))) : null,
      message);
  }
}
