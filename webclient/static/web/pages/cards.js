// Saved cards: add one (SetupIntent + Stripe.js confirmCardSetup), make one the
// default, delete one. Card numbers go to Stripe from the browser, never to Tollgate.
import { api } from "../api.js";
import { savedCards } from "../data.js";
import { loadStripe } from "../stripe.js";
import { cardLabel, errorNotice, h, loading, notice, section, show } from "../ui.js";

const SAVED_CARD_WAIT_MS = 15000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function cardRow(card, refresh, message) {
  const actions = h("span", { class: "actions" });
  const run = async (text, work) => {
    actions.querySelectorAll("button").forEach((b) => (b.disabled = true));
    show(message, notice("loading", text));
    try {
      const done = await work();
      await refresh();
      show(message, notice("success", done));
    } catch (err) {
      show(message, errorNotice(err));
      actions.querySelectorAll("button").forEach((b) => (b.disabled = false));
    }
  };
  const askDelete = () =>
    show(
      actions,
      `Delete ${cardLabel(card)}? `,
      h(
        "button",
        {
          type: "button",
          class: "danger",
          onclick: () =>
            run("Deleting…", async () => {
              await api.delete(`/payments/methods/${card.id}/`);
              return `${cardLabel(card)} deleted.`;
            }),
        },
        "Yes, delete",
      ),
      h("button", { type: "button", class: "link", onclick: () => show(actions, ...buttons()) }, "Keep it"),
    );
  const buttons = () => [
    card.is_default
      ? null
      : h(
          "button",
          {
            type: "button",
            onclick: () =>
              run("Saving…", async () => {
                await api.post("/payments/methods/default/", { payment_method_id: card.id });
                return `${cardLabel(card)} is now your default card.`;
              }),
          },
          "Make default",
        ),
    h("button", { type: "button", class: "danger", onclick: askDelete }, "Delete"),
  ];
  show(actions, ...buttons());
  const expiry =
    card.exp_month && card.exp_year
      ? `expires ${String(card.exp_month).padStart(2, "0")}/${card.exp_year}`
      : "";
  return h(
    "li",
    { class: "saved-card", "data-last4": card.last4 },
    h("span", { class: "card-name" }, cardLabel(card)),
    " ",
    h("span", { class: "muted" }, expiry),
    card.is_default ? h("span", { class: "badge badge-good" }, "default") : null,
    actions,
  );
}

/** Stripe saves the card; Tollgate learns it from Stripe. Read until it shows. */
async function waitForSavedCard(paymentMethodId, isActive) {
  const deadline = Date.now() + SAVED_CARD_WAIT_MS;
  while (isActive() && Date.now() < deadline) {
    const cards = await savedCards();
    const found = cards.find((c) => c.stripe_payment_method_id === paymentMethodId);
    if (found || !paymentMethodId) return found;
    await sleep(500);
  }
  return null;
}

async function addCardForm(onSaved, isActive) {
  const message = h("div", { class: "messages", id: "add-card-result" });
  const mount = h("div", { class: "card-element", id: "card-element" });
  const submit = h("button", { type: "submit" }, "Save card");
  const form = h("form", { id: "add-card" }, mount, submit, message);
  let stripe;
  let card;
  try {
    stripe = await loadStripe();
    card = stripe.elements().create("card");
    card.mount(mount);
  } catch (err) {
    submit.disabled = true;
    show(message, errorNotice(err));
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    show(message, notice("loading", "Saving the card…"));
    try {
      const setup = await api.post("/payments/methods/setup/");
      const result = await stripe.confirmCardSetup(setup.client_secret, { payment_method: { card } });
      if (result.error) {
        show(
          message,
          notice("declined", "Stripe refused the card: ", result.error.message || "it could not be saved."),
        );
        return;
      }
      const pm = result.setupIntent && result.setupIntent.payment_method;
      const saved = await waitForSavedCard(typeof pm === "string" ? pm : pm && pm.id, isActive);
      await onSaved();
      show(
        message,
        saved
          ? notice("success", `Card saved: ${cardLabel(saved)}.`)
          : notice("waiting", "Stripe has the card; it will appear here shortly."),
      );
    } catch (err) {
      show(message, errorNotice(err));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

export async function render(root, { isActive, query }) {
  show(root, h("h1", {}, "Cards"), loading());
  const message = h("div", { class: "messages", id: "cards-result" });
  const list = h("ul", { class: "cards", id: "saved-cards" });
  const next = query.get("next");
  const after = h("p", { class: "next" });

  async function refresh() {
    const cards = await savedCards();
    if (!isActive()) return;
    show(
      list,
      cards.length
        ? cards.map((c) => cardRow(c, refresh, message))
        : h("li", { class: "empty" }, "No saved cards."),
    );
    show(after, next && cards.length ? h("a", { class: "button", href: `#${next}` }, "Continue") : null);
  }

  try {
    await refresh();
  } catch (err) {
    show(root, h("h1", {}, "Cards"), errorNotice(err));
    return;
  }
  const form = await addCardForm(refresh, isActive);
  if (!isActive()) return;
  show(root, h("h1", {}, "Cards"), section("Saved cards", list, message, after), section("Add a card", form));
}
