"""The edges of the booking rules: the hold limits' defaults, a slot, a session or a
course starting this very moment, ids of any size, a package with several withdrawn
items, a stored plan, the first session id, buyers racing for one 1-on-1 slot, and a
buyer's holder lock that must not stop their other rows from being written."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from bookings.errors import SeatHoldLimitError, SeatsUnavailableError
from bookings.models import SeatHold, Service
from bookings.services.bookings import booking_schedule
from bookings.services.holds import _holder_lock, seat_holds_create, seat_holds_release
from bookings.services.plans import PlanNode, booking_plan_build, slot_validate
from bookings.services.seats import hold_limits, hold_minutes
from kernel.errors import ConflictError, InvalidInputError
from tests.bookings.factories import PackageItemFactory, ServiceFactory, ServiceSessionFactory
from tests.bookings.seat_checks import plan_for
from tests.bookings.test_bookings import buy
from tests.bookings.times import at
from tests.factories import UserFactory

pytest_plugins = ["tests.bookings.fixtures"]


def test_without_settings_a_buyer_may_hold_two_seats_a_session_and_five_orders(settings):
    settings.TOLLGATE = {
        k: v for k, v in settings.TOLLGATE.items() if not k.startswith("BOOKING_HOLD")
    }
    assert hold_limits() == (2, 5)
    assert hold_minutes() == 15


@pytest.mark.django_db
def test_a_slot_starting_this_very_moment_is_in_the_past(one_on_one):
    now = at(10)
    with pytest.raises(InvalidInputError) as err:
        slot_validate(one_on_one, now, now=now)
    assert "is in the past" in err.value.message
    assert slot_validate(one_on_one, now, now=now - timedelta(seconds=1)) == at(11)


@pytest.mark.django_db
def test_a_package_with_several_withdrawn_items_names_its_first_and_lists_them_all():
    package = ServiceFactory(name="Weekend", kind=Service.Kind.BUNDLE, price=9000)
    first = ServiceFactory(name="Bread class", kind=Service.Kind.WORKSHOP, active=False)
    second = ServiceFactory(name="Pasta class", kind=Service.Kind.WORKSHOP, active=False)
    for service in (first, second):
        ServiceSessionFactory(service=service)
        PackageItemFactory(package=package, item_service=service)
    with pytest.raises(InvalidInputError) as err:
        booking_plan_build(service_id=package.pk, kind=package.kind, scheduling_data=None)
    assert "contains Bread class, which is no longer offered" in err.value.message
    assert err.value.extra["inactive_service_ids"] == [first.pk, second.pk]


@pytest.mark.django_db(transaction=True)
def test_a_buyer_s_holder_lock_does_not_block_rows_that_point_at_them(user):
    """One request of a buyer holds their lock (taking seats); another writes a row
    that points at the buyer (an order, a hold): a key-share lock, which it must get
    at once, not after the first request ends."""
    session = ServiceSessionFactory(capacity=5)
    locked, release = threading.Event(), threading.Event()

    def first_request() -> None:
        try:
            with transaction.atomic():
                _holder_lock(user.pk)
                locked.set()
                release.wait(20)
        finally:
            connection.close()

    holder = threading.Thread(target=first_request)
    holder.start()
    try:
        assert locked.wait(20)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '3s'")
            SeatHold.objects.create(
                service=session.service,
                session=session,
                user=user,
                order_id=1,
                expires_at=timezone.now() + timedelta(minutes=15),
            )
    finally:
        release.set()
        holder.join(30)
    assert SeatHold.objects.filter(user=user).count() == 1


@pytest.mark.django_db
def test_a_plan_stored_with_its_order_comes_back_as_planned(bundle, one_on_one, workshop):
    scheduling = {
        "items": [
            {"service_id": one_on_one.pk, "start_datetime": at(10).isoformat()},
            {"service_id": one_on_one.pk, "start_datetime": at(12).isoformat()},
        ]
    }
    _, plan = booking_plan_build(service_id=bundle.pk, kind=bundle.kind, scheduling_data=scheduling)
    assert any(child.scheduling_data for child in plan.children)
    assert PlanNode.from_dict(plan.to_dict()) == plan


@pytest.mark.django_db
def test_session_ids_start_at_one():
    session = ServiceSessionFactory(pk=1, service__kind=Service.Kind.WORKSHOP)
    service = session.service
    _, plan = booking_plan_build(
        service_id=service.pk, kind=service.kind, scheduling_data={"service_session_id": 1}
    )
    assert plan.session_id == 1
    with pytest.raises(InvalidInputError) as err:
        booking_plan_build(
            service_id=service.pk, kind=service.kind, scheduling_data={"service_session_id": 0}
        )
    assert err.value.extra["field"] == "service_session_id"


@pytest.mark.django_db
def test_a_session_starting_this_very_moment_has_started(workshop, monkeypatch):
    session = workshop.sessions.get()
    monkeypatch.setattr(timezone, "now", lambda: session.start)
    with pytest.raises(InvalidInputError) as err:
        booking_plan_build(
            service_id=workshop.pk,
            kind=workshop.kind,
            scheduling_data={"service_session_id": session.pk},
        )
    assert "has already started" in err.value.message


@pytest.mark.django_db
def test_a_course_whose_first_session_starts_this_very_moment_has_begun(course, monkeypatch):
    first = course.sessions.order_by("start").first()
    monkeypatch.setattr(timezone, "now", lambda: first.start)
    with pytest.raises(InvalidInputError) as err:
        booking_plan_build(service_id=course.pk, kind=course.kind, scheduling_data=None)
    assert "has already begun" in err.value.message
    monkeypatch.setattr(timezone, "now", lambda: first.start - timedelta(seconds=1))
    _, plan = booking_plan_build(service_id=course.pk, kind=course.kind, scheduling_data=None)
    assert len(plan.children) == 3


@pytest.mark.django_db
def test_a_workshop_session_is_found_whatever_the_size_of_its_ids():
    """Ids are compared by value: a large id read from the database is a new integer."""
    session = ServiceSessionFactory(
        service=ServiceFactory(pk=100_000, kind=Service.Kind.WORKSHOP), pk=200_000
    )
    _, plan = booking_plan_build(
        service_id=100_000,
        kind=Service.Kind.WORKSHOP,
        scheduling_data={"service_session_id": 200_000},
    )
    assert (plan.service_id, plan.session_id) == (100_000, session.pk)
    ServiceSessionFactory(service=ServiceFactory(kind=Service.Kind.WORKSHOP), pk=200_001)
    with pytest.raises(InvalidInputError) as err:
        booking_plan_build(
            service_id=100_000,
            kind=Service.Kind.WORKSHOP,
            scheduling_data={"service_session_id": 200_001},
        )
    assert err.value.extra["service_session_id"] == 200_001


@pytest.mark.django_db(transaction=True)
def test_buyers_racing_for_one_1_on_1_slot_get_it_once(one_on_one):
    """The slot has no row of its own to lock: the service's lock is what serialises
    its buyers, so one holds it and every other is refused."""
    buyers = [UserFactory() for _ in range(6)]
    plan = plan_for(one_on_one, {"start_datetime": at(10).isoformat()})
    barrier = threading.Barrier(len(buyers))

    def buy(i: int) -> str:
        try:
            barrier.wait(20)
            seat_holds_create(order_id=100 + i, user_id=buyers[i].pk, plan=plan)
            return "held"
        except SeatsUnavailableError:
            return "refused"
        finally:
            connection.close()

    answers: list[str] = [""] * len(buyers)

    def run(i: int) -> None:
        answers[i] = buy(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(buyers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(answers) == ["held"] + ["refused"] * (len(buyers) - 1)
    assert SeatHold.objects.filter(service=one_on_one, status="active").count() == 1


@pytest.mark.django_db
def test_a_hold_taken_again_the_moment_the_first_would_end_is_a_full_one(
    small_workshop, user, monkeypatch
):
    """Released early and taken again: the new hold keeps the first one's end while
    that is still to come; at the very moment it ends, the new hold gets its full
    time rather than being born already over."""
    plan = plan_for(small_workshop)
    [first] = seat_holds_create(order_id=1, user_id=user.pk, plan=plan)
    seat_holds_release(order_id=1)  # the payment failed
    monkeypatch.setattr(timezone, "now", lambda: first.expires_at)
    [again] = seat_holds_create(order_id=1, user_id=user.pk, plan=plan)
    assert again.expires_at == first.expires_at + timedelta(minutes=hold_minutes())
    assert SeatHold.objects.live(first.expires_at).filter(order_id=1).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("items", [[1], ["a call"], 5, {"service_id": 1}])
def test_package_items_that_are_not_a_list_of_objects_are_refused(bundle, items):
    with pytest.raises(InvalidInputError) as err:
        booking_plan_build(service_id=bundle.pk, kind=bundle.kind, scheduling_data={"items": items})
    assert err.value.extra["field"] == "scheduling_data.items"


@pytest.mark.django_db
def test_with_a_limit_of_one_seat_a_second_unpaid_order_for_the_session_is_refused(
    workshop, user, settings
):
    settings.TOLLGATE = {**settings.TOLLGATE, "BOOKING_HOLD_SEATS_PER_SESSION": 1}
    plan = plan_for(workshop)
    seat_holds_create(order_id=1, user_id=user.pk, plan=plan)
    with pytest.raises(SeatHoldLimitError) as err:
        seat_holds_create(order_id=2, user_id=user.pk, plan=plan)
    assert (err.value.extra["limit"], err.value.extra["held"]) == (1, 1)


@pytest.mark.django_db
def test_a_lowered_per_user_limit_applies_at_once_to_a_buyer_already_past_it(user, settings):
    settings.TOLLGATE = {**settings.TOLLGATE, "BOOKING_HOLDS_PER_USER": 3}
    workshops = [ServiceFactory(kind=Service.Kind.WORKSHOP) for _ in range(4)]
    for service in workshops:
        ServiceSessionFactory(service=service)
    for order_id, service in enumerate(workshops[:3], start=1):
        seat_holds_create(order_id=order_id, user_id=user.pk, plan=plan_for(service))
    settings.TOLLGATE = {**settings.TOLLGATE, "BOOKING_HOLDS_PER_USER": 2}
    with pytest.raises(SeatHoldLimitError) as err:
        seat_holds_create(order_id=4, user_id=user.pk, plan=plan_for(workshops[3]))
    assert (err.value.extra["scope"], err.value.extra["held"]) == ("user", 3)


@pytest.mark.django_db
def test_only_a_1_on_1_unit_is_scheduled_never_the_package_that_holds_it(bundle, one_on_one, user):
    scheduling = {"items": [{"service_id": one_on_one.pk, "start_datetime": at(10).isoformat()}]}
    parent, *_ = buy(bundle, user, 1, scheduling)
    assert not parent.is_scheduled  # a package has no time of its own
    with pytest.raises(ConflictError):
        booking_schedule(booking_id=parent.pk, user_id=user.pk, start_datetime=at(13).isoformat())
