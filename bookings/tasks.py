"""django-q2 task entry points. They take ids, never model instances."""

from __future__ import annotations

from bookings.services.holds import seat_holds_expire as _seat_holds_expire


def seat_holds_expire() -> int:
    """Mark stale seat holds expired (scheduled every minute by migration 0002)."""
    return _seat_holds_expire()
