"""The bookings admin: catalogue pages, seats per session, a cancel action, read-only holds."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import Client, RequestFactory
from django.urls import reverse

from bookings.models import Booking, SeatHold
from bookings.services.bookings import bookings_create_for_order
from bookings.services.holds import seat_holds_create
from tests.bookings.seat_checks import free_seats, plan_for
from tests.factories import UserFactory

pytest_plugins = ["tests.bookings.fixtures"]
pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser(db):
    return UserFactory(is_staff=True, is_superuser=True)


@pytest.fixture
def staff_client(superuser) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def buy(service, user, order_id: int) -> list[Booking]:
    plan = plan_for(service)
    seat_holds_create(order_id=order_id, user_id=user.pk, plan=plan)
    return bookings_create_for_order(order_id=order_id, user_id=user.pk, plan=plan)


@pytest.mark.parametrize("name", ["service", "servicesession", "booking", "seathold"])
def test_changelists_render(staff_client, name, bundle, course, user):
    buy(course, user, 1)
    seat_holds_create(order_id=2, user_id=user.pk, plan=plan_for(course))
    resp = staff_client.get(reverse(f"admin:bookings_{name}_changelist"))
    assert resp.status_code == 200
    assert "Bread course" in resp.content.decode()


def test_the_service_page_edits_sessions_windows_and_contents_inline(staff_client, bundle):
    resp = staff_client.get(reverse("admin:bookings_service_change", args=[bundle.pk]))
    assert resp.status_code == 200
    page = resp.content.decode()
    for inline in ("sessions-TOTAL_FORMS", "availability-TOTAL_FORMS", "items-TOTAL_FORMS"):
        assert inline in page


def test_the_sessions_page_shows_seats_taken(staff_client, small_workshop, user):
    buy(small_workshop, user, 1)
    seat_holds_create(order_id=2, user_id=user.pk, plan=plan_for(small_workshop))
    model_admin = admin.site._registry[small_workshop.sessions.model]
    request = RequestFactory().get("/")
    request.user = UserFactory(is_staff=True, is_superuser=True)
    [row] = model_admin.get_queryset(request)
    assert (model_admin.seats_booked(row), model_admin.seats_held(row), model_admin.free(row)) == (
        1,
        1,
        0,
    )


def test_the_cancel_action_cancels_a_course_and_frees_its_seats(staff_client, course, user):
    parent, *_ = buy(course, user, 1)
    resp = staff_client.post(
        reverse("admin:bookings_booking_changelist"),
        {"action": "cancel_bookings", "_selected_action": [parent.pk]},
        follow=True,
    )
    assert resp.status_code == 200
    assert "Cancelled 4 bookings" in resp.content.decode()
    assert set(Booking.objects.values_list("status", flat=True)) == {"canceled"}
    assert free_seats(course.sessions.first()) == 5


def test_holds_and_bookings_cannot_be_added_or_edited_here(superuser):
    request = RequestFactory().get("/")
    request.user = superuser
    holds = admin.site._registry[SeatHold]
    assert not holds.has_add_permission(request)
    assert not holds.has_change_permission(request)
    assert not holds.has_delete_permission(request)
    bookings = admin.site._registry[Booking]
    assert not bookings.has_add_permission(request)
    assert not bookings.has_delete_permission(request)
