// The console's entry point: the devices' first page is asked for first (it is what the
// operator waits for); then the providers, failed events, health, and what the daemon's
// /openapi.json says it can do beyond that (jobs).

import { api } from './api.js';
import { Devices } from './devices.js';
import { FailedEvents } from './events.js';
import { Health } from './health.js';
import { Jobs } from './jobs.js';
import { Providers } from './providers.js';

const devices = new Devices();
devices.fromHash();
devices.reload();

const providers = new Providers();
const jobs = new Jobs();
new FailedEvents().load();
new Health().start();

providers.load().then((names) => {
  const select = document.querySelector('#device-filters select[name=provider]');
  const chosen = select.value;
  for (const name of names) {
    if (![...select.options].some((o) => o.value === name)) {
      select.append(new Option(name, name));
    }
  }
  select.value = chosen;
  return api('GET', '/openapi.json').catch(() => null);
}).then((spec) => {
  const paths = (spec && spec.paths) || {};
  if (paths['/jobs/{id}'] && paths['/jobs/{id}'].get) {
    jobs.enable();
    if (paths['/providers/{provider}/reconcile']) {
      providers.enableReconcile((id) => jobs.watch(id));
    }
  }
});
