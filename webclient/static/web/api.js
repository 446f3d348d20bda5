// The API client: JSON over /api/v1/ with the bearer token kept in sessionStorage.
//
// The rule: every failure reaches the caller as an ApiError (the server answered
// `{code, message, extra}`) or a NetworkError (it did not answer), so each page
// can say which of the two happened. Types: clients/typescript/api.d.ts.
import { config } from "./config.js";

/** @typedef {import("../../../clients/typescript/api").components["schemas"]} Schemas */

const TOKEN_KEY = "tollgate.token";
const USERNAME_KEY = "tollgate.username";
const REQUEST_TIMEOUT_MS = 30000;

export class ApiError extends Error {
  constructor(status, body) {
    super(body.message || `The server answered ${status}.`);
    this.name = "ApiError";
    this.status = status;
    this.code = body.code || `http_${status}`;
    this.extra = body.extra || {};
  }
}

export class NetworkError extends Error {
  constructor(cause, message = "Could not reach Tollgate: check your connection and try again.") {
    super(message);
    this.name = "NetworkError";
    this.cause = cause;
  }
}

export const session = {
  token: () => sessionStorage.getItem(TOKEN_KEY),
  username: () => sessionStorage.getItem(USERNAME_KEY) || "",
  save(token, username) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(USERNAME_KEY, username);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(USERNAME_KEY);
  },
};

let unauthorized = () => {};

/** Called when a request with the token answers 401: the token expired or was revoked. */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

export async function request(method, path, { body, headers = {}, auth = true } = {}) {
  const sent = { Accept: "application/json", ...headers };
  if (body !== undefined) sent["Content-Type"] = "application/json";
  const token = session.token();
  if (auth && token) sent.Authorization = `Bearer ${token}`;
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), REQUEST_TIMEOUT_MS);
  let response;
  let text;
  try {
    response = await fetch(config.apiBase + path, {
      method,
      headers: sent,
      body: body === undefined ? undefined : JSON.stringify(body),
      // The token is this client's identity; an admin session cookie must not stand in for it.
      credentials: "omit",
      signal: timeout.signal,
    });
    text = await response.text();
  } catch (err) {
    throw new NetworkError(err);
  } finally {
    clearTimeout(timer);
  }
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data && typeof data === "object" ? data : {});
    if (response.status === 401 && auth && token) unauthorized(error);
    throw error;
  }
  return data;
}

export const api = {
  get: (path, options) => request("GET", path, options),
  post: (path, body = {}, options = {}) => request("POST", path, { ...options, body }),
  delete: (path, options) => request("DELETE", path, options),
};

/** A random key for the `Idempotency-Key` header (works without a secure context too). */
export function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
