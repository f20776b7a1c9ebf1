// A device's timeline (GET /devices/{provider}/{mac}/timeline), in a dialog opened from
// its row of the Devices panel: the events, each vendor call, the retries, the outcomes and
// the phone's requests, oldest first. Loaded on first use only.

import { api } from './api.js';
import { fill, h, setText, showError, time } from './dom.js';

const dialog = document.getElementById('timeline-dialog');
const title = document.getElementById('timeline-title');
const body = document.querySelector('#timeline-table tbody');
const error = document.getElementById('timeline-error');
const empty = document.getElementById('timeline-empty');
document.getElementById('timeline-close').addEventListener('click', () => dialog.close());
let request = 0; // answers to an older request are dropped

/** What one entry says, in words (as `rps-service timeline` prints it). */
export function describe(e) {
  switch (e.kind) {
    case 'accepted':
      return `event ${e.event}: ${e.action} for server ${e.server}`;
    case 'call':
      return `${e.method} ${e.url} → ${e.status} in ${e.ms} ms (event ${e.event}, attempt ${e.attempt})`;
    case 'retry':
      return `event ${e.event} is due again then: ${e.why}`;
    case 'outcome':
      return [`event ${e.event} ${e.state}`, e.status ? `, device ${e.status}` : '',
        e.message ? `: ${e.message}` : ''].join('');
    case 'fetch':
      return [`${e.file} from ${e.ip} → ${e.result}`, e.reason ? ` (${e.reason})` : '',
        e.model || e.firmware ? `; ${[e.model, e.firmware].filter(Boolean).join(' ')}` : '']
        .join('');
    default:
      return '';
  }
}

function row(entry) {
  const bad = entry.reason || (entry.kind === 'outcome' && entry.state === 'failed')
    || (entry.kind === 'call' && !(entry.status >= 200 && entry.status < 400));
  return h('tr', { class: bad ? 'bad' : null },
    h('td', { class: 'time' }, time(entry.at)),
    h('td', {}, h('span', { class: `kind kind-${entry.kind}` }, entry.kind)),
    h('td', { class: 'message' }, describe(entry)));
}

/** Open the dialog and show the device's timeline. */
export async function openTimeline(provider, mac) {
  const mine = ++request;
  setText(title, `Timeline of ${provider} ${mac}`);
  fill(body);
  empty.hidden = true;
  showError(error, null);
  if (!dialog.open) dialog.showModal();
  try {
    const path = `/devices/${encodeURIComponent(provider)}/${encodeURIComponent(mac)}/timeline`;
    const answer = await api('GET', path);
    if (mine !== request) return;
    fill(body, answer.entries.map(row));
    empty.hidden = answer.entries.length > 0;
  } catch (failure) {
    if (mine === request) showError(error, failure);
  }
}
