// Subscription: start a plan (charged to a saved card, or on Stripe's page), cancel at
// period end, and Stripe's customer portal ("Manage billing").
import { api } from "../api.js";
import { cardPicker, paymentChoice, payOnStripe } from "../checkout.js";
import { purchaseType } from "../data.js";
import { formatMoney } from "../money.js";
import { errorNotice, formatDate, h, loading, notice, section, show, statusBadge } from "../ui.js";
import { planSummary } from "./dashboard.js";

const LIVE = new Set(["active", "trialing", "past_due", "incomplete"]);

function every(plan) {
  const unit = plan.interval || "month";
  return plan.interval_count > 1 ? `every ${plan.interval_count} ${unit}s` : `every ${unit}`;
}

export async function render(root, { isActive, rerender, query }) {
  const title = h("h1", {}, "Subscription");
  show(root, title, loading());
  let subs;
  let plans;
  let picker;
  try {
    const type = await purchaseType("subscription");
    plans = type ? type.catalog.plans || [] : [];
    [subs, picker] = await Promise.all([api.get("/payments/subscriptions/"), cardPicker("/subscription")]);
  } catch (err) {
    show(root, title, errorNotice(err));
    return;
  }
  if (!isActive()) return;
  const message = h("div", { class: "messages", id: "subscription-result" });
  const busy = (button, text) => {
    button.disabled = true;
    show(message, notice("loading", text));
  };

  const how = paymentChoice(picker);
  const start = async (plan, button) => {
    if (how.onStripe()) {
      button.disabled = true;
      const leaving = await payOnStripe(
        message,
        "/payments/subscriptions/",
        { plan_id: plan.id },
        { successRoute: "/subscription?checkout=success", cancelRoute: "/subscription?checkout=canceled" },
      );
      if (!leaving) button.disabled = false;
      return;
    }
    const card = picker.selected();
    if (!card) {
      show(message, notice("error", "Add a card first."));
      return;
    }
    busy(button, `Subscribing to ${plan.name}…`);
    try {
      const answer = await api.post("/payments/subscriptions/", {
        plan_id: plan.id,
        payment_method_id: card,
      });
      if (answer.checkout_url) {
        window.location.assign(answer.checkout_url);
        return;
      }
      await rerender();
      show(
        document.getElementById("subscription-result") || message,
        notice("success", `Subscribed to ${answer.subscription.plan_name} (${answer.subscription.status}).`),
      );
    } catch (err) {
      show(message, errorNotice(err));
      button.disabled = false;
    }
  };

  const cancel = async (sub, button) => {
    busy(button, "Cancelling…");
    try {
      const answer = await api.delete(`/payments/subscriptions/${sub.id}/`);
      await rerender();
      const end = answer.current_period_end ? ` on ${formatDate(answer.current_period_end)}` : "";
      show(
        document.getElementById("subscription-result") || message,
        notice("success", `${answer.plan_name} ends${end}.`),
      );
    } catch (err) {
      show(message, errorNotice(err));
      button.disabled = false;
    }
  };

  const portal = async (button) => {
    busy(button, "Opening Stripe's billing portal…");
    try {
      const { url } = await api.post("/payments/portal/");
      window.location.assign(url);
    } catch (err) {
      show(message, errorNotice(err, "The billing portal is not available: "));
      button.disabled = false;
    }
  };

  const live = subs.subscriptions.filter((s) => LIVE.has(s.status));
  const planList = h(
    "ul",
    { class: "plans" },
    plans.length
      ? plans.map((plan) => {
          const button = h(
            "button",
            { type: "button", disabled: live.length > 0 },
            `Subscribe to ${plan.name}`,
          );
          button.addEventListener("click", () => start(plan, button));
          return h(
            "li",
            { class: "plan" },
            h("h3", {}, plan.name),
            h("p", { class: "price" }, `${formatMoney(plan.price, plan.currency)} ${every(plan)}`),
            plan.credits_per_cycle ? h("p", {}, `${plan.credits_per_cycle} credits ${every(plan)}`) : null,
            button,
          );
        })
      : h("li", { class: "empty" }, "No plans for sale."),
  );
  const subList = h(
    "ul",
    { class: "subscriptions" },
    subs.subscriptions.length
      ? subs.subscriptions.map((s) => {
          const button =
            LIVE.has(s.status) && !s.cancel_at_period_end
              ? h("button", { type: "button", class: "danger" }, "Cancel at period end")
              : null;
          if (button) button.addEventListener("click", () => cancel(s, button));
          const end = s.current_period_end ? formatDate(s.current_period_end) : "";
          return h(
            "li",
            { "data-subscription-id": s.id },
            h("strong", {}, s.plan_name),
            " ",
            statusBadge(s.status),
            end ? (s.cancel_at_period_end ? ` ends ${end}` : ` renews ${end}`) : "",
            " ",
            button,
          );
        })
      : h("li", { class: "empty" }, "No subscriptions yet."),
  );
  const portalButton = h("button", { type: "button", id: "portal" }, "Manage billing");
  portalButton.addEventListener("click", () => portal(portalButton));

  if (query && query.get("checkout") === "success") {
    show(message, notice("waiting", "Paid on Stripe's page; your plan starts as soon as Stripe confirms it."));
  } else if (query && query.get("checkout") === "canceled") {
    show(message, notice("info", "You left Stripe's page; nothing was charged."));
  }
  show(
    root,
    title,
    section("Current plan", planSummary(subs.summary)),
    section("Plans", how.element, planList),
    section("My subscriptions", subList, portalButton),
    message,
  );
}
