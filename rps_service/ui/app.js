// The console's entry point. The devices' first page comes first: it is what the operator
// waits for. The other panels (failed events, health, providers, what the daemon's
// /openapi.json says it can do beyond that) are loaded and started once its rows are on
// screen, so they compete with it neither in the daemon nor for the page's CPU.

import { Devices } from './devices.js';

const devices = new Devices();
devices.fromHash();
await devices.reload();
// Once the browser is idle, i.e. the rows' frame is done (at the latest after a second).
await new Promise((resolve) => requestIdleCallback(resolve, { timeout: 1000 }));

const [{ api }, { FailedEvents }, { Health }, { Jobs }, { Providers }] = await Promise.all([
  import('./api.js'), import('./events.js'), import('./health.js'), import('./jobs.js'),
  import('./providers.js')]);

const providers = new Providers();
const jobs = new Jobs();
new FailedEvents().load();
new Health().start();

const names = await providers.load();
const select = document.querySelector('#device-filters select[name=provider]');
const chosen = select.value;
for (const name of names) {
  if (![...select.options].some((o) => o.value === name)) select.append(new Option(name, name));
}
select.value = chosen;

const spec = await api('GET', '/openapi.json').catch(() => null);
const paths = (spec && spec.paths) || {};
if (paths['/jobs/{id}'] && paths['/jobs/{id}'].get) {
  jobs.enable();
  if (paths['/providers/{provider}/reconcile']) {
    providers.enableReconcile((id) => jobs.watch(id));
  }
}
