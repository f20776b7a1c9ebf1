// Building the page. Every value from the API goes in as text (textContent or a text
// node), never as markup: device names and error messages come from outside.

/** An element with properties and children; strings become text nodes. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  el.append(...children.flat().filter((c) => c !== undefined && c !== null && c !== false)
    .map((c) => (c instanceof Node ? c : String(c))));
  return el;
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren(...children.flat());
}

/** "2026-11-26T10:20:41Z" as "2026-11-26 10:20:41" (the API's times are UTC). */
export function time(value) {
  return value ? String(value).replace('T', ' ').replace(/Z$/, '') : '—';
}

/** Show an error message in a panel's error line, or hide the line (null). */
export function showError(el, error) {
  el.hidden = !error;
  el.textContent = error ? String(error.message || error) : '';
}

/** A number with thousands separators. */
export function count(value) {
  return Number(value).toLocaleString('en-US');
}
