// The console's start: sign in, learn who the token is (`GET /v1/caller`), pick the
// program and language, and show the views the token's role may use.

import { api, token, ApiError } from './api.js';
import { h, fill, select } from './dom.js';
import { LANGUAGES, setLanguage, t } from './i18n.js';
import * as till from './till.js';
import * as desk from './desk.js';
import * as parents from './parents.js';
import * as programs from './programs.js';

// Which views each role sees, in order (the API refuses what a role may not do anyway).
const VIEWS = {
  terminal: ['till'],
  registrar: ['till', 'desk'],
  admin: ['till', 'desk', 'programs'],
  guardian: ['parents'],
};
const MODULES = { till, desk, parents, programs };

const $ = (id) => document.getElementById(id);
const session = {
  get: (key) => sessionStorage.getItem(`cardrules.${key}`),
  set: (key, value) => sessionStorage.setItem(`cardrules.${key}`, value),
};

// What the views share: the caller, the program (as GET /v1/programs/{program} gives
// it) and the language of messages asked of the host.
const ctx = { caller: null, program: null, language: 'en', view: null, programs: [] };

document.addEventListener('DOMContentLoaded', start);

async function start() {
  $('sign-out').addEventListener('click', signOut);
  $('program').addEventListener('change', (e) => chooseProgram(e.target.value));
  $('language').addEventListener('change', (e) => chooseLanguage(e.target.value));
  setLanguage(session.get('language') || navigatorLanguage());
  try {
    ctx.caller = await api.caller();
  } catch (e) {
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) return showSignIn(token.get() ? e.message : '');
    return showError(e);
  }
  ctx.programs = ctx.caller.served;
  const views = VIEWS[ctx.caller.role] || [];
  const wanted = session.get('program');
  await chooseProgram(ctx.programs.includes(wanted) ? wanted : ctx.programs[0], views);
}

function navigatorLanguage() {
  const wanted = (navigator.language || 'en').slice(0, 2);
  return wanted === 'no' ? 'nb' : wanted;
}

function showSignIn(problem) {
  setLanguage(session.get('language') || navigatorLanguage());
  $('title').textContent = t('title');
  $('sign-out').hidden = true;
  const input = h('input', { id: 'token', type: 'password', autocomplete: 'off', required: true, autofocus: true, spellcheck: 'false' });
  const form = h('form', { class: 'panel', onsubmit: (e) => { e.preventDefault(); token.set(input.value.trim()); location.reload(); } },
    h('label', {}, t('token'), input, h('small', {}, t('tokenHelp'))),
    problem ? h('p', { class: 'error', role: 'alert' }, problem) : null,
    h('button', { class: 'primary', type: 'submit', id: 'sign-in' }, t('signIn')));
  fill($('main'), h('section', { class: 'panel signin' }, h('h2', {}, t('signIn')), form));
  input.focus();
}

function signOut() {
  token.clear();
  location.reload();
}

async function chooseProgram(id, views = VIEWS[ctx.caller.role] || []) {
  ctx.program = null;
  if (id) {
    session.set('program', id);
    try {
      ctx.program = await api.program(id);
    } catch (e) {
      return showError(e);
    }
    const languages = ctx.program.languages;
    const kept = session.get('language');
    ctx.language = languages.includes(kept) ? kept : languages[0];
  }
  chooseLanguage(ctx.language, views);
}

function chooseLanguage(language, views = VIEWS[ctx.caller.role] || []) {
  ctx.language = language;
  session.set('language', language);
  setLanguage(language);
  renderChrome(views);
  show(views.includes(session.get('view')) ? session.get('view') : views[0], views);
}

function renderChrome(views) {
  $('title').textContent = t('title');
  const caller = ctx.caller;
  $('who').textContent = caller.auth ? t('signedInAs', { name: caller.name, role: caller.role }) : t('openServer');
  $('sign-out').hidden = !caller.auth;
  $('sign-out').textContent = t('signOut');
  $('program-caption').textContent = t('program');
  $('language-caption').textContent = t('language');
  const programSelect = select({ id: 'program' }, ctx.programs.map((p) => [p, p]), ctx.program && ctx.program.program);
  programSelect.addEventListener('change', (e) => chooseProgram(e.target.value));
  $('program').replaceWith(programSelect);
  $('program-label').hidden = ctx.programs.length < 2;
  const languages = ctx.program ? ctx.program.languages : [];
  const languageSelect = select({ id: 'language' },
    languages.map((l) => [l, LANGUAGES[l] || l]), ctx.language);
  languageSelect.addEventListener('change', (e) => chooseLanguage(e.target.value));
  $('language').replaceWith(languageSelect);
  $('language-label').hidden = languages.length < 2;
  fill($('tabs'), views.map((view) => h('button', {
    type: 'button', id: `tab-${view}`, 'aria-current': view === ctx.view ? 'page' : null,
    onclick: () => show(view, views),
  }, t(view))));
}

function show(view, views) {
  ctx.view = view;
  if (view) session.set('view', view);
  for (const button of $('tabs').children) {
    button.setAttribute('aria-current', button.id === `tab-${view}` ? 'page' : 'false');
  }
  const main = $('main');
  if (!view) return fill(main, h('p', { class: 'panel' }, t('roleNone')));
  if (!ctx.program && view !== 'programs') return fill(main, h('p', { class: 'panel' }, t('none')));
  fill(main);
  MODULES[view].render(main, ctx);
}

function showError(e) {
  fill($('main'), h('p', { class: 'panel error', role: 'alert' }, e.message || String(e)));
}
