// Building the page. Every value from the API goes in as text (textContent or a text
// node), never as markup: device names and error messages come from outside. Control and
// bidi characters in them are shown escaped (\x1b, \u202e), as rps.log and the command
// line do (the set is rps_service/text.py's): a U+202E in a name must not make the row
// read backwards.

// C0, DEL and C1 controls, bidi controls, line/paragraph separators, lone surrogates.
// eslint-disable-next-line no-control-regex
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
const SHORT = { '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/** ``text`` with control and bidi characters escaped. */
export function shown(text) {
  return String(text).replace(CONTROLS, (c) => {
    if (SHORT[c]) return SHORT[c];
    const code = c.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}`
      : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/** Set an element's text (escaped as ``shown`` does). */
export function setText(el, text) {
  el.textContent = shown(text);
}

/** An element with properties and children; strings become text nodes. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : shown(value));
  }
  el.append(...children.flat().filter((c) => c !== undefined && c !== null && c !== false)
    .map((c) => (c instanceof Node ? c : shown(c))));
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
  el.textContent = error ? shown(error.message || error) : '';
}

/** A number with thousands separators. */
export function count(value) {
  return Number(value).toLocaleString('en-US');
}
