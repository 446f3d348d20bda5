"""Unpaid seat holds are bounded per user, and a hold that ran out is never revived.

One customer without a card must not be able to hold every seat of a session:
holds count against a per-user limit in each session and a per-user limit
overall (`TOLLGATE["BOOKING_HOLD_SEATS_PER_SESSION"]`,
`TOLLGATE["BOOKING_HOLDS_PER_USER"]`), checked under the same locks as the
seats, so concurrent requests by one user cannot get past them either.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from bookings.errors import SeatHoldLimitError, SeatsUnavailableError
from bookings.models import SeatHold, Service
from bookings.services.holds import seat_holds_create, seat_holds_release
from tests.billing.conftest import in_threads
from tests.bookings.factories import ServiceFactory, ServiceSessionFactory
from tests.bookings.seat_checks import free_seats, plan_for
from tests.factories import UserFactory

pytest_plugins = ["tests.bookings.fixtures"]


@pytest.fixture
def limits(settings):
    settings.TOLLGATE = {
        **settings.TOLLGATE,
        "BOOKING_HOLD_SEATS_PER_SESSION": 2,
        "BOOKING_HOLDS_PER_USER": 3,
    }


@pytest.fixture
def twelve_seats(db) -> Service:
    service = ServiceFactory(name="Pottery workshop", kind=Service.Kind.WORKSHOP, price=4000)
    ServiceSessionFactory(service=service, capacity=12)
    return service


@pytest.mark.django_db
def test_one_user_without_a_card_cannot_hold_every_seat(
    twelve_seats, limits, api, other_api, stripe_server
):
    session = twelve_seats.sessions.get()
    body = {"service_id": twelve_seats.pk, "payment_type": "intent"}
    made = [api.post("/payments/create/", body) for _ in range(2)]
    assert [r.status_code for r in made] == [201, 201], [r.content for r in made]
    assert free_seats(session) == 10

    refused = [api.post("/payments/create/", body) for _ in range(10)]
    assert {r.status_code for r in refused} == {409}
    error = refused[0].json()
    assert error["code"] == "seat_hold_limit"
    assert error["extra"]["limit"] == 2
    assert error["extra"]["scope"] == "session"
    assert error["extra"]["service_session_id"] == session.pk
    assert sorted(error["extra"]["order_ids"]) == sorted(r.json()["order_id"] for r in made)
    assert "pay for or cancel" in error["message"]
    assert free_seats(session) == 10

    # A paying buyer still gets a seat.
    paid = other_api.post("/payments/create/", {**body, "payment_method_id": "pm_card_visa"})
    assert paid.status_code == 201, paid.content
    assert paid.json()["status"] == "paid"
    assert free_seats(session) == 9


@pytest.mark.django_db
def test_holds_across_sessions_are_bounded_per_user(limits, user):
    services = [ServiceFactory(kind=Service.Kind.WORKSHOP) for _ in range(4)]
    for service in services:
        ServiceSessionFactory(service=service, capacity=5)
    for order_id, service in enumerate(services[:3], start=1):
        seat_holds_create(order_id=order_id, user_id=user.pk, plan=plan_for(service))

    with pytest.raises(SeatHoldLimitError) as err:
        seat_holds_create(order_id=4, user_id=user.pk, plan=plan_for(services[3]))
    assert err.value.status == 409
    assert err.value.extra["scope"] == "user"
    assert err.value.extra["limit"] == 3
    assert sorted(err.value.extra["order_ids"]) == [1, 2, 3]
    # Another user is not affected, and a hold that runs out stops counting.
    seat_holds_create(order_id=5, user_id=UserFactory().pk, plan=plan_for(services[3]))
    SeatHold.objects.filter(order_id=1).update(expires_at=timezone.now() - timedelta(seconds=1))
    seat_holds_create(order_id=4, user_id=user.pk, plan=plan_for(services[3]))


@pytest.mark.django_db
def test_a_limit_of_zero_turns_it_off(settings, twelve_seats, user):
    settings.TOLLGATE = {
        **settings.TOLLGATE,
        "BOOKING_HOLD_SEATS_PER_SESSION": 0,
        "BOOKING_HOLDS_PER_USER": 0,
    }
    for order_id in range(1, 13):
        seat_holds_create(order_id=order_id, user_id=user.pk, plan=plan_for(twelve_seats))
    assert free_seats(twelve_seats.sessions.get()) == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_holds_by_one_user_cannot_pass_the_limits(limits, user):
    one = ServiceFactory(kind=Service.Kind.WORKSHOP)
    ServiceSessionFactory(service=one, capacity=20)
    plan = plan_for(one)

    results = in_threads(
        8, lambda i: seat_holds_create(order_id=100 + i, user_id=user.pk, plan=plan)
    )
    assert sum(isinstance(r, list) for r in results) == 2, results
    assert all(isinstance(r, list | SeatHoldLimitError) for r in results), results
    assert SeatHold.objects.live(timezone.now()).filter(user=user).count() == 2

    # The limit across sessions, under the same race.
    others = [ServiceFactory(kind=Service.Kind.WORKSHOP) for _ in range(6)]
    for service in others:
        ServiceSessionFactory(service=service, capacity=5)
    plans = [plan_for(service) for service in others]
    results = in_threads(
        6, lambda i: seat_holds_create(order_id=200 + i, user_id=user.pk, plan=plans[i])
    )
    assert sum(isinstance(r, list) for r in results) == 1, results  # 2 held already, limit 3
    assert (
        SeatHold.objects.live(timezone.now())
        .filter(user=user)
        .values("order_id")
        .distinct()
        .count()
        == 3
    )


@pytest.mark.django_db
def test_an_expired_hold_is_not_revived(small_workshop, user, other_user):
    session = small_workshop.sessions.get()
    session.capacity = 1
    session.save()
    [first] = seat_holds_create(order_id=1, user_id=user.pk, plan=plan_for(small_workshop))
    SeatHold.objects.filter(pk=first.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    # Nobody swept it yet; another buyer takes the freed seat.
    seat_holds_create(order_id=2, user_id=other_user.pk, plan=plan_for(small_workshop))

    # Holding again for the first order (paying it again) must not bring the lapsed hold back.
    with pytest.raises(SeatsUnavailableError):
        seat_holds_create(order_id=1, user_id=user.pk, plan=plan_for(small_workshop, None))
    assert free_seats(session) == 0
    first.refresh_from_db()
    assert first.expires_at < timezone.now()
    assert not SeatHold.objects.live(timezone.now()).filter(order_id=1).exists()


@pytest.mark.django_db
def test_a_lapsed_order_takes_a_free_seat_again_as_a_new_hold(small_workshop, user):
    [first] = seat_holds_create(order_id=1, user_id=user.pk, plan=plan_for(small_workshop))
    lapsed_at = timezone.now() - timedelta(seconds=1)
    SeatHold.objects.filter(pk=first.pk).update(expires_at=lapsed_at)

    [again] = seat_holds_create(order_id=1, user_id=user.pk, plan=plan_for(small_workshop))
    assert again.pk != first.pk
    first.refresh_from_db()
    assert (first.status, first.expires_at) == (SeatHold.Status.EXPIRED, lapsed_at)
    # And a live hold is returned as it is, never extended.
    [same] = seat_holds_create(order_id=1, user_id=user.pk, plan=plan_for(small_workshop))
    assert (same.pk, same.expires_at) == (again.pk, again.expires_at)
    assert free_seats(small_workshop.sessions.get()) == 1


def test_the_limits_are_settings_with_defaults():
    from bookings.services.seats import hold_limits

    per_session, per_user = hold_limits()
    assert per_session >= 1 and per_user >= 1


@pytest.mark.django_db
def test_a_hold_released_early_and_taken_again_keeps_its_end(small_workshop, user):
    [first] = seat_holds_create(order_id=1, user_id=user.pk, plan=plan_for(small_workshop))
    seat_holds_release(order_id=1)  # the payment failed

    [again] = seat_holds_create(order_id=1, user_id=user.pk, plan=plan_for(small_workshop))
    assert again.pk != first.pk
    assert again.expires_at == first.expires_at
