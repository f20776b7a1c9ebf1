// The daemon's HTTP API, as documented in /openapi.json. The bearer token, when the daemon
// asks for one (a 401), is asked once and kept in sessionStorage: for this tab only, and
// surviving a reload.

const TOKEN_KEY = 'rps-service.token';
// The API's root is the folder above /ui/, so the console also works behind a prefix.
const ROOT = new URL('..', document.baseURI);

export class ApiError extends Error {
  constructor(status, body) {
    super(describe(status, body));
    this.status = status;
    this.body = body;
  }
}

function describe(status, body) {
  const text = body && typeof body.error === 'string' ? body.error
    : body && typeof body.database === 'string' ? `database ${body.database}`
      : `the daemon answered ${status}`;
  const details = (body && Array.isArray(body.details) ? body.details : [])
    .map((d) => [d.field, d.message].filter(Boolean).join(': '))
    .filter(Boolean);
  return details.length ? `${text}: ${details.join('; ')}` : text;
}

/** A URL of the API: path and query parameters (empty ones left out). */
export function url(path, params = {}) {
  const target = new URL(path.replace(/^\//, ''), ROOT);
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') {
      target.searchParams.set(key, String(value));
    }
  }
  return target;
}

/** Call the API; the JSON answer, or an ApiError with the daemon's message. */
export async function api(method, path, { params, body } = {}) {
  for (;;) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = { method, headers, cache: 'no-store' };
    // Every state-changing call is JSON, even one without a body (a retry): the daemon
    // refuses anything else, which is what keeps other sites' pages out.
    if (method !== 'GET' && method !== 'HEAD') headers['Content-Type'] = 'application/json';
    if (body !== undefined) init.body = JSON.stringify(body);
    let response;
    try {
      response = await fetch(url(path, params), init);
    } catch {
      throw new ApiError(0, { error: 'the daemon does not answer (is it running?)' });
    }
    if (response.status === 401) {
      await askToken(token);
      continue;
    }
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }
}

let asking = null; // one prompt for all the calls refused together

function askToken(refused) {
  const current = sessionStorage.getItem(TOKEN_KEY);
  if (current && current !== refused) return Promise.resolve(); // another call got one
  asking ??= prompt(refused).finally(() => { asking = null; });
  return asking;
}

function prompt(refused) {
  const dialog = document.getElementById('token-dialog');
  const form = document.getElementById('token-form');
  const input = document.getElementById('token-input');
  const note = document.getElementById('token-note');
  if (refused) {
    note.textContent = 'The daemon refused that token. Enter the api_token of its rps.ini.';
  }
  input.value = '';
  return new Promise((resolve) => {
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      dialog.close();
      resolve();
    }, { once: true });
    dialog.oncancel = (event) => event.preventDefault(); // Escape: there is no way around it
    dialog.showModal();
    input.focus();
  });
}
