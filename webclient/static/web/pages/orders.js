// Orders, with live status: a page that shows an order Stripe is still working on
// reads it again until Stripe's webhook has settled it. An unpaid order (no card yet,
// a declined card, a failed 3-D Secure check) offers to pay it with another card.
import { api } from "../api.js";
import { cardPicker, runPayment } from "../checkout.js";
import { formatMoney } from "../money.js";
import { SETTLED, payExistingOrder, waitForOrder } from "../pay.js";
import { errorNotice, formatDateTime, h, loading, notice, section, show, statusBadge } from "../ui.js";
import { ordersTable } from "./dashboard.js";

// What the customer may pay again, and what Stripe is still deciding.
const PAYABLE = new Set(["pending", "requires_action", "failed"]);
const WITH_STRIPE = new Set(["requires_action", "processing"]);
const AUTHENTICATION_FAILED = "payment_intent_authentication_failure";

function failureText(order) {
  if (order.failure_code === AUTHENTICATION_FAILED) {
    return "The bank's 3-D Secure check failed or was cancelled; nothing was charged.";
  }
  return order.failure_message;
}

const PAGE_SIZE = 20;
const LIST_POLL_MS = 2000;
const LIST_POLL_FOR_MS = 120000;

export async function renderList(root, { isActive, query }) {
  const offset = Math.max(0, Number.parseInt(query.get("offset") || "0", 10) || 0);
  show(root, h("h1", {}, "Orders"), loading());
  const table = h("div", { id: "orders" });
  const pager = h("p", { class: "pager" });
  let first = true;
  const deadline = Date.now() + LIST_POLL_FOR_MS;
  while (isActive() && Date.now() < deadline) {
    try {
      const page = await api.get(`/payments/orders/?limit=${PAGE_SIZE}&offset=${offset}`);
      if (!isActive()) return;
      show(table, ordersTable(page.items));
      show(
        pager,
        offset > 0 ? h("a", { href: `#/orders?offset=${Math.max(0, offset - PAGE_SIZE)}` }, "← Newer") : null,
        " ",
        offset + PAGE_SIZE < page.count
          ? h("a", { href: `#/orders?offset=${offset + PAGE_SIZE}` }, "Older →")
          : null,
      );
      if (first) {
        const back =
          query.get("checkout") === "success"
            ? notice("waiting", "Paid on Stripe's page; the order settles as soon as Stripe confirms it.")
            : null;
        show(root, h("h1", {}, "Orders"), back, section("My orders", table, pager));
      }
      first = false;
      if (page.items.every((o) => SETTLED.has(o.status))) return;
    } catch (err) {
      if (first) {
        show(root, h("h1", {}, "Orders"), errorNotice(err));
        return;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, LIST_POLL_MS));
  }
}

function detail(order, cancel) {
  const rows = [
    ["Status", statusBadge(order.status)],
    ["What", order.description],
    ["Amount", formatMoney(order.amount, order.currency)],
    ["Created", formatDateTime(order.created_at)],
    ["Paid", order.paid_at ? formatDateTime(order.paid_at) : "—"],
    ["Delivered", order.fulfilled ? "yes" : "not yet"],
  ];
  if (order.credits) {
    rows.push([
      "Paid with credits",
      order.card_amount
        ? `${order.credits} credits, and ${formatMoney(order.card_amount, order.currency)} by card`
        : `${order.credits} credits`,
    ]);
  }
  if (order.failure_message || order.failure_code) rows.push(["Why it failed", failureText(order)]);
  // An order paid with credits may be cancelled, for the credits back, until its cut-off.
  const creditsBack =
    order.payment_type === "credits" &&
    order.status === "paid" &&
    order.cancellable_until &&
    Date.parse(order.cancellable_until) > Date.now();
  return h(
    "div",
    { id: "order", "data-status": order.status },
    h(
      "dl",
      { class: "facts" },
      rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
    ),
    order.delivered && order.delivered.length
      ? section(
          "What you got",
          h(
            "dl",
            { class: "facts", id: "order-delivered" },
            order.delivered.map((line) => [h("dt", {}, line.label), h("dd", {}, line.value)]),
          ),
        )
      : null,
    order.payments.length
      ? section(
          "Payments",
          h(
            "ul",
            {},
            order.payments.map((p) =>
              h(
                "li",
                {},
                formatMoney(p.amount, p.currency),
                " ",
                statusBadge(p.status),
                " ",
                h("code", {}, p.stripe_payment_intent_id),
              ),
            ),
          ),
        )
      : null,
    order.refunds.length
      ? section(
          "Refunds",
          h(
            "ul",
            {},
            order.refunds.map((r) =>
              h(
                "li",
                {},
                r.method === "card"
                  ? formatMoney(r.amount, r.currency)
                  : `${r.credits} credits (${formatMoney(r.amount, r.currency)})`,
                " ",
                statusBadge(r.status),
                r.reason ? ` (${r.reason})` : "",
              ),
            ),
          ),
        )
      : null,
    ["pending", "requires_action"].includes(order.status)
      ? h("button", { type: "button", class: "danger", onclick: cancel }, "Cancel this order")
      : null,
    creditsBack
      ? h(
          "p",
          {},
          h(
            "button",
            { type: "button", class: "danger", id: "cancel-for-credits", onclick: cancel },
            `Cancel and get my ${order.credits} credits back`,
          ),
          ` (until ${formatDateTime(order.cancellable_until)})`,
        )
      : null,
  );
}

/** "Pay with another card": a saved card and a button, for an order still unpaid. */
async function payAgainSection(id, { isActive, onDone }) {
  const picker = await cardPicker(`/orders/${id}`);
  const result = h("div", { class: "messages", id: "pay-again-result" });
  const button = h("button", { type: "button", id: "pay-again" }, "Pay with this card");
  button.addEventListener("click", async () => {
    const card = picker.selected();
    if (!card) {
      show(result, notice("error", "Add a card first."));
      return;
    }
    button.disabled = true;
    try {
      await runPayment(result, null, {
        isActive,
        describeSuccess: async () => "the order is paid",
        start: (callbacks) => payExistingOrder(id, card, callbacks),
      });
      await onDone(result);
    } finally {
      button.disabled = false;
    }
  });
  return section("Pay with another card", picker.element, " ", button, result);
}

export async function renderDetail(root, { isActive, params }) {
  const id = params[0];
  const title = h("h1", {}, `Order #${id}`);
  const live = h("div", { class: "messages", id: "order-live" });
  const body = h("div");
  const payAgain = h("div", { id: "pay-again-section" });
  show(root, title, loading());

  let order;
  const render = (seen) => {
    order = seen;
    show(body, detail(seen, cancel));
    if (!PAYABLE.has(seen.status)) show(payAgain);
  };
  const cancel = async () => {
    show(live, notice("loading", "Cancelling…"));
    try {
      const after = await api.post(`/payments/orders/${id}/cancel/`);
      render(after);
      show(
        live,
        notice(
          "success",
          after.status === "refunded"
            ? `The order is cancelled; your ${after.credits} credits are back.`
            : "The order is cancelled.",
        ),
      );
    } catch (err) {
      show(live, errorNotice(err));
    }
  };
  const reload = async () => {
    try {
      render(await api.get(`/payments/orders/${id}/`));
    } catch (err) {
      show(live, errorNotice(err));
    }
  };
  // Once paid, the section goes; what the payment said stays, at the top.
  const afterPayAgain = async (outcome) => {
    const said = [...outcome.childNodes];
    await reload();
    if (!PAYABLE.has(order.status)) show(live, said);
  };

  try {
    order = await api.get(`/payments/orders/${id}/`);
  } catch (err) {
    show(root, title, errorNotice(err));
    return;
  }
  const offerPayAgain = async () => {
    if (!PAYABLE.has(order.status) || payAgain.childElementCount) return;
    try {
      show(payAgain, await payAgainSection(id, { isActive, onDone: afterPayAgain }));
    } catch (err) {
      show(payAgain, errorNotice(err));
    }
  };

  render(order);
  show(root, title, live, body, payAgain, h("p", {}, h("a", { href: "#/orders" }, "← All orders")));
  await offerPayAgain();
  if (order.status === "pending") {
    show(live, notice("info", "Not paid yet: pay it with a card below, or cancel it."));
  }
  if (order.status === "failed" && order.failure_code === AUTHENTICATION_FAILED) {
    show(live, notice("auth-failed", failureText(order), " Pay it with another card below."));
  }
  if (!WITH_STRIPE.has(order.status)) return;
  show(live, notice("waiting", "Waiting for Stripe… this page updates on its own."));
  try {
    const settled = await waitForOrder(id, {
      isActive,
      onState: ({ order: seen, state }) => {
        if (seen) render(seen);
        if (state === "network") show(live, notice("network", "Connection lost; still trying…"));
        if (state === "waiting")
          show(live, notice("waiting", "Waiting for Stripe… this page updates on its own."));
      },
    });
    if (!isActive() || !settled) return;
    render(settled);
    await offerPayAgain();
    if (settled.timedOut) show(live, notice("waiting", "Stripe has not answered yet; reload later."));
    else if (settled.status === "failed" && settled.failure_code === AUTHENTICATION_FAILED)
      show(live, notice("auth-failed", failureText(settled), " Pay it with another card below."));
    else show(live);
  } catch (err) {
    if (isActive()) show(live, errorNotice(err));
  }
}
