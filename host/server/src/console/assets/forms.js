// Forms generated from a program's schema (`[schema.holder]` of its policy.toml, as
// GET /v1/programs/{program} gives it): one field per attribute, typed, with its range,
// its one-of list and its doc as help; and the host's error shown beside the field it
// names (the host names fields in backticks: "`birth-date` …").

import { h, fill, select } from './dom.js';
import { t } from './i18n.js';

/** A field: a label, the input, help and a place for its error. `name` is the key the
 *  host's messages use. */
export function field(name, caption, input, help) {
  const error = h('span', { class: 'field-error', id: `error-${name}`, role: 'alert' });
  input.dataset.field = name;
  input.setAttribute('aria-describedby', error.id);
  return h('label', { 'data-field': name }, caption, input, help ? h('small', {}, help) : null, error);
}

/** The input of one declared attribute, with its current value. */
export function attributeInput(key, declaration, value) {
  const id = `attr-${key}`;
  if (declaration.type === 'boolean') {
    return select({ id }, [['', t('unset')], ['true', t('yes')], ['false', t('no')]],
      value === undefined || value === null ? '' : String(value));
  }
  if (declaration.type === 'text' && declaration['one-of']) {
    return select({ id }, [['', t('unset')], ...declaration['one-of'].map((w) => [w, w])], value ?? '');
  }
  const input = h('input', { id, value: value === undefined || value === null ? '' : String(value), required: declaration.required || null });
  if (declaration.type === 'integer') {
    input.setAttribute('inputmode', 'numeric');
    if (declaration.min !== undefined) input.setAttribute('data-min', declaration.min);
  }
  return input;
}

/** The help of a declared attribute: its type, range or words, and its doc. */
export function attributeHelp(declaration) {
  const range = [];
  if (declaration.min !== undefined) range.push(`≥ ${declaration.min}`);
  if (declaration.max !== undefined) range.push(`≤ ${declaration.max}`);
  const words = declaration['one-of'] ? declaration['one-of'].join(', ') : '';
  return [declaration.type, range.join(' '), words, declaration.doc].filter(Boolean).join(' · ');
}

/** Fields for the attributes `keys` of the schema, with their current values. */
export function attributeFields(schema, keys, values = {}) {
  return keys.map((key) => field(key, key, attributeInput(key, schema[key], values[key]), attributeHelp(schema[key])));
}

/** The value an attribute input holds: a number for an integer that reads as one (else
 *  the text, which the host refuses with its own message), a boolean, text; null when
 *  left empty. */
export function attributeValue(declaration, input) {
  const text = input.value.trim();
  if (text === '') return null;
  if (declaration.type === 'integer') return /^-?\d+$/.test(text) ? Number(text) : text;
  if (declaration.type === 'boolean') return text === 'true';
  return text;
}

/** Clears every field error of `form`. */
export function clearErrors(form) {
  for (const error of form.querySelectorAll('.field-error')) error.textContent = '';
  for (const input of form.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
}

/** Shows the host's `message` beside the first field it names in backticks, or in the
 *  form's general place. Returns the field's name, or null. */
export function showError(form, general, message) {
  const named = [...message.matchAll(/`([^`]+)`/g)].map((m) => m[1]);
  for (const name of named) {
    const input = form.querySelector(`[data-field="${CSS.escape(name)}"]:is(input, select)`);
    if (input) {
      input.setAttribute('aria-invalid', 'true');
      const error = form.querySelector(`#error-${CSS.escape(name)}`);
      if (error) error.textContent = message;
      input.focus();
      return name;
    }
  }
  fill(general, message);
  return null;
}

/** The holder form of the registration desk: card, birth date, municipality, statuses,
 *  state and every attribute of `[schema.holder]`. `holder` fills it (a card view). */
export function holderForm(ctx, holder, onSaved, save) {
  const schema = ctx.program.schema.holder || {};
  const keys = Object.keys(schema).sort();
  const inputs = {
    card: h('input', { id: 'holder-card', required: true, value: holder ? holder.card : '', autocomplete: 'off' }),
    'birth-date': h('input', { id: 'holder-birth-date', required: true, placeholder: t('birthDateHelp'), value: holder ? holder['birth-date'] : '', inputmode: 'numeric', autocomplete: 'off' }),
    municipality: h('input', { id: 'holder-municipality', required: true, value: holder ? holder.municipality : '' }),
    statuses: h('input', { id: 'holder-statuses', value: holder ? holder.statuses.join(', ') : '' }),
    state: select({ id: 'holder-state' }, ['active', 'blocked', 'stopped'].map((s) => [s, t(s)]), holder ? holder.state : 'active'),
  };
  const attributes = attributeFields(schema, keys, holder ? holder.attributes : {});
  const general = h('p', { class: 'error', role: 'alert', id: 'holder-error' });
  const done = h('p', { class: 'pass', id: 'holder-saved', role: 'status' });
  const form = h('form', { id: 'holder-form', novalidate: true, onsubmit: submit },
    h('div', { class: 'grid' },
      field('card', t('card'), inputs.card),
      field('birth-date', t('birthDate'), inputs['birth-date'], t('birthDateHelp')),
      field('municipality', t('municipality'), inputs.municipality),
      field('statuses', t('statuses'), inputs.statuses, t('statusesHelp')),
      field('state', t('state'), inputs.state)),
    keys.length ? h('h3', {}, t('attributes')) : null,
    keys.length ? h('div', { class: 'grid' }, attributes) : null,
    general, done,
    h('button', { class: 'primary', type: 'submit', id: 'holder-save' }, t('save')));

  async function submit(e) {
    e.preventDefault();
    clearErrors(form);
    fill(general);
    fill(done);
    const body = {
      'birth-date': inputs['birth-date'].value.trim(),
      municipality: inputs.municipality.value.trim(),
      statuses: inputs.statuses.value.split(',').map((s) => s.trim()).filter(Boolean),
      state: inputs.state.value,
      attributes: {},
    };
    for (const key of keys) {
      const value = attributeValue(schema[key], form.querySelector(`#attr-${CSS.escape(key)}`));
      if (value !== null) body.attributes[key] = value;
    }
    try {
      const view = await save(inputs.card.value.trim(), body);
      fill(done, t('saved'));
      onSaved(view);
    } catch (error) {
      showError(form, general, error.message);
    }
  }
  return form;
}
