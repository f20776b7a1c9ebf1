// Fleet jobs (reconciles, re-points): shown only when the daemon has GET /jobs/{id} (its
// /openapi.json says so). The newest jobs are listed when the panel opens, on Refresh and
// every half minute (jobs started elsewhere appear); a job is also watched from the
// Reconcile button or the address (#job=7). Each is polled until it is over: for a job
// that queues events (a re-point, a repair) that is when its events are sent, not when
// the job itself is `done` (it is once they are queued).

import { api } from './api.js';
import { count, h, showError } from './dom.js';

const EVERY_MS = 1000;
const LIST_EVERY_MS = 30000;
const NEWEST = 10;
const ACTIVE = new Set(['queued', 'pending', 'running']);

export class Jobs {
  constructor() {
    this.section = document.getElementById('jobs');
    this.list = document.getElementById('job-list');
    this.error = document.getElementById('jobs-error');
    this.watched = new Set();
    document.getElementById('jobs-refresh').addEventListener('click', () => this.listNewest());
  }

  async enable() {
    this.section.hidden = false;
    const fromHash = Number(new URLSearchParams(location.hash.slice(1)).get('job'));
    if (Number.isInteger(fromHash) && fromHash > 0) this.watch(fromHash);
    await this.listNewest();
    setInterval(() => this.listNewest(), LIST_EVERY_MS);
  }

  async listNewest() {
    try {
      const { jobs } = await api('GET', `/jobs?limit=${NEWEST}`);
      showError(this.error, null);
      for (const job of jobs.reverse()) this.watch(job.id);
    } catch (error) {
      showError(this.error, error);
    }
  }

  watch(id) {
    if (this.watched.has(id)) return;
    this.watched.add(id);
    const item = h('li', { 'data-job': id }, `Job ${id}: …`);
    // Newest first, wherever a job comes from (the list, a button, the address).
    const after = [...this.list.children].find((li) => Number(li.dataset.job) < id);
    this.list.insertBefore(item, after ?? null);
    this.poll(id, item);
  }

  async poll(id, item) {
    for (;;) {
      let job;
      try {
        job = await api('GET', `/jobs/${encodeURIComponent(id)}`);
        showError(this.error, null);
      } catch (error) {
        item.replaceChildren(`Job ${id}: ${error.message}`);
        item.className = 'bad';
        return;
      }
      render(item, job);
      if (!ACTIVE.has(job.state) && !unsent(job)) return;
      await new Promise((resolve) => setTimeout(resolve, EVERY_MS));
    }
  }
}

/** How many of the events a job queued are still to be sent. */
function unsent(job) {
  const events = job.events || {};
  return (Number(events.pending) || 0) + (Number(events.running) || 0);
}

function render(item, job) {
  const progress = job.progress || {};
  const active = ACTIVE.has(job.state);
  const events = Object.entries(job.events || {});
  const sending = !active && job.state !== 'failed' && unsent(job) > 0;
  let done = Number(progress.done) || 0;
  let total = Number(progress.total) || 0;
  let phase = progress.phase || '';
  if (sending) { // queued: how far the sending of its events has got
    total = events.reduce((sum, [, n]) => sum + Number(n), 0);
    done = total - unsent(job);
    phase = 'sending events';
  }
  // A finished job with nothing to count shows a full bar, not an empty one.
  const bar = h('progress', { max: total || 1, value: total ? done : (active ? 0 : 1) });
  // What it found or queued (missing, drift, orphan; queued), and its events by state.
  const counts = (job.result && job.result.counts) || {};
  const found = ['missing', 'drift', 'orphan', 'queued', 'repair_events', 'adopted']
    .filter((key) => Number.isInteger(counts[key]))
    .map((key) => `${key.replace('_', ' ')} ${count(counts[key])}`);
  const byState = events.map(([state, n]) => `${state} ${count(n)}`);
  const title = `Job ${job.id ?? ''} ${job.kind ?? ''} ${job.provider ?? ''}` +
    (job.server ? ` server ${job.server}` : '');
  const state = sending ? 'sending' : job.state;
  item.replaceChildren(
    h('span', { class: 'job-title' }, title),
    ' ', h('span', { class: `status status-${sending ? 'running' : job.state}` }, state), ' ',
    phase ? `${phase} ` : '',
    bar, ' ', h('span', { class: 'job-progress' }, `${count(done)} / ${count(total)}`),
    found.length ? h('small', {}, ` ${found.join(', ')}`) : '',
    byState.length ? h('small', {}, `; events: ${byState.join(', ')}`) : '',
    job.error ? h('small', { class: 'bad' }, ` ${job.error}`) : '');
  item.className = active || sending ? '' : job.state === 'failed' ? 'bad' : 'ok';
}
