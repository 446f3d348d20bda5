// Paying for an order with a saved card, the flow that works on Stripe and localstripe:
// the server creates and confirms the PaymentIntent with the card; when the bank wants
// 3-D Secure (`requires_action`) Stripe.js's `confirmCardPayment(client_secret)` shows
// its step; then the order is read until Stripe's webhook has settled it.
//
// An order that was not paid (no card yet, a declined card, a failed 3-D Secure check)
// is paid again on the same order with `payExistingOrder`.
//
// The rule: a request whose answer was lost (network error) is retried with the same
// Idempotency-Key, so the server returns the first order instead of charging twice.
import { api, NetworkError, newIdempotencyKey } from "./api.js";
import { loadStripe } from "./stripe.js";

export const SETTLED = new Set(["paid", "failed", "canceled", "refunded", "partially_refunded"]);
const POLL_FIRST_MS = 700;
const POLL_MAX_MS = 3000;
const WAIT_LIMIT_MS = 90000;

export class AuthenticationFailed extends Error {
  constructor(message, orderId) {
    super(message);
    this.name = "AuthenticationFailed";
    this.orderId = orderId;
  }
}

// Body (as JSON) -> the Idempotency-Key of its unanswered attempt.
const unanswered = new Map();

async function createOrder(body) {
  const signature = JSON.stringify(body);
  const key = unanswered.get(signature) || newIdempotencyKey();
  unanswered.set(signature, key);
  try {
    const created = await api.post("/payments/create/", body, {
      headers: { "Idempotency-Key": key },
    });
    unanswered.delete(signature);
    return created;
  } catch (err) {
    if (!(err instanceof NetworkError)) unanswered.delete(signature);
    throw err;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Read the order until it is settled (paid, failed, …) or `isActive()` turns false.
 * Answers the last order read; `timedOut` is set on it when Stripe took too long.
 */
export async function waitForOrder(orderId, { onState = () => {}, isActive = () => true } = {}) {
  const deadline = Date.now() + WAIT_LIMIT_MS;
  let delay = POLL_FIRST_MS;
  let order = null;
  while (isActive()) {
    try {
      order = await api.get(`/payments/orders/${orderId}/`);
      if (SETTLED.has(order.status)) return order;
      onState({ state: "waiting", order });
    } catch (err) {
      if (!(err instanceof NetworkError)) throw err;
      onState({ state: "network", error: err, order });
    }
    if (Date.now() > deadline) return { ...order, timedOut: true };
    await sleep(delay);
    delay = Math.min(POLL_MAX_MS, Math.round(delay * 1.3));
  }
  return order;
}

/**
 * Create an order paid with `body.payment_method_id`, take the card holder through
 * 3-D Secure if the bank asks, and wait for the outcome.
 *
 * Throws ApiError (402 `card_declined` for a declined card), NetworkError, or
 * AuthenticationFailed; answers the settled order otherwise.
 */
export async function payOrder(body, { onState = () => {}, isActive = () => true } = {}) {
  onState({ state: "loading" });
  const created = await createOrder({ payment_type: "intent", ...body });
  return settle(created, { onState, isActive });
}

/**
 * Pay my unpaid order again (pending, waiting for 3-D Secure, or failed) with the card
 * `paymentMethodId`, on the same order; then as `payOrder`. A declined card fails the
 * order again (ApiError 402); it can be paid again with another card.
 */
export async function payExistingOrder(
  orderId,
  paymentMethodId,
  { onState = () => {}, isActive = () => true } = {},
) {
  onState({ state: "loading" });
  const answer = await api.post(`/payments/orders/${orderId}/pay/`, {
    payment_method_id: paymentMethodId,
  });
  return settle(answer, { onState, isActive });
}

async function settle(created, { onState, isActive }) {
  if (created.status === "requires_action" || created.payment_status === "requires_action") {
    onState({ state: "action", created });
    const stripe = await loadStripe();
    const result = await stripe.confirmCardPayment(created.client_secret);
    const intent = result && result.paymentIntent;
    const ok = intent && ["succeeded", "processing", "requires_capture"].includes(intent.status);
    if (!ok) {
      const reason =
        (result && result.error && result.error.message) || "The bank's check was not completed.";
      throw new AuthenticationFailed(reason, created.order_id);
    }
  }
  if (SETTLED.has(created.status)) return created.order;
  return waitForOrder(created.order_id, { onState, isActive });
}
