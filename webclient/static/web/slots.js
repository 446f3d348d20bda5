// 1-on-1 slots: the free ones come from the server (GET /bookings/services/{id}/slots/),
// which leaves out every slot already booked or held; they are shown in the reader's
// own time zone, grouped by day.
import { api } from "./api.js";
import { formatTime, h, show } from "./ui.js";

/** The reader's time zone, as the browser names it ("Europe/Paris"). */
export function localZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "your time zone";
}

/** "Mon, Dec 7": a slot's day in the reader's time zone. */
export function formatDay(iso) {
  return new Date(iso).toLocaleDateString(undefined, { weekday: "short", month: "short", day: "numeric" });
}

/** "Mon, Dec 7, 10:00 AM": a slot's start in the reader's time zone. */
export function formatSlot(iso) {
  return `${formatDay(iso)}, ${formatTime(iso)}`;
}

/** The free slots of a 1-on-1 service, soonest first ([] when it cannot be read). */
export async function freeSlots(serviceId) {
  try {
    return await api.get(`/bookings/services/${serviceId}/slots/`, { auth: false });
  } catch {
    return [];
  }
}

/**
 * A day picker and that day's free starts as buttons; `makeButton(slot, text)` makes
 * each button (the page decides what a click does). Answers null when no slot is free.
 */
export function slotPicker(slots, { label, makeButton }) {
  if (!slots.length) return null;
  const byDay = new Map();
  for (const slot of slots) {
    const day = formatDay(slot.start);
    if (!byDay.has(day)) byDay.set(day, []);
    byDay.get(day).push(slot);
  }
  const times = h("div", { class: "slots" });
  const days = [...byDay.keys()];
  const dayPicker = h(
    "select",
    { name: "day", "aria-label": label },
    days.map((d) => h("option", { value: d }, d)),
  );
  const showDay = (day) =>
    show(
      times,
      byDay.get(day).map((slot) => makeButton(slot, formatTime(slot.start))),
    );
  dayPicker.addEventListener("change", () => showDay(dayPicker.value));
  showDay(days[0]);
  return [
    h("label", { class: "day" }, "Day ", dayPicker),
    times,
    h("p", { class: "hint zone" }, `Times in your time zone (${localZone()}).`),
  ];
}
