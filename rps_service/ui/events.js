// Failed events, newest first, each with a Retry button (POST /events/{id}/retry); a
// retried event is followed until it is done or has failed again. A retry the daemon
// refuses for good (409: no longer failed, or overtaken by a newer event of the device)
// leaves no button behind.

import { api } from './api.js';
import { fill, h, setText, showError, time } from './dom.js';

const PAGE = 50;
const FINISHED = new Set(['done', 'failed', 'superseded']);

export class FailedEvents {
  constructor() {
    this.body = document.querySelector('#failed-table tbody');
    this.error = document.getElementById('failed-error');
    this.older = document.getElementById('failed-older');
    this.before = null;
    document.getElementById('failed-refresh').addEventListener('click', () => this.load());
    this.older.addEventListener('click', () => this.load(this.before));
  }

  async load(before = null) {
    this.older.disabled = true;
    try {
      const answer = await api('GET', '/events', { params: { state: 'failed', limit: PAGE, before } });
      showError(this.error, null);
      const rows = answer.events.map((event) => this.row(event));
      fill(this.body, rows.length ? rows
        : h('tr', {}, h('td', { colspan: 10, class: 'none' }, 'No failed events.')));
      this.before = answer.events.length === PAGE ? answer.events.at(-1).id : null;
      this.older.disabled = this.before === null;
    } catch (error) {
      showError(this.error, error);
    }
  }

  row(event) {
    const state = h('td', { class: 'state' }, h('span', { class: `status status-${event.state}` }, event.state));
    const lastError = h('td', { class: 'message', title: event.last_error ?? '' }, event.last_error ?? '');
    const attempts = h('td', { class: 'num' }, event.attempts);
    const button = h('button', { type: 'button' }, 'Retry');
    // The button comes first: a long error must never push it out of sight.
    const tr = h('tr', { 'data-event': event.id },
      h('td', { class: 'action' }, button),
      h('td', { class: 'num' }, event.id),
      h('td', {}, event.action),
      h('td', {}, event.provider),
      h('td', { class: 'mac' }, event.mac),
      h('td', { class: 'num' }, event.server),
      attempts,
      h('td', { class: 'time' }, time(event.updated_at)),
      state,
      lastError);
    button.addEventListener('click', () => retry(event.id, { button, state, lastError, attempts }));
    return tr;
  }
}

async function retry(id, cells) {
  cells.button.disabled = true;
  try {
    const answer = await api('POST', `/events/${encodeURIComponent(id)}/retry`);
    showState(cells, answer.state);
  } catch (error) {
    setText(cells.lastError, error.message);
    if (error.status === 409 || error.status === 404) {
      // The daemon will not retry this one (it is no longer failed, or a newer event of
      // the device would be undone): no button to press again; its state as it is now.
      cells.button.replaceWith(h('span', { class: 'none' }, 'not retried'));
      await refreshState(id, cells);
    } else {
      cells.button.disabled = false; // no answer: trying again may work
    }
    return;
  }
  for (;;) { // follow it until it is finished
    await new Promise((resolve) => setTimeout(resolve, 500));
    let event;
    try {
      event = await api('GET', `/events/${encodeURIComponent(id)}`);
    } catch (error) {
      setText(cells.lastError, error.message);
      return;
    }
    showState(cells, event.state);
    cells.attempts.textContent = String(event.attempts);
    setText(cells.lastError, event.last_error ?? '');
    if (FINISHED.has(event.state)) {
      cells.button.disabled = event.state !== 'failed';
      document.dispatchEvent(new CustomEvent('rps:device-changed')); // its row is stale
      return;
    }
  }
}

async function refreshState(id, cells) {
  try {
    const event = await api('GET', `/events/${encodeURIComponent(id)}`);
    showState(cells, event.state);
  } catch {
    // the refusal's message stays: it says why
  }
}

function showState(cells, state) {
  fill(cells.state, h('span', { class: `status status-${state}` }, state));
}
