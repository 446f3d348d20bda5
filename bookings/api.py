"""The bookings API: what can be booked (public), my bookings, scheduling a package unit.

The rule: operations are thin (parse, call one selector or service, render) and
a user reaches only their own bookings (anyone else's is 404). Fixed paths such
as `/services/` are declared before `/{booking_id}/`, which would otherwise
capture them. Authentication comes from `platform_core.api` (fail closed);
only the service listings say `auth=None`.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Router, Status
from ninja.pagination import paginate

from bookings.models import Booking, Service
from bookings.schemas import (
    BookingOut,
    BookingScheduleIn,
    FreeSlotOut,
    ServiceOut,
    ServiceSessionOut,
)
from bookings.selectors import (
    booking_get_for_user,
    bookings_for_user,
    service_for_sale_get,
    service_sessions_upcoming,
    service_slots_free,
    services_for_sale,
)
from bookings.services.bookings import booking_schedule
from kernel.pagination import BoundedPageNumberPagination
from kernel.schemas import ErrorOut

router = Router(tags=["bookings"])

BOOKINGS_PAGE_SIZE = 20
BOOKINGS_MAX_PAGE_SIZE = 100


@router.get("/services/", auth=None, response=list[ServiceOut])
def bookings_services_list(request: HttpRequest) -> QuerySet[Service]:
    """Active services with price, kind, package contents and 1-on-1 availability."""
    return services_for_sale()


@router.get(
    "/services/{int:service_id}/sessions/",
    auth=None,
    response={200: list[ServiceSessionOut], 404: ErrorOut},
)
def bookings_service_sessions(request: HttpRequest, service_id: int):
    """Upcoming sessions of an active service, with free seats."""
    service_for_sale_get(service_id=service_id)
    return Status(200, list(service_sessions_upcoming(service_id=service_id)))


@router.get(
    "/services/{int:service_id}/slots/",
    auth=None,
    response={200: list[FreeSlotOut], 404: ErrorOut},
)
def bookings_service_slots(request: HttpRequest, service_id: int):
    """The free slots of an active 1-on-1 service, soonest first (at most 200).

    A slot is free when no booking and no unpaid order's live hold of the same
    host overlaps it; the purchase checks it again, so a slot taken meanwhile
    is refused with 409 `seats_unavailable`. Any other kind of service has none.
    """
    service = service_for_sale_get(service_id=service_id)
    return Status(200, service_slots_free(service=service))


@router.get("/", response={200: list[BookingOut], 401: ErrorOut, 422: ErrorOut})
@paginate(
    BoundedPageNumberPagination,
    page_size=BOOKINGS_PAGE_SIZE,
    max_page_size=BOOKINGS_MAX_PAGE_SIZE,
)
def bookings_list(request: HttpRequest) -> QuerySet[Booking]:
    """My bookings, newest first; courses, packages and bundles with their children."""
    return bookings_for_user(user_id=request.user.pk)


@router.get("/{int:booking_id}/", response={200: BookingOut, 401: ErrorOut, 404: ErrorOut})
def bookings_detail(request: HttpRequest, booking_id: int):
    return Status(200, booking_get_for_user(booking_id=booking_id, user_id=request.user.pk))


@router.post(
    "/{int:booking_id}/schedule/",
    response={200: BookingOut, 401: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut},
)
def bookings_schedule(request: HttpRequest, booking_id: int, payload: BookingScheduleIn):
    """Pick the time of an unscheduled 1-on-1 session bought in a package or bundle.

    409 `seats_unavailable` when the slot is taken; 422 for a time in the past or
    outside the service's availability.
    """
    booking = booking_schedule(
        booking_id=booking_id, user_id=request.user.pk, start_datetime=payload.start_datetime
    )
    return Status(200, booking_get_for_user(booking_id=booking.pk, user_id=request.user.pk))
