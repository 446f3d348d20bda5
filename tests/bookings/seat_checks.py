"""What the booking tests share: planning a purchase and reading a session's free seats."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from bookings.models import SEAT_TAKING_STATUSES, Booking, SeatHold, Service, ServiceSession
from bookings.selectors import sessions_with_seats
from bookings.services.plans import PlanNode, booking_plan_build


def plan_for(service: Service, scheduling: dict[str, Any] | None = None) -> PlanNode:
    _, plan = booking_plan_build(
        service_id=service.pk, kind=service.kind, scheduling_data=scheduling
    )
    return plan


def free_seats(session: ServiceSession) -> int:
    """Free seats as every listing shows them, checked against a count of the rows."""
    annotated = sessions_with_seats(
        ServiceSession.objects.filter(pk=session.pk), now=timezone.now()
    )
    free = annotated.get().free_seats
    booked = Booking.objects.filter(session=session, status__in=SEAT_TAKING_STATUSES).count()
    held = sum(
        SeatHold.objects.live(timezone.now())
        .filter(session=session)
        .values_list("quantity", flat=True)
    )
    assert booked + held <= session.capacity, "a session holds more than its capacity"
    assert free == session.capacity - booked - held
    return free
