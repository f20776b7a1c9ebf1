// Backlog and queue depths from GET /health, every few seconds.

import { api } from './api.js';
import { count, fill, h, showError } from './dom.js';

const EVERY_MS = 5000;

export class Health {
  constructor() {
    this.summary = document.getElementById('health-summary');
    this.figures = document.getElementById('health-figures');
    this.queues = document.querySelector('#queues tbody');
    this.error = document.getElementById('health-error');
  }

  start() {
    const tick = async () => {
      await this.load();
      setTimeout(tick, EVERY_MS);
    };
    tick();
  }

  async load() {
    let health;
    try {
      health = await api('GET', '/health');
      showError(this.error, null);
    } catch (error) {
      showError(this.error, error);
      this.summary.textContent = error.status === 503 ? 'database unavailable' : 'no answer';
      this.summary.className = 'summary bad';
      if (!error.body || !Array.isArray(error.body.queues)) return;
      health = error.body; // 503 still tells the queue depths
    }
    if (!Array.isArray(health.queues)) {
      // Without the token the daemon says only ok or degraded; the figures come once the
      // token is known (the other panels ask for it).
      this.summary.textContent = health.status === 'ok' ? 'ok' : 'degraded';
      this.summary.className = health.status === 'ok' ? 'summary' : 'summary bad';
      return;
    }
    const backlog = health.backlog || {};
    fill(this.figures,
      h('dt', {}, 'Database'), h('dd', {}, health.database),
      h('dt', {}, 'Pending'), h('dd', { id: 'backlog-pending' }, backlog.pending === undefined ? '—' : count(backlog.pending)),
      h('dt', {}, 'Running'), h('dd', { id: 'backlog-running' }, backlog.running === undefined ? '—' : count(backlog.running)));
    fill(this.queues, health.queues.map((depth, i) =>
      h('tr', {}, h('td', { class: 'num' }, i), h('td', { class: 'num' }, count(depth)))));
    if (health.status === 'ok') {
      this.summary.textContent = `${count(backlog.pending)} pending, ${count(backlog.running)} running`;
      this.summary.className = 'summary';
    }
  }
}
