// Backlog and queue depths from GET /health, every few seconds. `running` counts events
// whose vendor call is under way; `waiting` (when the daemon reports it) those held by
// their vendor account's rate limit or pause, which are not running; `lanes` (when
// reported) is each vendor account's share of the backlog.

import { api } from './api.js';
import { count, fill, h, showError, time } from './dom.js';

const EVERY_MS = 5000;

export class Health {
  constructor() {
    this.summary = document.getElementById('health-summary');
    this.figures = document.getElementById('health-figures');
    this.lanes = document.getElementById('lanes');
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
    const waiting = backlog.waiting ?? 0; // a daemon without lanes holds none back
    const figure = (value) => (value === undefined ? '—' : count(value));
    fill(this.figures,
      h('dt', {}, 'Database'), h('dd', {}, health.database),
      h('dt', {}, 'Pending'), h('dd', { id: 'backlog-pending' }, figure(backlog.pending)),
      h('dt', { title: 'a vendor call is under way' }, 'Running'),
      h('dd', { id: 'backlog-running' }, figure(backlog.running)),
      h('dt', { title: "held by their vendor account's rate limit or pause" }, 'Waiting'),
      h('dd', { id: 'backlog-waiting' }, figure(waiting)));
    this.showLanes(health.lanes);
    fill(this.queues, (health.queues || []).map((depth, i) =>
      h('tr', {}, h('td', { class: 'num' }, i), h('td', { class: 'num' }, count(depth)))));
    if (health.status === 'ok') {
      this.summary.textContent = `${count(backlog.pending ?? 0)} pending, ` +
        `${count(backlog.running ?? 0)} running, ${count(waiting)} waiting for the vendor`;
      this.summary.className = 'summary';
    }
  }

  showLanes(lanes) {
    this.lanes.hidden = !Array.isArray(lanes);
    if (this.lanes.hidden) return;
    fill(this.lanes.tBodies[0], lanes.length ? lanes.map((lane) => h('tr', {},
      h('td', {}, lane.provider),
      h('td', { class: 'account' }, lane.account),
      h('td', { class: 'num' }, count(lane.backlog ?? 0)),
      h('td', { class: 'num' }, count(lane.in_flight ?? 0)),
      h('td', { class: 'num' }, lane.rate_limit == null ? '—' : `${lane.rate_limit}/s`),
      h('td', { class: 'time' }, pausedUntil(lane.paused_until))))
      : h('tr', {}, h('td', { colspan: 6, class: 'none' }, 'No vendor account has work.')));
  }
}

function pausedUntil(value) {
  if (value === null || value === undefined || value === '') return '—';
  return typeof value === 'number' ? `${count(value)} s` : time(value);
}
