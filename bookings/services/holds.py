"""Seat holds: seats kept for an unpaid order until it is paid, released or the hold runs out.

The rule: a hold is created only after `seats_lock` + `seats_check` in the same
transaction; releasing and expiring only give seats back, so they need no lock.
A hold whose `expires_at` has passed stops counting at once, whether or not the
sweep has marked it `expired` yet.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from bookings.models import SeatHold
from bookings.services.plans import PlanNode
from bookings.services.seats import hold_minutes, seat_needs, seats_check, seats_lock


def seat_holds_create(*, order_id: int, user_id: int, plan: PlanNode) -> list[SeatHold]:
    """Hold every seat and slot of `plan` for the order, or raise `SeatsUnavailableError`.

    Idempotent: an order that already holds seats gets its holds back.
    """
    with transaction.atomic():
        existing = list(SeatHold.objects.filter(order_id=order_id, status=SeatHold.Status.ACTIVE))
        if existing:
            return existing
        needs = seat_needs(plan)
        if not needs:
            return []
        seats_lock(needs)
        now = timezone.now()
        seats_check(needs, now=now)
        expires_at = now + timedelta(minutes=hold_minutes())
        sessions = {node.session_id: node.service_id for node in plan.walk() if node.needs_seat}
        holds = [
            SeatHold(
                service_id=sessions[session_id],
                session_id=session_id,
                user_id=user_id,
                order_id=order_id,
                quantity=quantity,
                expires_at=expires_at,
            )
            for session_id, quantity in sorted(needs.sessions.items())
        ]
        holds += [
            SeatHold(
                service_id=slot.service_id,
                start=slot.start,
                end=slot.end,
                user_id=user_id,
                order_id=order_id,
                expires_at=expires_at,
            )
            for slot in needs.slots
        ]
        return SeatHold.objects.bulk_create(holds)


def seat_holds_release(*, order_id: int) -> int:
    """Give back the order's active holds (payment failed or canceled). Idempotent.

    :return: how many holds were released.
    """
    return SeatHold.objects.filter(order_id=order_id, status=SeatHold.Status.ACTIVE).update(
        status=SeatHold.Status.RELEASED, updated_at=timezone.now()
    )


def seat_holds_expire(*, now: datetime | None = None) -> int:
    """The sweep: mark active holds past their expiry `expired`.

    :return: how many holds it marked.
    """
    now = now or timezone.now()
    return SeatHold.objects.filter(status=SeatHold.Status.ACTIVE, expires_at__lte=now).update(
        status=SeatHold.Status.EXPIRED, updated_at=now
    )
