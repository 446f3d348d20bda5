"""The booking pages in a real browser: only free 1-on-1 slots, in the buyer's own time
zone, and seat counts that follow each booking without reloading the page.

The buyer here is in Tokyo (UTC+9, no daylight saving): the coach's 09:00–12:00 UTC
availability reads 6:00 PM to 9:00 PM. Each test leaves a screenshot in
test-artifacts/web/.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from bookings.models import Booking, Service
from bookings.services.bookings import bookings_create_for_order
from bookings.services.holds import seat_holds_create
from tests.bookings.factories import (
    AvailabilityWindowFactory,
    ServiceFactory,
    ServiceSessionFactory,
)
from tests.bookings.seat_checks import plan_for
from tests.bookings.times import at, iso
from tests.factories import UserFactory
from tests.webclient.conftest import snap

# `app`: the page, logged in as `user` (every test here uses it, through pytestmark).
from tests.webclient.test_browser import VISA, add_card, app, go  # noqa: F401

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed"
)
expect = sync_api.expect

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("app"),
]

TOKYO = "Asia/Tokyo"


def booked_by_someone_else(service: Service, order_id: int, scheduling=None) -> list[Booking]:
    """Another buyer's paid booking, made as a paid order makes it."""
    other = UserFactory()
    plan = plan_for(service, scheduling)
    seat_holds_create(order_id=order_id, user_id=other.pk, plan=plan)
    return bookings_create_for_order(order_id=order_id, user_id=other.pk, plan=plan)


@pytest.fixture
def coaching():
    coach = UserFactory(username="coach")
    service = ServiceFactory(
        name="Coaching call", kind=Service.Kind.SESSION, price=8000, duration_minutes=60, host=coach
    )
    AvailabilityWindowFactory(service=service, start=at(9), end=at(12))
    return service


@pytest.mark.parametrize("browser_timezone", [TOKYO])
def test_the_slot_picker_offers_free_slots_in_the_buyers_time(
    page, request, coaching, user, event_worker
):
    booked_by_someone_else(coaching, 9001, {"start_datetime": iso(at(10))})
    add_card(page, VISA)
    go(page, "#/book", "Book")
    call = page.locator("li[data-service='Coaching call']")
    # 09:00 and 11:00 UTC are free, 10:00 is someone else's: 6 PM and 8 PM in Tokyo.
    expect(call.locator(".slots button")).to_have_text(["6:00 PM", "8:00 PM"])
    expect(call).to_contain_text("Times in your time zone (Asia/Tokyo).")
    day = at(9).astimezone(timezone.get_fixed_timezone(9 * 60))
    expect(call.locator("select[name=day] option")).to_have_text([f"{day:%a, %b} {day.day}"])
    snap(page, request, "free-slots")

    call.get_by_role("button", name="6:00 PM").click()
    result = page.locator("#book-result [data-state=success]")
    expect(result).to_contain_text(f"Coaching call on {day:%a, %b} {day.day}, 6:00 PM is booked")
    # The page reads the slots again: the one just bought is no longer offered.
    expect(call.locator(".slots button")).to_have_text(["8:00 PM"])
    assert Booking.objects.get(user=user).start == at(9)

    # Someone else takes the last slot while the page shows it: the refusal names it
    # in the buyer's time, never as a UTC timestamp, and the slot leaves the page.
    booked_by_someone_else(coaching, 9002, {"start_datetime": iso(at(11))})
    call.get_by_role("button", name="8:00 PM").click()
    refused = page.locator("#book-result [role=alert]")
    expect(refused).to_contain_text(
        f"The slot at {day:%b} {day.day}, {day.year}, 8:00 PM has just been taken"
    )
    expect(refused).not_to_contain_text("T11:00")
    expect(call).to_contain_text("No free slots coming up.")
    snap(page, request, "taken")
    assert Booking.objects.filter(user=user).count() == 1


def test_seat_counts_follow_a_booking_without_a_reload(page, request, user, event_worker):
    workshop = ServiceFactory(name="Pottery workshop", kind=Service.Kind.WORKSHOP, price=2500)
    session = ServiceSessionFactory(
        service=workshop, capacity=2, start=timezone.now() + timedelta(days=5)
    )
    add_card(page, VISA)
    go(page, "#/book", "Book")
    seat = page.locator(f"li[data-session-id='{session.pk}']")
    expect(seat).to_contain_text("2 of 2 seats free")
    seat.get_by_role("button", name="Book a seat").click()
    expect(page.locator("#book-result [data-state=success]")).to_contain_text(
        "A seat at Pottery workshop"
    )
    expect(seat).to_contain_text("1 of 2 seats free")

    # Another buyer takes the last seat; this buyer's next booking shows the session full.
    booked_by_someone_else(workshop, 9003, {"service_session_id": session.pk})
    seat.get_by_role("button", name="Book a seat").click()
    expect(page.locator("#book-result [role=alert]")).to_be_visible()
    expect(seat).to_contain_text("full")
    expect(seat.get_by_role("button", name="Book a seat")).to_be_disabled()
    snap(page, request, "full")
    assert Booking.objects.filter(user=user).count() == 1


@pytest.mark.parametrize("browser_timezone", [TOKYO])
def test_a_package_unit_is_scheduled_from_the_free_slots_only(page, request, coaching, user):
    package = ServiceFactory(name="Coaching ×2", kind=Service.Kind.PACKAGE, price=15000)
    package.items.create(item_service=coaching, quantity=2)
    plan = plan_for(package)
    seat_holds_create(order_id=9004, user_id=user.pk, plan=plan)
    bookings_create_for_order(order_id=9004, user_id=user.pk, plan=plan)
    booked_by_someone_else(coaching, 9005, {"start_datetime": iso(at(9))})

    go(page, "#/bookings", "Bookings")
    form = page.locator("form.schedule").first
    day = at(10).astimezone(timezone.get_fixed_timezone(9 * 60))
    expect(form.locator("select[name=start] option")).to_have_text(
        [f"{day:%a, %b} {day.day}, 7:00 PM", f"{day:%a, %b} {day.day}, 8:00 PM"]
    )
    form.locator("select[name=start]").select_option(label=f"{day:%a, %b} {day.day}, 8:00 PM")
    form.get_by_role("button", name="Schedule").click()
    expect(page.locator("#bookings")).to_contain_text(f"{day:%b} {day.day}, {day.year}, 8:00 PM")
    snap(page, request, "scheduled")
    assert Booking.objects.filter(user=user, start=at(11)).exists()
