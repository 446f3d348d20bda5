// Small DOM helpers. The rule: text from the API goes in as text nodes, never as HTML.
import { ApiError, NetworkError } from "./api.js";

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "class") {
      el.className = value;
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/**
 * A message with a state the reader (and the browser tests) can tell apart:
 * loading, success, info, waiting, action, declined, auth-failed, network, error.
 */
export function notice(state, ...content) {
  const failed = ["declined", "auth-failed", "network", "error"].includes(state);
  return h(
    "div",
    { class: `notice notice-${state}`, role: failed ? "alert" : "status", "data-state": state },
    state === "loading" || state === "waiting" ? h("span", { class: "spinner" }) : null,
    ...content,
  );
}

export function loading(text = "Loading…") {
  return notice("loading", text);
}

/** The notice for a failure: a declined card, the network, or the server's own message. */
export function errorNotice(err, prefix = "") {
  if (err instanceof NetworkError) return notice("network", prefix, err.message);
  if (err instanceof ApiError && err.code === "card_declined") {
    return notice("declined", prefix, "Card declined: ", err.message, " Nothing was charged.");
  }
  if (err instanceof ApiError && err.code === "seats_unavailable" && err.extra.start_datetime) {
    // The server names the slot in UTC; the reader wants their own clock.
    return notice(
      "error",
      prefix,
      `The slot at ${formatDateTime(err.extra.start_datetime)} has just been taken; choose another time.`,
    );
  }
  if (err instanceof ApiError) return notice("error", prefix, err.message);
  console.error(err);
  return notice("error", prefix, err && err.message ? err.message : String(err));
}

/** Replace a container's content. */
export function show(container, ...content) {
  container.replaceChildren(...content.flat(Infinity).filter((c) => c !== null && c !== undefined));
}

const STATUS_TONE = {
  paid: "good",
  succeeded: "good",
  active: "good",
  confirmed: "good",
  failed: "bad",
  canceled: "muted",
  cancelled: "muted",
  refunded: "muted",
  partially_refunded: "muted",
  requires_action: "warn",
  pending: "warn",
  processing: "warn",
};

export function statusBadge(status) {
  const tone = STATUS_TONE[status] || "muted";
  return h("span", { class: `badge badge-${tone}`, "data-status": status }, status.replaceAll("_", " "));
}

export function formatDateTime(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function formatTime(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleTimeString(undefined, { timeStyle: "short" });
}

export function formatDate(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleDateString(undefined, { dateStyle: "medium" });
}

export function cardLabel(card) {
  const brand = card.card_brand ? card.card_brand[0].toUpperCase() + card.card_brand.slice(1) : "Card";
  return `${brand} •••• ${card.last4}`;
}

export function section(title, ...content) {
  return h("section", { class: "panel" }, h("h2", {}, title), ...content);
}
