// The public HTTP API, as the console calls it: `fetch` with the token from this tab's
// sessionStorage in `Authorization: Bearer` — never in a URL, never in a log.

const KEY = 'cardrules.token';

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

/** An error answer: the HTTP status and the server's `{"error": …}` message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Calls `method path` with an optional JSON body; answers the JSON, or throws ApiError. */
export async function call(method, path, body) {
  const headers = { Accept: 'application/json' };
  const secret = token.get();
  if (secret) headers.Authorization = `Bearer ${secret}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
    credentials: 'omit',
    referrerPolicy: 'no-referrer',
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw new ApiError(response.status, (data && data.error) || response.statusText);
  }
  return data;
}

/** A path from segments, each encoded: `path('v1', 'programs', p, 'cards', c)`. */
export function path(...segments) {
  return '/' + segments.map((s) => encodeURIComponent(s)).join('/');
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** A fresh request id, so that a retried request is answered once (`id`). */
export function requestId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return 'console/' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Now, as RFC 3339 (UTC). */
export function now() {
  return new Date().toISOString().replace(/\.\d+Z$/, 'Z');
}

// The routes the console uses, one function each.
export const api = {
  caller: () => call('GET', '/v1/caller'),
  programs: () => call('GET', '/v1/programs'),
  program: (p) => call('GET', path('v1', 'programs', p)),
  coverage: (p) => call('GET', path('v1', 'programs', p, 'coverage')),
  venues: () => call('GET', '/v1/venues'),
  decide: (request) => call('POST', '/v1/decisions', request),
  card: (p, c) => call('GET', path('v1', 'programs', p, 'cards', c)),
  allowances: (p, c, params) => call('GET', path('v1', 'programs', p, 'cards', c, 'allowances') + query(params)),
  history: (p, c, params) => call('GET', path('v1', 'programs', p, 'cards', c, 'history') + query(params)),
  why: (p, c, seq, language) => call('GET', path('v1', 'programs', p, 'cards', c, 'history', String(seq), 'why') + query({ language })),
  register: (p, c, holder) => call('PUT', path('v1', 'programs', p, 'holders', c), holder),
  patch: (p, c, attributes) => call('PATCH', path('v1', 'programs', p, 'holders', c), { attributes }),
};
