// The public v2 API, called with the user's token: the console has no other way in.

const TOKEN_KEY = "kafstash.console.token";

export class Unauthorized extends Error {}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** Query parameters from an object; arrays repeat the key, empty values are left out. */
export function query(params) {
  const out = new URLSearchParams();
  for (const [key, value] of Object.entries(params ?? {})) {
    for (const v of Array.isArray(value) ? value : [value]) {
      if (v !== undefined && v !== null && v !== "") out.append(key, String(v));
    }
  }
  return out;
}

/** One call: the parsed JSON answer, or Unauthorized (401) / ApiError ({"error": ...}). */
export async function call(method, path, params) {
  const url = new URL(path, window.location.origin);
  url.search = query(params).toString();
  const res = await fetch(url, {
    method,
    headers: { Authorization: `Bearer ${token() ?? ""}` },
    credentials: "omit",
    cache: "no-store",
  });
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (res.status === 401) {
    clearToken();
    throw new Unauthorized(data?.error ?? "unauthorized");
  }
  if (!res.ok) throw new ApiError(res.status, data?.error ?? `${res.status} ${res.statusText}`);
  return data;
}

export const get = (path, params) => call("GET", path, params);
export const post = (path, params) => call("POST", path, params);
export const del = (path, params) => call("DELETE", path, params);
export const enc = encodeURIComponent;

/**
 * Events newest first from GET /v2/events, following the cursor (which runs on into the Iceberg
 * history server-side) until `limit` events or the last page.
 */
export async function events(params, limit) {
  const out = [];
  let cursor;
  do {
    const count = Math.min(1000, limit - out.length);
    const page = await get("/v2/events", { ...params, count, cursor });
    out.push(...(page?.events ?? []));
    cursor = page?.cursor;
  } while (cursor && out.length < limit);
  return { events: out, truncated: Boolean(cursor) };
}
