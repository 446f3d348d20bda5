"""Bookings from paid orders: converting holds, taking a free seat after expiry, the
course and package trees, cancelling and refunds, and scheduling a package's 1-on-1 later."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from bookings.errors import SeatsUnavailableError
from bookings.models import Booking, SeatHold
from bookings.services.bookings import (
    booking_schedule,
    bookings_cancel,
    bookings_cancel_for_order,
    bookings_clear_disputed,
    bookings_create_for_order,
    bookings_mark_disputed,
    bookings_mark_partially_refunded,
)
from bookings.services.holds import seat_holds_create
from kernel.errors import ConflictError, InvalidInputError, NotFoundError
from tests.bookings.seat_checks import free_seats, plan_for
from tests.bookings.times import at, iso

pytest_plugins = ["tests.bookings.fixtures"]
pytestmark = pytest.mark.django_db


def buy(service, user, order_id: int, scheduling=None, *, expire: bool = False) -> list[Booking]:
    """Quote, hold and (after the payment) book, as the plugin does."""
    plan = plan_for(service, scheduling)
    seat_holds_create(order_id=order_id, user_id=user.pk, plan=plan)
    if expire:
        SeatHold.objects.filter(order_id=order_id).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
    return bookings_create_for_order(order_id=order_id, user_id=user.pk, plan=plan)


def test_a_paid_workshop_converts_its_hold_into_a_seat(small_workshop, user):
    session = small_workshop.sessions.get()
    [booking] = buy(small_workshop, user, 1)
    assert (booking.user, booking.service, booking.session) == (user, small_workshop, session)
    assert booking.status == Booking.Status.CONFIRMED
    assert (booking.start, booking.end, booking.order_id) == (session.start, session.end, 1)
    assert SeatHold.objects.get(order_id=1).status == SeatHold.Status.CONVERTED
    assert free_seats(session) == 1


def test_the_holds_that_fill_a_session_convert_without_counting_against_themselves(
    small_workshop, user, other_user
):
    session = small_workshop.sessions.get()
    plans = [plan_for(small_workshop) for _ in range(2)]
    for order_id, (buyer, plan) in enumerate(zip([user, other_user], plans, strict=True), 1):
        seat_holds_create(order_id=order_id, user_id=buyer.pk, plan=plan)
    assert free_seats(session) == 0
    for order_id, (buyer, plan) in enumerate(zip([user, other_user], plans, strict=True), 1):
        bookings_create_for_order(order_id=order_id, user_id=buyer.pk, plan=plan)
    assert Booking.objects.filter(session=session).count() == 2
    assert free_seats(session) == 0


def test_booking_twice_for_one_order_books_once(small_workshop, user):
    plan = plan_for(small_workshop)
    seat_holds_create(order_id=1, user_id=user.pk, plan=plan)
    first = bookings_create_for_order(order_id=1, user_id=user.pk, plan=plan)
    again = bookings_create_for_order(order_id=1, user_id=user.pk, plan=plan)
    assert [b.pk for b in again] == [b.pk for b in first]
    assert free_seats(small_workshop.sessions.get()) == 1


def test_a_payment_after_the_hold_expired_takes_a_free_seat(small_workshop, user):
    [booking] = buy(small_workshop, user, 1, expire=True)
    assert booking.session == small_workshop.sessions.get()
    assert free_seats(booking.session) == 1


def test_a_payment_after_the_hold_expired_is_refused_when_the_seat_was_taken(
    small_workshop, user, other_user
):
    session = small_workshop.sessions.get()
    late = plan_for(small_workshop)
    seat_holds_create(order_id=1, user_id=user.pk, plan=late)
    SeatHold.objects.filter(order_id=1).update(expires_at=timezone.now() - timedelta(seconds=1))
    buy(small_workshop, other_user, 2)
    buy(small_workshop, other_user, 3)

    with pytest.raises(SeatsUnavailableError):
        bookings_create_for_order(order_id=1, user_id=user.pk, plan=late)
    assert not Booking.objects.filter(order_id=1).exists()
    assert SeatHold.objects.get(order_id=1).status == SeatHold.Status.ACTIVE  # untouched
    assert free_seats(session) == 0


def test_a_course_is_a_parent_booking_with_a_seat_in_every_session(course, user):
    parent, *children = buy(course, user, 1)
    assert parent.parent is None and parent.session is None
    assert [c.parent_id for c in children] == [parent.pk] * 3
    assert [c.session for c in children] == list(course.sessions.order_by("start"))
    for session in course.sessions.all():
        assert free_seats(session) == 4


def test_a_course_booking_fails_whole_when_one_session_is_full(course, user, other_user):
    plan = plan_for(course)
    last = course.sessions.order_by("start").last()
    last.capacity = 1
    last.save()
    buy(course, other_user, 2)

    with pytest.raises(SeatsUnavailableError):
        bookings_create_for_order(order_id=1, user_id=user.pk, plan=plan)
    assert not Booking.objects.filter(order_id=1).exists()


def test_a_bundle_books_its_units_and_a_1_on_1_is_scheduled_later(
    bundle, one_on_one, workshop, user
):
    scheduling = {"items": [{"service_id": one_on_one.pk, "start_datetime": iso(at(10))}]}
    parent, *children = buy(bundle, user, 1, scheduling)
    assert parent.scheduling_data == scheduling
    assert [(c.service, c.start, c.session) for c in children] == [
        (one_on_one, at(10), None),
        (one_on_one, None, None),
        (workshop, workshop.sessions.get().start, workshop.sessions.get()),
    ]
    later = children[1]
    assert not later.is_scheduled

    with pytest.raises(SeatsUnavailableError):  # taken by the first unit
        booking_schedule(booking_id=later.pk, user_id=user.pk, start_datetime=iso(at(10, 30)))
    with pytest.raises(InvalidInputError, match="not available"):
        booking_schedule(booking_id=later.pk, user_id=user.pk, start_datetime=iso(at(17)))
    booking_schedule(booking_id=later.pk, user_id=user.pk, start_datetime=iso(at(11)))
    later.refresh_from_db()
    assert (later.start, later.end) == (at(11), at(12))
    with pytest.raises(ConflictError):
        booking_schedule(booking_id=later.pk, user_id=user.pk, start_datetime=iso(at(13)))


def test_only_the_owner_schedules_a_booking(package, user, other_user):
    _, first, *_ = buy(package, user, 1)
    with pytest.raises(NotFoundError):
        booking_schedule(booking_id=first.pk, user_id=other_user.pk, start_datetime=iso(at(10)))


def test_cancelling_an_order_frees_its_seats_and_slots_once(course, one_on_one, user):
    buy(course, user, 1)
    [call] = buy(one_on_one, user, 2, {"start_datetime": iso(at(10))})
    assert bookings_cancel_for_order(order_id=1) == 4
    assert bookings_cancel_for_order(order_id=1) == 0
    assert set(Booking.objects.filter(order_id=1).values_list("status", flat=True)) == {"canceled"}
    for session in course.sessions.all():
        assert free_seats(session) == 5

    bookings_cancel_for_order(order_id=2)
    [again] = buy(one_on_one, user, 3, {"start_datetime": iso(at(10))})
    assert again.start == call.start


def test_cancelling_an_unpaid_order_releases_its_holds(small_workshop, user):
    seat_holds_create(order_id=1, user_id=user.pk, plan=plan_for(small_workshop))
    assert bookings_cancel_for_order(order_id=1) == 0
    assert SeatHold.objects.get(order_id=1).status == SeatHold.Status.RELEASED


def test_a_partial_refund_marks_bookings_and_keeps_their_seats(course, user):
    buy(course, user, 1)
    assert bookings_mark_partially_refunded(order_id=1) == 4
    assert bookings_mark_partially_refunded(order_id=1) == 0
    assert set(Booking.objects.filter(order_id=1).values_list("status", flat=True)) == {
        "partially_refunded"
    }
    assert free_seats(course.sessions.first()) == 4


def test_staff_cancel_takes_the_children_with_the_parent(course, user):
    parent, *_ = buy(course, user, 1)
    assert bookings_cancel(booking_ids=[parent.pk]) == 4
    assert free_seats(course.sessions.first()) == 5


def test_disputed_bookings_keep_their_seats_and_cannot_be_scheduled_until_restored(
    package, course, user
):
    buy(course, user, 1)
    _, unit, *_ = buy(package, user, 2)
    assert bookings_mark_disputed(order_id=1) == 4
    assert bookings_mark_disputed(order_id=1) == 0
    assert free_seats(course.sessions.first()) == 4  # the seats stay taken
    bookings_mark_disputed(order_id=2)
    with pytest.raises(ConflictError, match="disputed"):
        booking_schedule(booking_id=unit.pk, user_id=user.pk, start_datetime=iso(at(10)))

    assert bookings_clear_disputed(order_id=2) > 0
    assert bookings_clear_disputed(order_id=2) == 0
    booking_schedule(booking_id=unit.pk, user_id=user.pk, start_datetime=iso(at(10)))
    bookings_cancel_for_order(order_id=1)
    assert bookings_clear_disputed(order_id=1) == 0  # a cancelled booking stays cancelled
    assert set(Booking.objects.filter(order_id=1).values_list("status", flat=True)) == {"canceled"}
