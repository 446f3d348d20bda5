// The pieces every purchase page shares: choosing a saved card, and showing a payment's
// progress (paying, 3-D Secure, waiting for Stripe, paid, declined, failed) as it happens.
import { api } from "./api.js";
import { savedCards } from "./data.js";
import { AuthenticationFailed, payOrder } from "./pay.js";
import { cardLabel, errorNotice, h, notice, show } from "./ui.js";

/** A <select> of my saved cards (the default chosen), or a prompt to add one. */
export async function cardPicker(returnTo) {
  const cards = await savedCards();
  if (!cards.length) {
    return {
      element: h(
        "p",
        { class: "no-card" },
        "You have no saved card. ",
        h("a", { href: `#/cards?next=${encodeURIComponent(returnTo)}` }, "Add a card"),
        " to pay.",
      ),
      selected: () => null,
    };
  }
  const select = h(
    "select",
    { name: "card", id: "pay-card" },
    cards.map((c) =>
      h(
        "option",
        { value: c.stripe_payment_method_id, selected: c.is_default },
        cardLabel(c) + (c.is_default ? " (default)" : ""),
      ),
    ),
  );
  return {
    element: h(
      "label",
      { class: "card-picker" },
      "Pay with ",
      select,
      " ",
      h("a", { href: "#/cards" }, "Manage cards"),
    ),
    selected: () => select.value,
  };
}

function orderLink(orderId) {
  return h("a", { href: `#/orders/${orderId}` }, `order #${orderId}`);
}

/**
 * Run a payment and keep `container` telling where it stands. `describeSuccess(order)`
 * gives the success text (it may read the new balance). `start(callbacks)` pays
 * (default: a new order made from `body`). Answers the order, or null.
 */
export async function runPayment(
  container,
  body,
  { isActive, describeSuccess, start = (callbacks) => payOrder(body, callbacks) },
) {
  const onState = ({ state, order }) => {
    if (!isActive()) return;
    if (state === "loading") show(container, notice("loading", "Paying…"));
    if (state === "action") {
      show(
        container,
        notice("action", "Your bank wants to confirm this payment (3-D Secure). Follow its steps."),
      );
    }
    if (state === "waiting") {
      show(
        container,
        notice("waiting", "Waiting for Stripe to confirm the payment (", orderLink(order.id), ")…"),
      );
    }
    if (state === "network") {
      show(container, notice("network", "Connection lost while waiting for the payment; still trying…"));
    }
  };
  try {
    const order = await start({ onState, isActive });
    if (!isActive() || !order) return order;
    if (order.status === "paid") {
      show(
        container,
        notice("success", "Paid: ", await describeSuccess(order), " (", orderLink(order.id), ")"),
      );
    } else if (order.timedOut) {
      show(
        container,
        notice("waiting", "Stripe has not confirmed yet; ", orderLink(order.id), " updates on its own."),
      );
    } else if (order.status === "failed") {
      const why = order.failure_message || "The payment failed.";
      const state = order.failure_code === "card_declined" ? "declined" : "error";
      show(container, notice(state, why, " (", orderLink(order.id), " can be paid with another card)"));
    } else {
      show(
        container,
        notice("info", `The order is ${order.status.replaceAll("_", " ")} (`, orderLink(order.id), ")."),
      );
    }
    return order;
  } catch (err) {
    if (!isActive()) return null;
    if (err instanceof AuthenticationFailed) {
      show(
        container,
        notice(
          "auth-failed",
          "3-D Secure failed: ",
          err.message,
          " Nothing was charged; ",
          orderLink(err.orderId),
          " can be paid with another card.",
        ),
      );
    } else {
      const orderId = err.extra && err.extra.order_id;
      show(container, errorNotice(err), orderId ? h("p", {}, "See ", orderLink(orderId), ".") : null);
    }
    return null;
  }
}

/** The new balance, for a success message about credits. */
export async function balanceText() {
  const { balance } = await api.get("/credits/balance/");
  return `your balance is ${balance} credits`;
}

/** An address in this client that Stripe's page may send the customer back to. */
export function returnUrl(route) {
  return `${location.origin}${location.pathname}#${route}`;
}

/**
 * How to pay: a saved card (the picker) or Stripe's own payment page (Checkout).
 * Answers the element and `onStripe()`, true when the reader chose Stripe's page.
 */
export function paymentChoice(picker) {
  const withCard = h("input", { type: "radio", name: "pay-how", value: "intent", checked: true });
  const onStripe = h("input", { type: "radio", name: "pay-how", value: "checkout", id: "pay-on-stripe" });
  return {
    element: h(
      "div",
      { class: "pay-how" },
      h("label", {}, withCard, " Pay with a saved card"),
      picker.element,
      h("label", {}, onStripe, " Pay on Stripe's page"),
    ),
    onStripe: () => onStripe.checked,
  };
}

/**
 * Start a Checkout Session for `body` at `path` and send the browser to Stripe's page;
 * it comes back to `successRoute` once paid, or to `cancelRoute`.
 */
export async function payOnStripe(container, path, body, { successRoute, cancelRoute }) {
  show(container, notice("loading", "Opening Stripe's payment page…"));
  try {
    const answer = await api.post(path, {
      ...body,
      payment_type: "checkout",
      success_url: returnUrl(successRoute),
      cancel_url: returnUrl(cancelRoute),
    });
    window.location.assign(answer.checkout_url);
    return true;
  } catch (err) {
    const orderId = err.extra && err.extra.order_id;
    show(container, errorNotice(err), orderId ? h("p", {}, "See ", orderLink(orderId), ".") : null);
    return false;
  }
}
