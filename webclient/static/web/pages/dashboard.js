// Dashboard: balance (with its lots and what expires when), the active plan, recent orders.
import { api } from "../api.js";
import { formatMoney } from "../money.js";
import { errorNotice, formatDate, formatDateTime, h, loading, section, show, statusBadge } from "../ui.js";

/** Orders as a table; on a narrow screen each row stacks, each cell under its label. */
export function ordersTable(orders) {
  if (!orders.length) return h("p", { class: "empty" }, "No orders yet.");
  const cell = (label, content, attrs = {}) => h("td", { "data-label": label, ...attrs }, content);
  return h(
    "table",
    { class: "orders" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["Order", "What", "Amount", "Status", "Created"].map((t) => h("th", {}, t)),
      ),
    ),
    h(
      "tbody",
      {},
      orders.map((o) =>
        h(
          "tr",
          { "data-order-id": o.id },
          cell("Order", h("a", { href: `#/orders/${o.id}` }, `#${o.id}`)),
          cell("What", o.description, { class: "what" }),
          cell("Amount", formatMoney(o.amount, o.currency), { class: "amount" }),
          cell("Status", statusBadge(o.status)),
          cell("Created", formatDateTime(o.created_at)),
        ),
      ),
    ),
  );
}

export function planSummary(summary) {
  if (!summary.has_active_subscription) {
    return h("p", { id: "plan" }, "No active plan. ", h("a", { href: "#/subscription" }, "Choose one"));
  }
  const when = summary.current_period_end ? formatDate(summary.current_period_end) : "";
  return h(
    "p",
    { id: "plan" },
    h("strong", {}, summary.plan_name),
    " ",
    statusBadge(summary.status),
    when ? (summary.cancel_at_period_end ? ` ends on ${when}` : ` renews on ${when}`) : "",
  );
}

/** What the balance is made of: paid and promotional credits, what expires soon, the lots. */
export function balanceDetail(balance) {
  const parts = [];
  const { paid, promotional } = balance.by_category;
  parts.push(h("p", { id: "balance-categories" }, `${paid} paid, ${promotional} promotional`));
  if (balance.frozen) {
    parts.push(h("p", { class: "muted" }, `${balance.frozen} held while a purchase is disputed`));
  }
  const soon = balance.expiring_soon;
  if (soon.credits) {
    parts.push(
      h(
        "p",
        { id: "expiring-soon", class: "warning" },
        `${soon.credits} expire within ${soon.within_days} days (first on ${formatDate(soon.first_expires_at)})`,
      ),
    );
  }
  if (balance.lots.length) {
    const row = (lot) =>
      h(
        "tr",
        { "data-lot-id": lot.id },
        h("td", { "data-label": "Credits" }, `${lot.remaining} of ${lot.amount}`),
        h("td", { "data-label": "Kind" }, lot.category),
        h("td", { "data-label": "Expires" }, lot.expires_at ? formatDate(lot.expires_at) : "never"),
      );
    parts.push(
      h(
        "details",
        { id: "lots" },
        h("summary", {}, `${balance.lots_open} lot${balance.lots_open === 1 ? "" : "s"}, spent in this order`),
        h(
          "table",
          { class: "orders" },
          h("thead", {}, h("tr", {}, ["Credits", "Kind", "Expires"].map((t) => h("th", {}, t)))),
          h("tbody", {}, balance.lots.map(row)),
        ),
      ),
    );
  }
  return parts;
}

export async function render(root) {
  show(root, h("h1", {}, "Dashboard"), loading());
  try {
    const [balance, subscriptions, orders] = await Promise.all([
      api.get("/credits/balance/"),
      api.get("/payments/subscriptions/"),
      api.get("/payments/orders/?limit=5"),
    ]);
    show(
      root,
      h("h1", {}, "Dashboard"),
      h(
        "div",
        { class: "tiles" },
        section(
          "Balance",
          h(
            "p",
            { class: "big", id: "balance", "data-balance": balance.balance },
            `${balance.balance} credits`,
          ),
          balanceDetail(balance),
          h("a", { class: "button", href: "#/buy" }, "Buy credits"),
        ),
        section("Plan", planSummary(subscriptions.summary)),
      ),
      section(
        "Recent orders",
        ordersTable(orders.items),
        orders.count > orders.items.length
          ? h("a", { href: "#/orders" }, `All ${orders.count} orders`)
          : null,
      ),
    );
  } catch (err) {
    show(root, h("h1", {}, "Dashboard"), errorNotice(err));
  }
}
