"""Seat holds: seats kept for an unpaid order until it is paid, released or the hold runs out.

The rule: a hold is created only after the holder's lock, `seats_lock` and
`seats_check`, and within the per-user limits, in the same transaction;
releasing and expiring only give seats back, so they need no lock. A hold whose
`expires_at` has passed stops counting at once, whether or not the sweep has
marked it `expired` yet, and nothing ever moves `expires_at` later: an order
whose hold lapsed takes its seats again as a new order would, or not at all.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from bookings.errors import SeatHoldLimitError
from bookings.models import SeatHold
from bookings.services.plans import PlanNode
from bookings.services.seats import (
    SeatNeeds,
    hold_limits,
    hold_minutes,
    seat_needs,
    seats_check,
    seats_lock,
)


def _holder_lock(user_id: int) -> None:
    """Serialise one user's new holds, so concurrent requests cannot pass the limits.

    `FOR NO KEY UPDATE`: it does not wait for, or block, rows being inserted that
    point at the user (their orders and holds take only a key-share lock). Taken
    before `seats_lock`, always.
    """
    users = get_user_model().objects.select_for_update(no_key=True).filter(pk=user_id)
    list(users.values_list("pk", flat=True))


def _limits_check(needs: SeatNeeds, *, user_id: int, order_id: int, now: datetime) -> None:
    """Refuse with `SeatHoldLimitError` past what one user may hold unpaid."""
    per_session, per_user = hold_limits()
    mine = SeatHold.objects.live(now).filter(user_id=user_id).exclude(order_id=order_id)
    if per_session and needs.sessions:
        held: Counter[int] = Counter()
        rows = mine.filter(session_id__in=needs.sessions).values_list(
            "session_id", "quantity", "order_id"
        )
        orders: dict[int, set[int]] = {}
        for session_id, quantity, held_by in rows:
            held[session_id] += quantity
            orders.setdefault(session_id, set()).add(held_by)
        for session_id, wanted in sorted(needs.sessions.items()):
            if held[session_id] + wanted > per_session:
                raise SeatHoldLimitError(
                    f"You already hold {held[session_id]} unpaid seat(s) in this session, and "
                    f"one customer may hold {per_session}: pay for or cancel those orders "
                    "first, or wait for their holds to run out.",
                    scope="session",
                    limit=per_session,
                    held=held[session_id],
                    service_session_id=session_id,
                    order_ids=sorted(orders[session_id]),
                )
    if per_user:
        holding = sorted(set(mine.values_list("order_id", flat=True)))
        if len(holding) >= per_user:
            raise SeatHoldLimitError(
                f"You already have {len(holding)} unpaid orders holding seats, and one "
                f"customer may have {per_user}: pay for or cancel one of them first, or "
                "wait for its hold to run out.",
                scope="user",
                limit=per_user,
                held=len(holding),
                order_ids=holding,
            )


def seat_holds_create(*, order_id: int, user_id: int, plan: PlanNode) -> list[SeatHold]:
    """Hold every seat and slot of `plan` for the order, or raise `SeatsUnavailableError`
    (nothing free) or `SeatHoldLimitError` (the user holds enough already).

    Idempotent: an order whose holds are live gets them back, as they are. An
    order whose holds lapsed or were released (paying a failed order again)
    takes its seats anew, under the same checks and limits as a new order; the
    new hold ends when the order's earlier one would have, if that is still to
    come, else after the configured minutes. A lapsed hold is marked expired,
    never revived or extended.
    """
    with transaction.atomic():
        needs = seat_needs(plan)
        if not needs:
            return []
        _holder_lock(user_id)
        seats_lock(needs)
        now = timezone.now()
        existing = list(SeatHold.objects.live(now).filter(order_id=order_id))
        if existing:
            return existing
        SeatHold.objects.filter(
            order_id=order_id, status=SeatHold.Status.ACTIVE, expires_at__lte=now
        ).update(status=SeatHold.Status.EXPIRED, updated_at=now)
        seats_check(needs, now=now)
        _limits_check(needs, user_id=user_id, order_id=order_id, now=now)
        # Released early (a failed payment) and taken again: the new hold ends when the
        # first one would have; only a hold that ran its course is followed by a full one.
        earlier_end = SeatHold.objects.filter(order_id=order_id).aggregate(end=Max("expires_at"))[
            "end"
        ]
        expires_at = (
            earlier_end
            if earlier_end is not None and earlier_end > now
            else now + timedelta(minutes=hold_minutes())
        )
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
