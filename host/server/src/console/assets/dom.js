// Building the page from data, safely: every text goes in through text nodes (never
// innerHTML), so an offer named `<img src=x onerror=…>` is shown as those characters.

/** An element: `h('p', {class: 'x', onclick: f}, 'text', child, …)`. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'value' || key === 'checked' || key === 'selected') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

/** Appends children (nodes, or anything else as text; null and false are skipped). */
export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A `<select>` of `[value, label]` pairs. */
export function select(props, options, chosen) {
  const el = h('select', props, options.map(([value, label]) => h('option', { value }, label)));
  if (chosen !== undefined && chosen !== null) el.value = chosen;
  return el;
}

/** A definition list of `[term, value]` pairs. */
export function facts(pairs) {
  return h('dl', { class: 'kv' }, pairs.flatMap(([term, value]) => [h('dt', {}, term), h('dd', {}, value)]));
}
