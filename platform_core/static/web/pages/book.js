// Book: a 1-on-1 slot, a workshop seat, a course or a package, paid with a saved card,
// with credits where the service has a credit price, or with credits first and the card
// for the rest. Seats and slots come from /bookings/services/ (free seats included); the
// server checks them (and the credits) again under a lock when the order is created.
import { api } from "../api.js";
import { balanceText, cardPicker, runPayment } from "../checkout.js";
import { formatMoney, minorToMajor } from "../money.js";
import {
  errorNotice,
  formatDate,
  formatDateTime,
  formatTime,
  h,
  loading,
  notice,
  section,
  show,
} from "../ui.js";

const MAX_SLOTS_PER_WINDOW = 24;
const KIND_ORDER = ["session", "workshop", "course", "package", "bundle"];
const KIND_TITLE = {
  session: "1-on-1 sessions",
  workshop: "Workshops",
  course: "Courses",
  package: "Packages",
  bundle: "Bundles",
};

/** Bookable slot starts inside the availability windows, one slot length apart. */
function slotStarts(service, now = Date.now()) {
  const step = (service.duration_minutes || 60) * 60000;
  const starts = [];
  for (const window of service.availability || []) {
    const end = Date.parse(window.end);
    let count = 0;
    for (let t = Date.parse(window.start); t + step <= end && count < MAX_SLOTS_PER_WINDOW; t += step) {
      if (t > now) {
        starts.push(new Date(t));
        count += 1;
      }
    }
  }
  return starts;
}

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
  const buttons = [];
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
  };
  const button = (text, onclick, attrs = {}) => {
    const b = h("button", { type: "button", ...attrs }, text);
    b.addEventListener("click", onclick);
    buttons.push(b);
    return b;
  };

  // Workshops and courses list their sessions (with free seats) from their own endpoint.
  const sessionsOf = new Map();
  await Promise.all(
    services
      .filter((s) => s.kind === "workshop" || s.kind === "course")
      .map(async (s) => {
        try {
          sessionsOf.set(s.id, await api.get(`/bookings/services/${s.id}/sessions/`, { auth: false }));
        } catch {
          sessionsOf.set(s.id, []);
        }
      }),
  );
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
      // Slots grouped by day: a day picker, then that day's free starts.
      const byDay = new Map();
      for (const start of slotStarts(service)) {
        const day = formatDate(start.toISOString());
        if (!byDay.has(day)) byDay.set(day, []);
        byDay.get(day).push(start);
      }
      const slots = h("div", { class: "slots" });
      const showDay = (day) =>
        show(
          slots,
          (byDay.get(day) || []).map((start) =>
            button(formatTime(start.toISOString()), () =>
              pay(
                service,
                { start_datetime: start.toISOString() },
                `${service.name} on ${formatDateTime(start.toISOString())}`,
              ),
            ),
          ),
        );
      const days = [...byDay.keys()];
      const dayPicker = h(
        "select",
        { name: "day", "aria-label": `Day for ${service.name}` },
        days.map((d) => h("option", { value: d }, d)),
      );
      dayPicker.addEventListener("change", () => showDay(dayPicker.value));
      if (days.length) showDay(days[0]);
      return h(
        "li",
        { class: "service", "data-service": service.name },
        head,
        h("p", {}, `${service.duration_minutes} minutes, ${price}`),
        days.length
          ? [h("label", { class: "day" }, "Day ", dayPicker), slots]
          : h("p", { class: "empty" }, "No free slots coming up."),
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

  const groups = KIND_ORDER.map((kind) => [kind, services.filter((s) => s.kind === kind)]).filter(
    ([, list]) => list.length,
  );
  show(
    root,
    title,
    section("Payment", how.element, picker.element),
    result,
    groups.length
      ? groups.map(([kind, list]) =>
          section(KIND_TITLE[kind], h("ul", { class: "services" }, list.map(entry))),
        )
      : notice("info", "Nothing to book right now."),
  );
}
