// Devices: filters, one page at a time from GET /devices (the daemon pages with a cursor,
// so page 1,000 of 100,000 devices costs what page 1 does), and the total beside them. A
// device's MAC opens its timeline (timeline.js).

import { api } from './api.js';
import { count, fill, h, showError, time } from './dom.js';

const FILTERS = ['server', 'provider', 'status', 'mac'];
let firstRender = true;

export class Devices {
  constructor() {
    this.form = document.getElementById('device-filters');
    this.body = document.querySelector('#devices-table tbody');
    this.range = document.getElementById('devices-range');
    this.prev = document.getElementById('devices-prev');
    this.next = document.getElementById('devices-next');
    this.error = document.getElementById('devices-error');
    this.filters = {};
    this.limit = 100;
    this.cursors = [null]; // the `after` of each page shown so far; the last is this page
    this.nextCursor = null;
    this.total = null;
    this.request = 0; // answers to an older request are dropped
    this.form.addEventListener('submit', (event) => { event.preventDefault(); this.apply(); });
    this.form.addEventListener('reset', (event) => {
      event.preventDefault(); // cleared here, so the list follows at once
      for (const name of FILTERS) this.form.elements[name].value = '';
      this.apply();
    });
    this.prev.addEventListener('click', () => this.turn(-1));
    this.next.addEventListener('click', () => this.turn(1));
    window.addEventListener('hashchange', () => this.fromHash() && this.reload());
    document.addEventListener('rps:device-changed', () => this.load(false)); // same page
  }

  /** Filters from the address (#server=8&status=error): a reload shows the same list. */
  fromHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    const filters = {};
    for (const name of FILTERS) if (params.get(name)) filters[name] = params.get(name);
    const limit = Number(params.get('limit')) || 100;
    if (JSON.stringify(filters) === JSON.stringify(this.filters) && limit === this.limit) {
      return false;
    }
    this.filters = filters;
    this.limit = limit;
    for (const name of [...FILTERS, 'limit']) {
      const field = this.form.elements[name];
      const value = name === 'limit' ? String(limit) : filters[name] ?? '';
      if (field.tagName === 'SELECT' && value && ![...field.options].some((o) => o.value === value)) {
        field.append(h('option', {}, value)); // a provider not (yet) listed
      }
      field.value = value;
    }
    return true;
  }

  apply() {
    const data = new FormData(this.form);
    const params = new URLSearchParams();
    for (const name of FILTERS) {
      const value = String(data.get(name) || '').trim();
      if (value) params.set(name, value);
    }
    if (data.get('limit') && data.get('limit') !== '100') params.set('limit', data.get('limit'));
    const hash = params.toString();
    if (location.hash.slice(1) === hash) {
      this.reload(); // same filters: show them afresh
    } else {
      location.hash = hash; // hashchange reloads
    }
  }

  reload() {
    this.cursors = [null];
    this.total = null;
    return this.load(true);
  }

  turn(step) {
    if (step > 0 && this.nextCursor) this.cursors.push(this.nextCursor);
    else if (step < 0 && this.cursors.length > 1) this.cursors.pop();
    else return;
    this.load(false);
  }

  /** Show the page ``cursors`` points at; resolves once its rows are in the page. */
  async load(counting) {
    const request = ++this.request;
    const params = { ...this.filters, limit: this.limit, after: this.cursors.at(-1) };
    this.prev.disabled = this.next.disabled = true;
    try {
      const answer = await api('GET', '/devices', { params });
      if (request !== this.request) return;
      showError(this.error, null);
      this.nextCursor = answer.next;
      this.render(answer.devices);
    } catch (error) {
      if (request !== this.request) return;
      showError(this.error, error);
      fill(this.body);
      this.shown = 0;
      this.nextCursor = null;
    }
    this.showRange();
    // The total on a request of its own, once the rows are on screen (the browser idle):
    // counting 100,000 rows takes longer than a page, and the operator waits for the page.
    if (counting) requestIdleCallback(() => this.count(request), { timeout: 500 });
  }

  async count(request) {
    try {
      const answer = await api('GET', '/devices',
        { params: { ...this.filters, limit: 1, count: 'true' } });
      if (request === this.request) {
        this.total = answer.total;
        this.showRange();
      }
    } catch {
      // the page's own answer has shown what is wrong
    }
  }

  render(devices) {
    fill(this.body, devices.map(row));
    this.shown = devices.length;
    if (firstRender) {
      firstRender = false;
      // For the benchmark (python -m bench ui): rows in the DOM, then painted.
      performance.mark('rps:devices-rendered');
      requestAnimationFrame(() => setTimeout(() => performance.mark('rps:devices-painted')));
    }
  }

  showRange() {
    const first = (this.cursors.length - 1) * this.limit;
    const of = this.total === null ? '' : ` of ${count(this.total)}`;
    this.range.textContent = this.shown
      ? `Devices ${count(first + 1)}–${count(first + this.shown)}${of}`
      : this.total === 0 || this.cursors.length === 1 ? 'No devices match' : 'No more devices';
    this.prev.disabled = this.cursors.length <= 1;
    this.next.disabled = !this.nextCursor;
  }
}

async function showTimeline(device) {
  const { openTimeline } = await import('./timeline.js');
  await openTimeline(device.provider, device.mac);
}

function row(device, index) {
  const ztp = device.ztp_fetched_at
    ? h('td', { class: 'time', title: device.ztp_ip ? `from ${device.ztp_ip}` : null },
      time(device.ztp_fetched_at),
      h('br'),
      h('small', {}, [device.ztp_model, device.ztp_firmware].filter(Boolean).join(' · ')))
    : h('td', { class: 'none' }, 'not yet');
  return h('tr', { 'data-mac': device.mac },
    h('td', {}, device.provider),
    // Element Timing: the browser records when this text was first painted (the bench).
    h('td', { class: 'mac', elementtiming: index === 0 ? 'devices-first-row' : null },
      // The MAC opens the device's timeline (its module is loaded on the first click).
      h('button', { type: 'button', class: 'link', title: 'Show the timeline',
        onclick: () => showTimeline(device) }, device.mac)),
    h('td', { class: 'num' }, device.server),
    h('td', {}, h('span', { class: `status status-${device.status}` }, device.status)),
    h('td', {}, device.name ?? ''),
    h('td', {}, device.extension ?? ''),
    h('td', {}, device.model ?? ''),
    h('td', { class: 'message', title: device.last_message }, device.last_message),
    h('td', { class: 'time' }, time(device.registered_at)),
    ztp);
}
