"""django-q2 task entry points. They take ids, never model instances."""

from __future__ import annotations

from billing.services.events import events_drain as _events_drain


def events_drain(event_id: int | None = None) -> int:
    """Process this event first, then whatever else is due (retries, dead leases)."""
    return _events_drain(first_event_id=event_id)
