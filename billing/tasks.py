"""django-q2 task entry points. They take ids, never model instances."""

from __future__ import annotations

from billing.services.events import events_drain as _events_drain
from billing.services.refunds import refund_submit as _refund_submit
from billing.services.refunds import refunds_resume


def events_drain(event_id: int | None = None) -> int:
    """Process this event first, then whatever else is due (retries, dead leases).

    Run for every stored event and, by the schedule, every minute; the scheduled
    run also resubmits refunds whose first request never reached Stripe.
    """
    taken = _events_drain(first_event_id=event_id)
    if event_id is None:
        refunds_resume()
    return taken


def refund_submit(refund_id: int) -> str:
    """Send a stored refund to Stripe (an automatic refund of an undeliverable order)."""
    return _refund_submit(refund_id=refund_id).status
