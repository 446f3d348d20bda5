// Buy credits: a pack, or a custom number of credits at the catalog's rate.
import { balanceText, cardPicker, paymentChoice, payOnStripe, runPayment } from "../checkout.js";
import { purchaseType } from "../data.js";
import { formatMoney, minorToMajor, multiplyMinor } from "../money.js";
import { errorNotice, h, loading, notice, section, show } from "../ui.js";

export async function render(root, { isActive, query }) {
  show(root, h("h1", {}, "Buy credits"), loading());
  let credits;
  let picker;
  try {
    [credits, picker] = await Promise.all([purchaseType("credits"), cardPicker("/buy")]);
  } catch (err) {
    show(root, h("h1", {}, "Buy credits"), errorNotice(err));
    return;
  }
  if (!credits) {
    show(root, h("h1", {}, "Buy credits"), notice("info", "This server does not sell credits."));
    return;
  }
  const { packs, rate } = credits.catalog;
  const result = h("div", { class: "messages", id: "pay-result" });
  const buttons = [];
  const how = paymentChoice(picker);

  async function buy(body, label) {
    if (how.onStripe()) {
      buttons.forEach((b) => (b.disabled = true));
      const leaving = await payOnStripe(
        result,
        "/payments/create/",
        { is_credit_purchase: true, ...body },
        { successRoute: "/orders?checkout=success", cancelRoute: "/buy?checkout=canceled" },
      );
      if (!leaving) buttons.forEach((b) => (b.disabled = false));
      return;
    }
    const card = picker.selected();
    if (!card) {
      show(result, notice("error", "Add a card first."));
      return;
    }
    buttons.forEach((b) => (b.disabled = true));
    try {
      await runPayment(
        result,
        { is_credit_purchase: true, ...body, payment_method_id: card },
        { isActive, describeSuccess: async () => `${label}; ${await balanceText()}.` },
      );
    } finally {
      buttons.forEach((b) => (b.disabled = false));
      reprice(); // the custom Buy stays off while its amount is out of range
    }
  }

  const packList = h(
    "ul",
    { class: "packs" },
    packs.map((pack) => {
      const price = formatMoney(pack.price, pack.currency);
      const button = h(
        "button",
        {
          type: "button",
          "data-pack": pack.name,
          onclick: () =>
            buy(
              { pack_id: pack.id, amount: minorToMajor(pack.price, pack.currency) },
              `${pack.credits} credits added`,
            ),
        },
        `Buy ${pack.name} for ${price}`,
      );
      buttons.push(button);
      return h(
        "li",
        { class: "pack" },
        h("h3", {}, pack.name),
        h("p", {}, `${pack.credits} credits`),
        h("p", { class: "price" }, price),
        button,
      );
    }),
  );

  const count = h("input", {
    type: "number",
    name: "credit_amount",
    id: "custom-credits",
    min: rate.min_credits,
    max: rate.max_credits,
    step: 1,
    value: rate.min_credits * 10 <= rate.max_credits ? rate.min_credits * 10 : rate.min_credits,
  });
  const customPrice = h("span", { class: "price", id: "custom-price" });
  const customButton = h("button", { type: "submit" }, "Buy");
  buttons.push(customButton);
  const range = h(
    "p",
    { class: "hint", id: "custom-range", "aria-live": "polite" },
    `From ${rate.min_credits} to ${rate.max_credits} credits.`,
  );
  count.setAttribute("aria-describedby", "custom-range");
  const wanted = () => (/^\d+$/.test(count.value.trim()) ? Number(count.value.trim()) : NaN);
  const valid = (n) => Number.isSafeInteger(n) && n >= rate.min_credits && n <= rate.max_credits;
  /** What is wrong with the number typed, or null. */
  const problem = (n) => {
    if (count.value.trim() === "") return `Enter a number of credits: at least ${rate.min_credits}.`;
    if (Number.isNaN(n)) return "Enter a whole number of credits.";
    if (n < rate.min_credits) return `The minimum is ${rate.min_credits} credits.`;
    if (n > rate.max_credits) return `The maximum is ${rate.max_credits} credits.`;
    return null;
  };
  const reprice = () => {
    const n = wanted();
    const wrong = valid(n) ? null : problem(n);
    customPrice.textContent = wrong ? "—" : formatMoney(multiplyMinor(rate.unit_amount, n), rate.currency);
    customButton.disabled = Boolean(wrong);
    count.setAttribute("aria-invalid", String(Boolean(wrong)));
    range.textContent = wrong || `From ${rate.min_credits} to ${rate.max_credits} credits.`;
    range.className = wrong ? "hint invalid" : "hint";
  };
  count.addEventListener("input", reprice);
  reprice();
  const custom = h(
    "form",
    {
      class: "custom",
      onsubmit: (event) => {
        event.preventDefault();
        const n = wanted();
        if (!valid(n)) {
          reprice();
          return;
        }
        const amount = minorToMajor(multiplyMinor(rate.unit_amount, n), rate.currency);
        buy({ credit_amount: n, amount }, `${n} credits added`);
      },
    },
    h("label", {}, "Credits ", count),
    " for ",
    customPrice,
    " ",
    customButton,
    range,
    h("p", { class: "hint" }, `${formatMoney(rate.unit_amount, rate.currency)} per credit.`),
  );

  if (query && query.get("checkout") === "canceled") {
    show(result, notice("info", "You left Stripe's page; nothing was charged."));
  }
  show(
    root,
    h("h1", {}, "Buy credits"),
    section("Payment", how.element),
    section("Credit packs", packList),
    section("Custom amount", custom),
    result,
  );
}
