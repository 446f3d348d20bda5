"""Reconciliation: what Stripe knows that a lost webhook did not tell us.

The rule: nothing here has a path of its own. Unseen events go through
`event_store` (stored and queued exactly like a delivery, deduplicated on
Stripe's id) and stuck orders through `payment_record`, so a reconciled payment
is fulfilled by the same code, exactly once, as a delivered one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from billing import gateway
from billing.models import Order, StripeEvent
from billing.services.events import event_store
from billing.services.payments import order_target_status, payment_record

log = logging.getLogger(__name__)

STUCK_STATUSES = (Order.Status.PENDING, Order.Status.REQUIRES_ACTION, Order.Status.PROCESSING)

Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class ReconcileReport:
    events_seen: int
    events_new: int
    orders_checked: int
    orders_moved: int


def events_reconcile(*, since: datetime, progress: Progress | None = None) -> tuple[int, int]:
    """Store every Stripe event since `since` that we do not have; answers (seen, new)."""
    seen = new = 0
    batch: list[dict] = []

    def store(events: list[dict]) -> int:
        # One query finds the ones we have; only the rest are stored.
        known = set(
            StripeEvent.objects.filter(stripe_id__in=[e["id"] for e in events]).values_list(
                "stripe_id", flat=True
            )
        )
        return sum(event_store(event=e)[1] for e in events if e["id"] not in known)

    for event in gateway.events_since(created_after=int(since.timestamp())):
        batch.append(event)
        seen += 1
        if len(batch) == 100:
            new += store(batch)
            batch = []
        if progress:
            progress(seen, None)
    if batch:
        new += store(batch)
    return seen, new


def orders_stuck_recheck(
    *, older_than: timedelta, progress: Progress | None = None
) -> tuple[int, int]:
    """Read again from Stripe the PaymentIntents of orders unpaid for longer than
    `older_than`, and apply what they say; answers (checked, moved)."""
    stuck = (
        Order.objects.filter(
            status__in=STUCK_STATUSES,
            updated_at__lt=timezone.now() - older_than,
            payments__isnull=False,
        )
        .distinct()
        .order_by("id")
    )
    total = stuck.count()
    checked = moved = 0
    for order in stuck.iterator():
        for payment in order.payments.all():
            try:
                intent = gateway.payment_intent_retrieve(
                    payment_intent_id=payment.stripe_payment_intent_id
                )
            except gateway.PaymentGatewayError as exc:
                log.warning("order %s: reading %s failed: %s", order.pk, payment, exc.message)
                continue
            target = order_target_status(intent)
            if target is not None and payment_record(intent=intent, target=target).applied:
                moved += 1
        checked += 1
        if progress:
            progress(checked, total)
    return checked, moved


def reconcile(
    *, since: datetime, stuck_after: timedelta, progress: Progress | None = None
) -> ReconcileReport:
    seen, new = events_reconcile(since=since, progress=progress)
    checked, moved = orders_stuck_recheck(older_than=stuck_after, progress=progress)
    log.info(
        "reconcile: %s events seen, %s new; %s stuck orders, %s moved", seen, new, checked, moved
    )
    return ReconcileReport(seen, new, checked, moved)
