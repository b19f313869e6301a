// The programs' view (admin): what runs, in which version, loaded when, what was
// refused; the coverage of each program's own suites; and the venues' hosts, when the
// server has them (GET /v1/venues; the section is left out when the route is absent).

import { api } from './api.js';
import { h, fill } from './dom.js';
import { t, formatTime } from './i18n.js';

export async function render(main, ctx) {
  const place = h('div', {});
  main.append(place);
  let listed;
  try {
    listed = await api.programs();
  } catch (e) {
    fill(place, h('p', { class: 'panel error' }, e.message));
    return;
  }
  const zone = ctx.program ? ctx.program['time-zone'] : undefined;
  const coverage = h('div', { id: 'coverage' });
  const venues = h('div', { id: 'venues' });
  fill(place,
    h('section', { class: 'panel' }, h('h2', {}, t('served')),
      h('table', { id: 'programs-table' },
        h('thead', {}, h('tr', {}, [t('program'), t('version'), t('digest'), t('world'), t('loadedAt'), t('languages'), t('offers')].map((c) => h('th', {}, c)))),
        h('tbody', {}, listed.programs.map((p) => h('tr', {},
          h('td', {}, h('strong', {}, p.program), h('br', {}), h('span', { class: 'muted' }, p.name)),
          h('td', {}, p.version),
          h('td', { class: 'mono', title: p.digest }, p.digest.slice(0, 19) + '…'),
          h('td', {}, p.world || ''),
          h('td', {}, formatTime(p['loaded-at'], zone)),
          h('td', {}, p.languages.join(', ')),
          h('td', { class: 'num' }, p.offers)))))),
    h('section', { class: 'panel' }, h('h2', {}, t('refused')),
      listed.refused.length
        ? h('ul', { id: 'refused' }, listed.refused.map((r) => h('li', {}, h('strong', {}, r.program), `: ${r.error}`)))
        : h('p', { class: 'muted' }, t('none'))),
    h('section', { class: 'panel' }, h('h2', {}, t('coverage')), coverage),
    venues);
  for (const p of listed.programs) {
    const slot = h('div', { 'data-program': p.program }, h('h3', {}, p.program), h('p', { class: 'muted' }, '…'));
    coverage.append(slot);
    api.coverage(p.program)
      .then((own) => fill(slot, coveragePanel(p.program, own)))
      .catch((e) => fill(slot, h('h3', {}, p.program), h('p', { class: 'error' }, e.message)));
  }
  try {
    const answer = await api.venues();
    fill(venues, venuesPanel(answer, zone));
  } catch (e) {
    if (e.status !== 404) fill(venues, h('section', { class: 'panel' }, h('h2', {}, t('venues')), h('p', { class: 'error' }, e.message)));
  }
}

function coveragePanel(program, own) {
  return [
    h('h3', {}, `${program} — ${own.percent.toFixed(0)} %`),
    h('p', {}, t('stepsPassed', { passed: own.passed, steps: own.steps }), ' · ',
      t('checksBoth', { n: own['checks-both-ways'], m: own.coverage.checks.length }), ' · ',
      t('reasonsDenied', { n: own['reasons-denied'], m: own.coverage.reasons.length })),
    h('table', {},
      h('thead', {}, h('tr', {}, [t('rule'), t('reason'), t('held'), t('failed')].map((c) => h('th', {}, c)))),
      h('tbody', {}, own.coverage.checks.map((c) => h('tr', {},
        h('td', {}, c.rule), h('td', {}, c.reason),
        h('td', { class: c.passed ? 'num' : 'num fail' }, c.passed),
        h('td', { class: c.failed ? 'num' : 'num fail' }, c.failed))))),
  ];
}

function venuesPanel(answer, zone) {
  return h('section', { class: 'panel', id: 'venues-panel' }, h('h2', {}, t('venues')),
    h('table', {},
      h('thead', {}, h('tr', {}, [t('venue'), t('online'), t('lastContact'), t('programs'), t('refused'), t('position')].map((c) => h('th', {}, c)))),
      h('tbody', {}, (answer.venues || []).map((v) => h('tr', {},
        h('td', {}, v.venue),
        h('td', { class: v.online ? 'pass' : 'fail' }, v.online ? '●' : '○'),
        h('td', {}, formatTime(v['last-contact'], zone)),
        h('td', {}, (v.programs || []).map((p) => `${p.program} ${p.version}`).join(', ')),
        h('td', {}, (v.refused || []).map((r) => `${r.program} ${r.version}: ${r.error}`).join('; ')),
        h('td', { class: 'num' }, Object.entries(v.position || {}).map(([p, n]) => `${p} ${n}`).join(', ')))))));
}
