"""Reads of services, sessions and bookings.

The rule: "seats taken" has one definition, `sessions_with_seats`: seat-taking
bookings plus the quantity of live holds; "slot taken" has one too, `slot_claims`:
seat-taking bookings and live holds of the host's 1-on-1 services that overlap
it. The checks under the lock (`bookings.services.seats`) and every listing of
free seats and slots use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, F, IntegerField, OuterRef, Prefetch, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from bookings.models import (
    SEAT_TAKING_STATUSES,
    AvailabilityWindow,
    Booking,
    PackageItem,
    SeatHold,
    Service,
    ServiceSession,
)
from kernel.errors import NotFoundError


def sessions_with_seats(
    sessions: QuerySet[ServiceSession], *, now: datetime, exclude_order_id: int | None = None
) -> QuerySet[ServiceSession]:
    """Annotate `seats_booked`, `seats_held` and `free_seats` (never below zero).

    `exclude_order_id` leaves out that order's own holds: what it needs is
    counted by the caller instead.
    """
    booked = (
        Booking.objects.filter(session=OuterRef("pk"), status__in=SEAT_TAKING_STATUSES)
        .values("session")
        .annotate(n=Count("id"))
        .values("n")
    )
    holds = SeatHold.objects.live(now).filter(session=OuterRef("pk"))
    if exclude_order_id is not None:
        holds = holds.exclude(order_id=exclude_order_id)
    held = holds.values("session").annotate(n=Sum("quantity")).values("n")
    return sessions.annotate(
        seats_booked=Coalesce(Subquery(booked, output_field=IntegerField()), 0),
        seats_held=Coalesce(Subquery(held, output_field=IntegerField()), 0),
    ).annotate(free_seats=Greatest(F("capacity") - F("seats_booked") - F("seats_held"), 0))


def slot_scope(service_id: int) -> list[int]:
    """The 1-on-1 services whose slots clash with this one's: itself, and its host's others."""
    host_id = Service.objects.filter(pk=service_id).values_list("host_id", flat=True).first()
    if host_id is None:
        return [service_id]
    same_host = Service.objects.filter(kind=Service.Kind.SESSION, host_id=host_id)
    return sorted({service_id, *same_host.values_list("pk", flat=True)})


def slot_claims(
    *,
    scope: list[int],
    start: datetime,
    end: datetime,
    now: datetime,
    exclude_order_id: int | None = None,
) -> tuple[QuerySet[Booking], QuerySet[SeatHold]]:
    """The seat-taking bookings and live holds of `scope` that overlap [start, end)."""
    booked = Booking.objects.filter(
        service_id__in=scope,
        session__isnull=True,
        status__in=SEAT_TAKING_STATUSES,
        start__lt=end,
        end__gt=start,
    )
    held = SeatHold.objects.live(now).filter(
        service_id__in=scope, session__isnull=True, start__lt=end, end__gt=start
    )
    if exclude_order_id is not None:
        held = held.exclude(order_id=exclude_order_id)
    return booked, held


@dataclass(frozen=True)
class FreeSlot:
    start: datetime
    end: datetime


# How many free slots one listing offers at most (the soonest ones).
FREE_SLOTS_MAX = 200


def service_slots_free(
    *, service: Service, now: datetime | None = None, limit: int = FREE_SLOTS_MAX
) -> list[FreeSlot]:
    """The 1-on-1 slots of `service` that could be bought now, soonest first.

    Slots start at each availability window's start and follow one another, a
    slot length apart, while they fit in the window; a slot is offered when it
    starts after `now` and no booking or live hold of the host's 1-on-1 services
    overlaps it. A courtesy answer: the purchase checks the slot again under lock.
    """
    now = now or timezone.now()
    if service.kind != Service.Kind.SESSION or not service.duration_minutes:
        return []
    step = timedelta(minutes=service.duration_minutes)
    windows = list(
        AvailabilityWindow.objects.filter(service=service, end__gt=now).order_by("start", "id")
    )
    if not windows:
        return []
    booked, held = slot_claims(
        scope=slot_scope(service.pk),
        start=min(w.start for w in windows),
        end=max(w.end for w in windows),
        now=now,
    )
    taken = [*booked.values_list("start", "end"), *held.values_list("start", "end")]
    free: dict[datetime, FreeSlot] = {}
    for window in windows:
        if len(free) >= limit and window.start > sorted(free)[limit - 1]:
            break  # windows come by start: none of the rest can be among the soonest
        start = window.start
        while start + step <= window.end:
            end = start + step
            if start > now and not any(s < end and e > start for s, e in taken):
                free.setdefault(start, FreeSlot(start=start, end=end))
            start = end
    return sorted(free.values(), key=lambda slot: slot.start)[:limit]


def services_for_sale(*, kind: str | None = None, now: datetime | None = None) -> QuerySet[Service]:
    """Active services, with their package contents and (as `upcoming_availability`)
    the availability windows that have not ended."""
    now = now or timezone.now()
    services = Service.objects.filter(active=True).prefetch_related(
        Prefetch("items", queryset=PackageItem.objects.select_related("item_service")),
        Prefetch(
            "availability",
            queryset=AvailabilityWindow.objects.filter(end__gt=now),
            to_attr="upcoming_availability",
        ),
    )
    if kind is not None:
        services = services.filter(kind=kind)
    return services


def service_for_sale_get(*, service_id: int) -> Service:
    service = services_for_sale().filter(pk=service_id).first()
    if service is None:
        raise NotFoundError(f"No bookable service with id {service_id}.", service_id=service_id)
    return service


def service_sessions_upcoming(
    *, service_id: int, now: datetime | None = None
) -> QuerySet[ServiceSession]:
    """Sessions of the service that have not started, with their free seats."""
    now = now or timezone.now()
    sessions = ServiceSession.objects.filter(service_id=service_id, start__gt=now)
    return sessions_with_seats(sessions, now=now).order_by("start", "id")


def bookings_for_user(*, user_id: int) -> QuerySet[Booking]:
    """The user's top-level bookings, newest first, with their direct children."""
    children = Booking.objects.select_related("service").order_by("start", "id")
    return (
        Booking.objects.filter(user_id=user_id, parent__isnull=True)
        .select_related("service")
        .prefetch_related(Prefetch("children", queryset=children))
        .order_by("-id")
    )


def booking_get_for_user(*, booking_id: int, user_id: int) -> Booking:
    """One of the user's bookings (a child too); `NotFoundError` for anyone else's."""
    children = Booking.objects.select_related("service").order_by("start", "id")
    booking = (
        Booking.objects.filter(pk=booking_id, user_id=user_id)
        .select_related("service")
        .prefetch_related(Prefetch("children", queryset=children))
        .first()
    )
    if booking is None:
        raise NotFoundError("No such booking.", booking_id=booking_id)
    return booking


def bookings_for_order(*, order_id: int) -> QuerySet[Booking]:
    return Booking.objects.filter(order_id=order_id).order_by("id")


def service_kind_get(*, service_id: int) -> str | None:
    """The kind of service `service_id` (active or not), or None if there is none."""
    return Service.objects.filter(pk=service_id).values_list("kind", flat=True).first()
