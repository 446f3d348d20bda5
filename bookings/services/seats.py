"""Seats and 1-on-1 slots: locking and counting, where the capacity invariant is enforced.

The rule: a write that takes a seat or a slot (a hold, a booking) runs in the
transaction that called `seats_lock` and then `seats_check`, with `now` read
after the lock. Locks are taken in one global order (sessions by id, then
services by id) so two purchases can never deadlock each other. Checking
without the lock is a courtesy answer, never a guarantee.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from django.conf import settings

from bookings.errors import SeatsUnavailableError
from bookings.models import Service, ServiceSession
from bookings.selectors import sessions_with_seats, slot_claims, slot_scope

if TYPE_CHECKING:
    from bookings.services.plans import PlanNode

DEFAULT_HOLD_MINUTES = 15
# Unpaid seats one user may hold in one session, and unpaid orders holding seats or
# slots one user may have at once; 0 turns a limit off.
DEFAULT_HOLD_SEATS_PER_SESSION = 2
DEFAULT_HOLDS_PER_USER = 5


def hold_minutes() -> int:
    """How long a seat hold lives (`TOLLGATE["BOOKING_HOLD_MINUTES"]`, default 15)."""
    return int(getattr(settings, "TOLLGATE", {}).get("BOOKING_HOLD_MINUTES", DEFAULT_HOLD_MINUTES))


def hold_limits() -> tuple[int, int]:
    """How much one user may hold unpaid: seats in one session
    (`TOLLGATE["BOOKING_HOLD_SEATS_PER_SESSION"]`, default 2) and orders in all
    (`TOLLGATE["BOOKING_HOLDS_PER_USER"]`, default 5). 0 means no limit."""
    config = getattr(settings, "TOLLGATE", {})
    return (
        int(config.get("BOOKING_HOLD_SEATS_PER_SESSION", DEFAULT_HOLD_SEATS_PER_SESSION)),
        int(config.get("BOOKING_HOLDS_PER_USER", DEFAULT_HOLDS_PER_USER)),
    )


@dataclass(frozen=True)
class Slot:
    service_id: int
    start: datetime
    end: datetime


@dataclass(frozen=True)
class SeatNeeds:
    """What a plan takes: seats per session id, and 1-on-1 slots."""

    sessions: dict[int, int]
    slots: tuple[Slot, ...]

    def __bool__(self) -> bool:
        return bool(self.sessions or self.slots)


def seat_needs(plan: PlanNode) -> SeatNeeds:
    sessions = Counter(node.session_id for node in plan.walk() if node.needs_seat)
    slots = tuple(
        Slot(service_id=node.service_id, start=node.start, end=node.end)
        for node in plan.walk()
        if node.needs_slot
    )
    return SeatNeeds(sessions=dict(sessions), slots=slots)


def seats_lock(needs: SeatNeeds) -> None:
    """Lock every session and every slot scope the needs touch, in the global order."""
    if needs.sessions:
        sessions = ServiceSession.objects.select_for_update().filter(pk__in=needs.sessions)
        list(sessions.order_by("pk").values_list("pk", flat=True))
    service_ids = sorted({pk for slot in needs.slots for pk in slot_scope(slot.service_id)})
    if service_ids:
        services = Service.objects.select_for_update().filter(pk__in=service_ids)
        list(services.order_by("pk").values_list("pk", flat=True))


def slot_is_taken(slot: Slot, *, now: datetime, exclude_order_id: int | None = None) -> bool:
    booked, held = slot_claims(
        scope=slot_scope(slot.service_id),
        start=slot.start,
        end=slot.end,
        now=now,
        exclude_order_id=exclude_order_id,
    )
    return booked.exists() or held.exists()


def seats_check(needs: SeatNeeds, *, now: datetime, exclude_order_id: int | None = None) -> None:
    """Refuse with `SeatsUnavailableError` unless every seat and slot in `needs` is free.

    `exclude_order_id` does not count that order's own holds against it (they
    are what it is converting, live or expired).
    """
    if needs.sessions:
        sessions = sessions_with_seats(
            ServiceSession.objects.filter(pk__in=needs.sessions).select_related("service"),
            now=now,
            exclude_order_id=exclude_order_id,
        )
        found = {session.pk: session for session in sessions}
        for session_id, wanted in sorted(needs.sessions.items()):
            session = found.get(session_id)
            if session is None:
                raise SeatsUnavailableError(
                    f"Session {session_id} is no longer scheduled.", service_session_id=session_id
                )
            if session.free_seats < wanted:
                raise SeatsUnavailableError(
                    f"{session.service.name} on {session.start:%Y-%m-%d %H:%M %Z} has "
                    f"{session.free_seats} free seats; {wanted} needed.",
                    service_session_id=session_id,
                    free_seats=session.free_seats,
                    capacity=session.capacity,
                )
    for slot in needs.slots:
        if slot_is_taken(slot, now=now, exclude_order_id=exclude_order_id):
            raise SeatsUnavailableError(
                f"The slot from {slot.start.isoformat()} to {slot.end.isoformat()} is taken; "
                "choose another time.",
                service_id=slot.service_id,
                start_datetime=slot.start.isoformat(),
            )
