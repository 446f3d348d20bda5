"""Bookings: made from a paid order's plan, cancelled, marked refunded, scheduled later.

The rule: making a booking takes its seats under the same lock and check as a
hold (`seats_lock`, then `seats_check` not counting the order's own holds), so
a payment that arrives after its hold expired gets a seat only if one is free.
Every write here is idempotent per order: a repeat changes nothing.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from bookings.models import Booking, SeatHold, Service
from bookings.services.plans import PlanNode, slot_validate, start_datetime_parse
from bookings.services.seats import SeatNeeds, Slot, seat_needs, seats_check, seats_lock
from kernel.errors import ConflictError, NotFoundError

SCHEDULABLE_STATUSES = (Booking.Status.CONFIRMED, Booking.Status.PARTIALLY_REFUNDED)


def _booking_tree_create(
    node: PlanNode, *, user_id: int, order_id: int, parent: Booking | None
) -> list[Booking]:
    booking = Booking.objects.create(
        user_id=user_id,
        service_id=node.service_id,
        session_id=node.session_id,
        parent=parent,
        start=node.start,
        end=node.end,
        scheduling_data=node.scheduling_data,
        order_id=order_id,
    )
    made = [booking]
    for child in node.children:
        made += _booking_tree_create(child, user_id=user_id, order_id=order_id, parent=booking)
    return made


def bookings_create_for_order(*, order_id: int, user_id: int, plan: PlanNode) -> list[Booking]:
    """Turn a paid order's plan into bookings, converting its holds.

    The order's holds, live or not, are not counted against it; if they ran
    out and their seats were taken meanwhile, raises `SeatsUnavailableError`
    and writes nothing. Idempotent: an order with bookings gets them back.

    :return: the bookings made, the top-level one first.
    """
    with transaction.atomic():
        existing = list(Booking.objects.filter(order_id=order_id).order_by("id"))
        if existing:
            return existing
        needs = seat_needs(plan)
        seats_lock(needs)
        seats_check(needs, now=timezone.now(), exclude_order_id=order_id)
        SeatHold.objects.filter(order_id=order_id).exclude(status=SeatHold.Status.CONVERTED).update(
            status=SeatHold.Status.CONVERTED, updated_at=timezone.now()
        )
        return _booking_tree_create(plan, user_id=user_id, order_id=order_id, parent=None)


def bookings_cancel_for_order(*, order_id: int) -> int:
    """Cancel every booking of the order and release its holds, freeing the seats. Idempotent.

    :return: how many bookings were cancelled now.
    """
    with transaction.atomic():
        SeatHold.objects.filter(order_id=order_id, status=SeatHold.Status.ACTIVE).update(
            status=SeatHold.Status.RELEASED, updated_at=timezone.now()
        )
        return (
            Booking.objects.filter(order_id=order_id)
            .exclude(status=Booking.Status.CANCELED)
            .update(status=Booking.Status.CANCELED, updated_at=timezone.now())
        )


def bookings_mark_partially_refunded(*, order_id: int) -> int:
    """Mark the order's confirmed bookings `partially_refunded`; they keep their seats.

    :return: how many bookings changed (0 on a repeat).
    """
    return Booking.objects.filter(order_id=order_id, status=Booking.Status.CONFIRMED).update(
        status=Booking.Status.PARTIALLY_REFUNDED, updated_at=timezone.now()
    )


def bookings_mark_disputed(*, order_id: int) -> int:
    """Mark the order's live bookings disputed: they keep their seats, cannot be scheduled.

    :return: how many bookings changed (0 on a repeat).
    """
    now = timezone.now()
    return (
        Booking.objects.filter(order_id=order_id, disputed_at__isnull=True)
        .exclude(status=Booking.Status.CANCELED)
        .update(disputed_at=now, updated_at=now)
    )


def bookings_clear_disputed(*, order_id: int) -> int:
    """Restore the order's disputed bookings (the dispute was won); cancelled ones stay so.

    :return: how many bookings changed (0 on a repeat).
    """
    return (
        Booking.objects.filter(order_id=order_id, disputed_at__isnull=False)
        .exclude(status=Booking.Status.CANCELED)
        .update(disputed_at=None, updated_at=timezone.now())
    )


def bookings_cancel(*, booking_ids: list[int]) -> int:
    """Cancel these bookings and everything under them (staff). Money is refunded separately.

    :return: how many bookings were cancelled now.
    """
    with transaction.atomic():
        ids = set(booking_ids)
        frontier = set(ids)
        while frontier:
            frontier = (
                set(Booking.objects.filter(parent_id__in=frontier).values_list("pk", flat=True))
                - ids
            )
            ids |= frontier
        return (
            Booking.objects.filter(pk__in=ids)
            .exclude(status=Booking.Status.CANCELED)
            .update(status=Booking.Status.CANCELED, updated_at=timezone.now())
        )


def booking_schedule(*, booking_id: int, user_id: int, start_datetime: str) -> Booking:
    """Give an unscheduled 1-on-1 booking (a package unit) its slot.

    Raises `NotFoundError` for another user's booking, `ConflictError` for a
    booking that is not an unscheduled, live 1-on-1, `InvalidInputError` for a
    bad time and `SeatsUnavailableError` for a taken slot.
    """
    start = start_datetime_parse(start_datetime)
    with transaction.atomic():
        booking = (
            Booking.objects.select_for_update()
            .select_related("service")
            .filter(pk=booking_id, user_id=user_id)
            .first()
        )
        if booking is None:
            raise NotFoundError("No such booking.", booking_id=booking_id)
        if booking.service.kind != Service.Kind.SESSION or booking.is_scheduled:
            raise ConflictError(
                "Only an unscheduled 1-on-1 session from a package can be scheduled.",
                booking_id=booking_id,
            )
        if booking.disputed_at is not None:
            raise ConflictError(
                "The payment for this booking is disputed; it cannot be scheduled until "
                "the dispute is resolved.",
                booking_id=booking_id,
            )
        if booking.status not in SCHEDULABLE_STATUSES:
            raise ConflictError(
                f"This booking is {booking.status} and cannot be scheduled.",
                booking_id=booking_id,
                status=booking.status,
            )
        now = timezone.now()
        end = slot_validate(booking.service, start, now=now)
        needs = SeatNeeds(sessions={}, slots=(Slot(booking.service_id, start, end),))
        seats_lock(needs)
        seats_check(needs, now=timezone.now())
        booking.start, booking.end = start, end
        booking.scheduling_data = {"start_datetime": start.isoformat()}
        booking.save(update_fields=["start", "end", "scheduling_data", "updated_at"])
        return booking
