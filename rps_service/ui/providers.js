// Each enabled provider (GET /providers) with a Test button: POST /providers/{p}/test
// checks a server's API keys with the vendor now. Where the daemon can reconcile
// (POST /providers/{p}/reconcile in its /openapi.json), a Reconcile button starts a job.

import { api } from './api.js';
import { fill, h, setText, showError } from './dom.js';

export class Providers {
  constructor() {
    this.table = document.getElementById('providers-table');
    this.error = document.getElementById('providers-error');
    this.rows = [];
  }

  /** The enabled providers' names (also for the devices' filter). */
  async load() {
    try {
      const answer = await api('GET', '/providers');
      showError(this.error, null);
      const names = answer.providers.map((p) => p.name);
      this.rows = names.map((name) => new ProviderRow(name));
      fill(this.table, this.rows.map((r) => r.element));
      return names;
    } catch (error) {
      showError(this.error, error);
      return [];
    }
  }

  /** Add Reconcile buttons; ``watch(jobId)`` follows the job started. */
  enableReconcile(watch) {
    for (const row of this.rows) row.addReconcile(watch);
  }
}

class ProviderRow {
  constructor(name) {
    this.name = name;
    this.server = h('input', { type: 'number', min: 1, step: 1, value: 1, class: 'server',
      'aria-label': `Server for ${name}` });
    this.result = h('span', { class: 'result', 'aria-live': 'polite' });
    this.test = h('button', { type: 'button', onclick: () => this.runTest() }, 'Test');
    this.actions = h('td', { class: 'actions' }, this.test);
    // One tbody per provider: its controls, and the verdict on a line of its own.
    this.element = h('tbody', { 'data-provider': name },
      h('tr', {},
        h('th', { scope: 'row' }, name),
        h('td', {}, h('label', {}, 'server ', this.server)),
        this.actions),
      h('tr', {}, h('td', { colspan: 3 }, this.result)));
  }

  serverNumber() {
    const value = Number(this.server.value);
    return Number.isInteger(value) && value >= 1 ? value : null;
  }

  async runTest() {
    const server = this.serverNumber();
    if (server === null) {
      this.say(false, 'the server is a number from 1');
      return;
    }
    this.test.disabled = true;
    this.say(null, 'testing…');
    try {
      const answer = await api('POST', `/providers/${encodeURIComponent(this.name)}/test`,
        { body: { server } });
      this.say(answer.ok, `${answer.ok ? 'OK' : 'FAILED'}: ${answer.message}`);
    } catch (error) {
      this.say(false, error.message);
    } finally {
      this.test.disabled = false;
    }
  }

  addReconcile(watch) {
    const button = h('button', { type: 'button' }, 'Reconcile');
    button.addEventListener('click', async () => {
      const server = this.serverNumber();
      if (server === null) return this.say(false, 'the server is a number from 1');
      button.disabled = true;
      try {
        const answer = await api('POST', `/providers/${encodeURIComponent(this.name)}/reconcile`,
          { body: { server } });
        this.say(null, `reconcile started: job ${answer.job}`);
        watch(answer.job);
      } catch (error) {
        this.say(false, error.message);
      } finally {
        button.disabled = false;
      }
    });
    this.actions.append(' ', button);
  }

  say(ok, text) {
    setText(this.result, text);
    this.result.className = ok === null ? 'result' : ok ? 'result ok' : 'result bad';
  }
}
