// Book: a 1-on-1 slot, a workshop seat, a course or a package, paid with a saved card,
// with credits where the service has a credit price, or with credits first and the card
// for the rest. The server checks seats, slots and credits again under a lock.
// Seats come from /bookings/services/{id}/sessions/ and free 1-on-1 slots from
// /bookings/services/{id}/slots/; the server checks them again under a lock when the
// order is created. After each payment the listing is read again, so the seats and
// slots on screen are the ones still free.
import { api } from "../api.js";
import { balanceText, cardPicker, runPayment } from "../checkout.js";
import { formatMoney, minorToMajor } from "../money.js";
import { freeSlots, formatSlot, slotPicker } from "../slots.js";
import { errorNotice, formatDateTime, h, loading, notice, section, show } from "../ui.js";

const KIND_ORDER = ["session", "workshop", "course", "package", "bundle"];
const KIND_TITLE = {
  session: "1-on-1 sessions",
  workshop: "Workshops",
  course: "Courses",
  package: "Packages",
  bundle: "Bundles",
};

/**
 * How to pay: with my card (optionally my credits first, the card for the rest) or with
 * credits alone. Shows my balance; `credits()` and `creditsFirst()` say what was chosen.
 */
function payWith(balance, anyCreditPrice) {
  const byCard = h("input", { type: "radio", name: "pay-with", value: "card", checked: true });
  const byCredits = h("input", { type: "radio", name: "pay-with", value: "credits", id: "pay-credits" });
  const first = h("input", { type: "checkbox", name: "credits-first", id: "credits-first" });
  const shown = h("span", { id: "credit-balance" }, String(balance));
  if (!anyCreditPrice) return { element: null, credits: () => false, creditsFirst: () => false, setBalance() {} };
  return {
    element: h(
      "div",
      { class: "pay-with" },
      h("p", {}, "My credits: ", shown),
      h("label", {}, byCard, " Pay with my card"),
      " ",
      h("label", {}, first, " use my credits first (the card pays the rest)"),
      h("br"),
      h("label", {}, byCredits, " Pay with credits, where a service has a credit price"),
    ),
    credits: () => byCredits.checked,
    creditsFirst: () => first.checked,
    setBalance: (value) => (shown.textContent = String(value)),
  };
}

export async function render(root, { isActive }) {
  const title = h("h1", {}, "Book");
  show(root, title, loading());
  let services;
  let picker;
  let balance;
  try {
    [services, picker, { balance }] = await Promise.all([
      api.get("/bookings/services/", { auth: false }),
      cardPicker("/book"),
      api.get("/credits/balance/"),
    ]);
  } catch (err) {
    show(root, title, errorNotice(err));
    return;
  }
  if (!isActive()) return;
  const result = h("div", { class: "messages", id: "book-result" });
  const listing = h("div", { id: "book-listing" });
  let buttons = [];
  const how = payWith(balance, services.some((s) => s.credit_price));

  const pay = async (service, scheduling, what) => {
    const withCredits = how.credits();
    const card = picker.selected();
    if (withCredits && !service.credit_price) {
      show(result, notice("error", `${service.name} cannot be paid with credits; pay by card.`));
      return;
    }
    if (!withCredits && !card) {
      show(result, notice("error", "Add a card first."));
      return;
    }
    buttons.forEach((b) => (b.disabled = true));
    result.scrollIntoView({ block: "nearest" });
    const body = {
      service_id: service.id,
      scheduling_data: scheduling,
      amount: minorToMajor(service.price, service.currency),
    };
    if (withCredits) body.payment_type = "credits";
    else {
      body.payment_method_id = card;
      if (how.creditsFirst() && service.credit_price) body.apply_credits = true;
    }
    try {
      const order = await runPayment(result, body, {
        isActive,
        describeSuccess: async (paid) => [
          `${what} is booked`,
          paid.credits ? ` (${paid.credits} credits used; ${await balanceText()})` : "",
          "; see ",
          h("a", { href: "#/bookings" }, "my bookings"),
        ],
      });
      if (order && isActive()) how.setBalance((await api.get("/credits/balance/")).balance);
    } finally {
      buttons.forEach((b) => (b.disabled = b.dataset.full === "true"));
    }
    // Whatever happened, a seat or slot may have gone (ours or someone else's).
    if (isActive()) await refresh();
  };
  const button = (text, onclick, attrs = {}) => {
    const b = h("button", { type: "button", ...attrs }, text);
    b.addEventListener("click", onclick);
    buttons.push(b);
    return b;
  };

  // Workshops and courses list their sessions (with free seats), 1-on-1s their free slots.
  const sessionsOf = new Map();
  const slotsOf = new Map();
  const readAvailability = () =>
    Promise.all(
      services.map(async (s) => {
        if (s.kind === "session") {
          slotsOf.set(s.id, await freeSlots(s.id));
        } else if (s.kind === "workshop" || s.kind === "course") {
          try {
            sessionsOf.set(s.id, await api.get(`/bookings/services/${s.id}/sessions/`, { auth: false }));
          } catch {
            sessionsOf.set(s.id, []);
          }
        }
      }),
    );
  await readAvailability();
  if (!isActive()) return;

  const entry = (service) => {
    const price =
      formatMoney(service.price, service.currency) +
      (service.credit_price ? ` or ${service.credit_price} credits` : "");
    const head = [
      h("h3", {}, service.name),
      service.description ? h("p", { class: "muted" }, service.description) : null,
    ];
    if (service.kind === "session") {
      const picker = slotPicker(slotsOf.get(service.id) || [], {
        label: `Day for ${service.name}`,
        makeButton: (slot, text) =>
          button(text, () =>
            pay(service, { start_datetime: slot.start }, `${service.name} on ${formatSlot(slot.start)}`),
          ),
      });
      return h(
        "li",
        { class: "service", "data-service": service.name },
        head,
        h("p", {}, `${service.duration_minutes} minutes, ${price}`),
        picker || h("p", { class: "empty" }, "No free slots coming up."),
      );
    }
    if (service.kind === "workshop") {
      const sessions = sessionsOf.get(service.id) || [];
      return h(
        "li",
        { class: "service", "data-service": service.name },
        head,
        h("p", {}, `${price} a seat`),
        sessions.length
          ? h(
              "ul",
              { class: "sessions" },
              sessions.map((s) =>
                h(
                  "li",
                  { "data-session-id": s.id },
                  `${formatDateTime(s.start)}: `,
                  h(
                    "span",
                    { class: "seats" },
                    s.free_seats > 0 ? `${s.free_seats} of ${s.capacity} seats free` : "full",
                  ),
                  " ",
                  button(
                    "Book a seat",
                    () =>
                      pay(
                        service,
                        { service_session_id: s.id },
                        `A seat at ${service.name} on ${formatDateTime(s.start)}`,
                      ),
                    { disabled: s.free_seats < 1, "data-full": String(s.free_seats < 1) },
                  ),
                ),
              ),
            )
          : h("p", { class: "empty" }, "No sessions coming up."),
      );
    }
    if (service.kind === "course") {
      const sessions = sessionsOf.get(service.id) || [];
      const full = sessions.some((s) => s.free_seats < 1);
      return h(
        "li",
        { class: "service", "data-service": service.name },
        head,
        h(
          "ul",
          { class: "sessions" },
          sessions.map((s) => h("li", {}, `${formatDateTime(s.start)} (${s.free_seats} seats free)`)),
        ),
        button(full ? "Full" : `Enrol for ${price}`, () => pay(service, {}, `${service.name}`), {
          disabled: full || !sessions.length,
          "data-full": String(full || !sessions.length),
        }),
      );
    }
    return h(
      "li",
      { class: "service", "data-service": service.name },
      head,
      h(
        "ul",
        { class: "items" },
        (service.items || []).map((i) => h("li", {}, `${i.quantity} × ${i.name}`)),
      ),
      h("p", { class: "hint" }, "Sessions in it are scheduled later, from Bookings."),
      button(`Buy for ${price}`, () => pay(service, {}, service.name)),
    );
  };

  const paint = () => {
    buttons = [];
    const groups = KIND_ORDER.map((kind) => [kind, services.filter((s) => s.kind === kind)]).filter(
      ([, list]) => list.length,
    );
    show(
      listing,
      groups.length
        ? groups.map(([kind, list]) =>
            section(KIND_TITLE[kind], h("ul", { class: "services" }, list.map(entry))),
          )
        : notice("info", "Nothing to book right now."),
    );
  };
  async function refresh() {
    try {
      services = await api.get("/bookings/services/", { auth: false });
      await readAvailability();
    } catch {
      return; // keep what is on screen; the server checks every seat again anyway
    }
    if (isActive()) paint();
  }
  paint();
  show(root, title, section("Payment", how.element, picker.element), result, listing);
}
