"""Seat holds: capacity, expiry and the sweep, release, and 1-on-1 slots that may not overlap."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule

from bookings.errors import SeatsUnavailableError
from bookings.models import SeatHold
from bookings.services.holds import seat_holds_create, seat_holds_expire, seat_holds_release
from tests.bookings.factories import AvailabilityWindowFactory, ServiceFactory
from tests.bookings.seat_checks import free_seats, plan_for
from tests.bookings.times import at, iso

pytest_plugins = ["tests.bookings.fixtures"]
pytestmark = pytest.mark.django_db


def hold(service, user, order_id: int, scheduling=None) -> list[SeatHold]:
    return seat_holds_create(order_id=order_id, user_id=user.pk, plan=plan_for(service, scheduling))


def expire_now(order_id: int) -> None:
    """Move the order's holds past their expiry, as time would."""
    SeatHold.objects.filter(order_id=order_id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )


def test_holds_take_seats_up_to_capacity_then_refuse(small_workshop, user):
    session = small_workshop.sessions.get()
    # Three quotes while seats are free; only two holds fit.
    plans = [plan_for(small_workshop) for _ in range(3)]
    seat_holds_create(order_id=1, user_id=user.pk, plan=plans[0])
    seat_holds_create(order_id=2, user_id=user.pk, plan=plans[1])
    assert free_seats(session) == 0

    with pytest.raises(SeatsUnavailableError) as err:
        seat_holds_create(order_id=3, user_id=user.pk, plan=plans[2])
    assert err.value.status == 409
    assert err.value.extra == {"service_session_id": session.pk, "free_seats": 0, "capacity": 2}
    assert not SeatHold.objects.filter(order_id=3).exists()
    # The quote itself refuses once the session is full.
    with pytest.raises(SeatsUnavailableError):
        plan_for(small_workshop)


def test_holding_twice_for_one_order_holds_once(small_workshop, user):
    first = hold(small_workshop, user, 1)
    again = hold(small_workshop, user, 1)
    assert [h.pk for h in again] == [h.pk for h in first]
    assert free_seats(small_workshop.sessions.get()) == 1


def test_a_hold_lives_the_configured_minutes(small_workshop, user, settings):
    settings.TOLLGATE = {**settings.TOLLGATE, "BOOKING_HOLD_MINUTES": 5}
    [made] = hold(small_workshop, user, 1)
    lives = made.expires_at - timezone.now()
    assert timedelta(minutes=4) < lives <= timedelta(minutes=5)


def test_an_expired_hold_frees_its_seat_at_once_and_the_sweep_marks_it(small_workshop, user):
    session = small_workshop.sessions.get()
    hold(small_workshop, user, 1)
    hold(small_workshop, user, 2)
    assert free_seats(session) == 0

    expire_now(1)
    assert free_seats(session) == 1  # before any sweep
    hold(small_workshop, user, 3)  # the freed seat can be held again
    assert free_seats(session) == 0

    assert seat_holds_expire() == 1
    assert SeatHold.objects.get(order_id=1).status == SeatHold.Status.EXPIRED
    assert SeatHold.objects.get(order_id=2).status == SeatHold.Status.ACTIVE
    assert seat_holds_expire() == 0


def test_the_sweep_is_scheduled_every_minute():
    schedule = Schedule.objects.get(func="bookings.tasks.seat_holds_expire")
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == ("I", 1, -1)


def test_release_frees_the_seats_and_is_idempotent(small_workshop, user):
    session = small_workshop.sessions.get()
    hold(small_workshop, user, 1)
    hold(small_workshop, user, 2)
    assert seat_holds_release(order_id=1) == 1
    assert seat_holds_release(order_id=1) == 0
    assert SeatHold.objects.get(order_id=1).status == SeatHold.Status.RELEASED
    assert free_seats(session) == 1


def test_an_overlapping_1_on_1_slot_is_refused(one_on_one, user):
    hold(one_on_one, user, 1, {"start_datetime": iso(at(10))})

    with pytest.raises(SeatsUnavailableError, match="is taken"):
        hold(one_on_one, user, 2, {"start_datetime": iso(at(10, 30))})
    with pytest.raises(SeatsUnavailableError):
        hold(one_on_one, user, 3, {"start_datetime": iso(at(9, 1))})
    # Back to back is fine.
    hold(one_on_one, user, 4, {"start_datetime": iso(at(11))})
    hold(one_on_one, user, 5, {"start_datetime": iso(at(9))})


def test_the_same_host_cannot_be_booked_twice_at_once_through_two_services(one_on_one, coach, user):
    other = ServiceFactory(kind="session", duration_minutes=30, host=coach)
    AvailabilityWindowFactory(service=other, start=at(9), end=at(17))
    hold(one_on_one, user, 1, {"start_datetime": iso(at(10))})

    with pytest.raises(SeatsUnavailableError):
        hold(other, user, 2, {"start_datetime": iso(at(10, 30))})
    hold(other, user, 3, {"start_datetime": iso(at(11))})


def test_an_expired_slot_hold_frees_the_slot(one_on_one, user):
    hold(one_on_one, user, 1, {"start_datetime": iso(at(10))})
    expire_now(1)
    hold(one_on_one, user, 2, {"start_datetime": iso(at(10))})
    assert SeatHold.objects.filter(order_id=2, start=at(10)).exists()
