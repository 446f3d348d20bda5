"""django-q2 task entry points. They take ids, never model instances."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from billing.services.credit_payments import orders_holding_credits_expire
from billing.services.events import events_drain as _events_drain
from billing.services.events import events_drain_queued as _events_drain_queued
from billing.services.events import queued_drains_forget
from billing.services.reconcile import reconcile as _reconcile
from billing.services.refunds import refund_apply as _refund_apply
from billing.services.refunds import refund_submit as _refund_submit
from billing.services.refunds import refunds_resume


def events_drain(event_id: int | None = None) -> int:
    """Process this event first, then whatever else is due (retries, dead leases).

    Run for a replayed event and, by the schedule, every minute; the scheduled
    run also resubmits refunds whose first request never reached Stripe,
    forgets queued drains whose task was lost, and cancels unpaid orders that
    have held the buyer's credits too long (the credits go back).
    """
    taken = _events_drain(first_event_id=event_id)
    if event_id is None:
        queued_drains_forget()
        refunds_resume()
        orders_holding_credits_expire()
    return taken


def events_drain_queued(drain_id: int) -> int:
    """Process the events stored while this task was queued, and whatever else is due."""
    return _events_drain_queued(drain_id=drain_id)


def refund_submit(refund_id: int) -> str:
    """Send a stored refund to Stripe (an automatic refund of an undeliverable order)."""
    return _refund_submit(refund_id=refund_id).status


def refund_apply(refund_id: int) -> str:
    """Apply a stored refund (credits given back when a paid order could not be delivered)."""
    return _refund_apply(refund_id=refund_id)


def reconcile(days: int = 3, stuck_minutes: int = 30) -> str:
    """The scheduled reconciliation: recent events we missed, and orders stuck unpaid."""
    report = _reconcile(
        since=timezone.now() - timedelta(days=days),
        stuck_after=timedelta(minutes=stuck_minutes),
    )
    return f"{report.events_new} new events, {report.orders_moved} orders moved"
