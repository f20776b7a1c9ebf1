// Fleet jobs (reconciles, re-points): shown only when the daemon has GET /jobs/{id} (its
// /openapi.json says so). The newest jobs are listed when the panel opens; a job is also
// watched from the Reconcile button, the form, or the address (#job=7), and polled until
// it is no longer pending or running.

import { api } from './api.js';
import { count, h, showError } from './dom.js';

const EVERY_MS = 1000;
const ACTIVE = new Set(['queued', 'pending', 'running']);

export class Jobs {
  constructor() {
    this.section = document.getElementById('jobs');
    this.list = document.getElementById('job-list');
    this.error = document.getElementById('jobs-error');
    this.watched = new Set();
    document.getElementById('job-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const id = Number(new FormData(event.target).get('job'));
      if (Number.isInteger(id) && id > 0) this.watch(id);
    });
  }

  async enable() {
    this.section.hidden = false;
    const fromHash = Number(new URLSearchParams(location.hash.slice(1)).get('job'));
    if (Number.isInteger(fromHash) && fromHash > 0) this.watch(fromHash);
    try {
      const { jobs } = await api('GET', '/jobs?limit=10');
      for (const job of jobs.reverse()) this.watch(job.id);
    } catch (error) {
      showError(this.error, error);
    }
  }

  watch(id) {
    if (this.watched.has(id)) return;
    this.watched.add(id);
    const item = h('li', { 'data-job': id }, `Job ${id}: …`);
    this.list.prepend(item);
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
      if (!ACTIVE.has(job.state)) return;
      await new Promise((resolve) => setTimeout(resolve, EVERY_MS));
    }
  }
}

function render(item, job) {
  const progress = job.progress || {};
  const done = Number(progress.done) || 0;
  const total = Number(progress.total) || 0;
  const bar = h('progress', { max: total || 1, value: total ? done : 0 });
  // What it found or queued (missing, drift, orphan; queued), and its events by state.
  const counts = (job.result && job.result.counts) || {};
  const found = ['missing', 'drift', 'orphan', 'queued', 'repair_events', 'adopted']
    .filter((key) => Number.isInteger(counts[key]))
    .map((key) => `${key.replace('_', ' ')} ${count(counts[key])}`);
  const events = Object.entries(job.events || {})
    .map(([state, n]) => `${state} ${count(n)}`);
  const title = `Job ${job.id ?? ''} ${job.kind ?? ''} ${job.provider ?? ''}` +
    (job.server ? ` server ${job.server}` : '');
  item.replaceChildren(
    h('span', { class: 'job-title' }, title),
    ' ', h('span', { class: `status status-${job.state}` }, job.state), ' ',
    progress.phase ? `${progress.phase} ` : '',
    bar, ' ', h('span', { class: 'job-progress' }, `${count(done)} / ${count(total)}`),
    found.length ? h('small', {}, ` ${found.join(', ')}`) : '',
    events.length ? h('small', {}, `; events: ${events.join(', ')}`) : '',
    job.error ? h('small', { class: 'bad' }, ` ${job.error}`) : '');
  item.className = ACTIVE.has(job.state) ? '' : job.state === 'failed' ? 'bad' : 'ok';
}
