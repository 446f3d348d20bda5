// Orders, with live status: a page that shows an unsettled order reads it again
// until Stripe's webhook has settled it.
import { api } from "../api.js";
import { formatMoney } from "../money.js";
import { SETTLED, waitForOrder } from "../pay.js";
import { errorNotice, formatDateTime, h, loading, notice, section, show, statusBadge } from "../ui.js";
import { ordersTable } from "./dashboard.js";

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
  if (order.failure_message) rows.push(["Why it failed", order.failure_message]);
  return h(
    "div",
    { id: "order", "data-status": order.status },
    h(
      "dl",
      { class: "facts" },
      rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
    ),
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
                formatMoney(r.amount, r.currency),
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
  );
}

export async function renderDetail(root, { isActive, params }) {
  const id = params[0];
  const title = h("h1", {}, `Order #${id}`);
  const live = h("div", { class: "messages", id: "order-live" });
  const body = h("div");
  show(root, title, loading());

  const cancel = async () => {
    show(live, notice("loading", "Cancelling…"));
    try {
      const order = await api.post(`/payments/orders/${id}/cancel/`);
      show(body, detail(order, cancel));
      show(live, notice("success", "The order is cancelled."));
    } catch (err) {
      show(live, errorNotice(err));
    }
  };

  let order;
  try {
    order = await api.get(`/payments/orders/${id}/`);
  } catch (err) {
    show(root, title, errorNotice(err));
    return;
  }
  show(body, detail(order, cancel));
  show(root, title, live, body, h("p", {}, h("a", { href: "#/orders" }, "← All orders")));
  if (SETTLED.has(order.status)) return;
  show(live, notice("waiting", "Waiting for Stripe… this page updates on its own."));
  try {
    order = await waitForOrder(id, {
      isActive,
      onState: ({ order: seen, state }) => {
        if (seen) show(body, detail(seen, cancel));
        if (state === "network") show(live, notice("network", "Connection lost; still trying…"));
        if (state === "waiting")
          show(live, notice("waiting", "Waiting for Stripe… this page updates on its own."));
      },
    });
    if (!isActive() || !order) return;
    show(body, detail(order, cancel));
    show(live, order.timedOut ? notice("waiting", "Stripe has not answered yet; reload later.") : null);
  } catch (err) {
    if (isActive()) show(live, errorNotice(err));
  }
}
