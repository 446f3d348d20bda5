// My bookings, with what a course or package contains; an unscheduled 1-on-1 unit
// of a package gets its time here (POST /bookings/{id}/schedule/).
import { api } from "../api.js";
import { formatSlot, freeSlots, localZone } from "../slots.js";
import { errorNotice, formatDateTime, h, loading, notice, section, show, statusBadge } from "../ui.js";

const PAGE_SIZE = 20;

function scheduleForm(booking, refresh) {
  // Only the free slots are offered, in the reader's time zone; the server checks again.
  const when = h(
    "select",
    { name: "start", required: true, "aria-label": "Time" },
    h("option", { value: "" }, "Loading free times…"),
  );
  const message = h("span", { class: "messages" });
  const submit = h("button", { type: "submit", disabled: true }, "Schedule");
  freeSlots(booking.service_id).then((slots) => {
    show(
      when,
      slots.length
        ? slots.map((slot) => h("option", { value: slot.start }, formatSlot(slot.start)))
        : h("option", { value: "" }, "No free times coming up"),
    );
    submit.disabled = !slots.length;
  });
  return h(
    "form",
    {
      class: "schedule",
      onsubmit: async (event) => {
        event.preventDefault();
        if (!when.value) return;
        submit.disabled = true;
        show(message, notice("loading", "Scheduling…"));
        try {
          await api.post(`/bookings/${booking.id}/schedule/`, { start_datetime: when.value });
          await refresh();
        } catch (err) {
          show(message, errorNotice(err));
          submit.disabled = false;
        }
      },
    },
    when,
    " ",
    submit,
    h("span", { class: "hint" }, ` (${localZone()})`),
    message,
  );
}

function bookingItem(booking, refresh) {
  const when = booking.start
    ? formatDateTime(booking.start)
    : booking.children.length
      ? ""
      : "not scheduled yet";
  const needsTime =
    !booking.start &&
    !booking.children.length &&
    booking.service_kind === "session" &&
    booking.status === "confirmed";
  return h(
    "li",
    { class: "booking", "data-booking-id": booking.id },
    h("strong", {}, booking.service_name),
    ` (${booking.service_kind}) `,
    statusBadge(booking.status),
    when ? ` ${when}` : "",
    " ",
    booking.parent_id ? null : h("a", { href: `#/orders/${booking.order_id}` }, `order #${booking.order_id}`),
    needsTime ? scheduleForm(booking, refresh) : null,
    booking.children && booking.children.length
      ? h(
          "ul",
          { class: "children" },
          booking.children.map((child) => bookingItem({ ...child, children: [] }, refresh)),
        )
      : null,
  );
}

export async function render(root, { isActive, query }) {
  const title = h("h1", {}, "Bookings");
  const page = Math.max(1, Number.parseInt(query.get("page") || "1", 10) || 1);
  show(root, title, loading());
  const list = h("ul", { class: "bookings", id: "bookings" });
  const pager = h("p", { class: "pager" });
  async function refresh() {
    const answer = await api.get(`/bookings/?page=${page}`);
    if (!isActive()) return;
    show(
      list,
      answer.items.length
        ? answer.items.map((b) => bookingItem(b, refresh))
        : h("li", { class: "empty" }, "No bookings yet. ", h("a", { href: "#/book" }, "Book something")),
    );
    show(
      pager,
      page > 1 ? h("a", { href: `#/bookings?page=${page - 1}` }, "← Newer") : null,
      " ",
      page * PAGE_SIZE < answer.count ? h("a", { href: `#/bookings?page=${page + 1}` }, "Older →") : null,
    );
  }
  try {
    await refresh();
  } catch (err) {
    show(root, title, errorNotice(err));
    return;
  }
  show(root, title, section("My bookings", list, pager));
}
