"""Validation of a booking request: each bad request is a 422 that says what is wrong."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from bookings.services.plans import booking_plan_build
from kernel.errors import InvalidInputError
from tests.bookings.factories import PackageItemFactory, ServiceFactory, ServiceSessionFactory
from tests.bookings.seat_checks import plan_for
from tests.bookings.times import at, iso

pytest_plugins = ["tests.bookings.fixtures"]
pytestmark = pytest.mark.django_db


def refused(service, scheduling=None, *, kind=None) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as err:
        booking_plan_build(
            service_id=service.pk, kind=kind or service.kind, scheduling_data=scheduling
        )
    assert err.value.status == 422
    return err.value


def test_a_1_on_1_plan_is_one_slot_of_the_service_duration(one_on_one):
    plan = plan_for(one_on_one, {"start_datetime": iso(at(10))})
    assert (plan.start, plan.end) == (at(10), at(11))
    assert plan.needs_slot and not plan.needs_seat and plan.children == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "`start_datetime` is required"),
        ("next tuesday", "is not an ISO-8601 date and time"),
        ("2030-01-31T14:00:00", "has no timezone"),
        (1234, "`start_datetime` is required"),
    ],
)
def test_a_bad_start_datetime_is_refused(one_on_one, value, message):
    error = refused(one_on_one, {"start_datetime": value})
    assert message in error.message
    assert error.extra["field"] == "start_datetime"


def test_a_slot_in_the_past_is_refused(one_on_one):
    past = timezone.now() - timedelta(hours=1)
    assert "is in the past" in refused(one_on_one, {"start_datetime": iso(past)}).message


def test_a_slot_outside_availability_is_refused(one_on_one):
    assert "not available" in refused(one_on_one, {"start_datetime": iso(at(8))}).message
    # Starts inside but runs past the window's end.
    assert "not available" in refused(one_on_one, {"start_datetime": iso(at(16, 30))}).message


def test_a_session_of_another_service_is_refused(workshop, course):
    other_session = course.sessions.first()
    error = refused(workshop, {"service_session_id": other_session.pk})
    assert f"Session {other_session.pk} is not a session of {workshop.name}" in error.message


def test_a_workshop_session_that_has_started_is_refused(workshop):
    started = ServiceSessionFactory(service=workshop, start=timezone.now() - timedelta(minutes=5))
    assert "already started" in refused(workshop, {"service_session_id": started.pk}).message


def test_a_workshop_with_several_sessions_needs_one_named(workshop):
    ServiceSessionFactory(service=workshop, start=timezone.now() + timedelta(days=14))
    assert "name one" in refused(workshop).message
    chosen = workshop.sessions.last()
    assert plan_for(workshop, {"service_session_id": chosen.pk}).session_id == chosen.pk


def test_a_bad_session_id_is_refused(workshop):
    assert "positive integer" in refused(workshop, {"service_session_id": "7"}).message


def test_a_course_that_has_begun_is_refused(course):
    course.sessions.filter(pk=course.sessions.first().pk).update(
        start=timezone.now() - timedelta(hours=1)
    )
    assert "already begun" in refused(course).message


def test_a_package_with_an_inactive_item_is_refused(bundle, workshop):
    workshop.active = False
    workshop.save()
    error = refused(bundle)
    assert "Sourdough workshop, which is no longer offered" in error.message
    assert error.extra["inactive_service_ids"] == [workshop.pk]


def test_a_package_may_not_contain_a_package(package):
    outer = ServiceFactory(kind="bundle")
    PackageItemFactory(package=outer, item_service=package)
    assert "cannot contain another package" in refused(outer).message


def test_package_scheduling_must_name_its_items_and_not_overbook_them(bundle, course):
    error = refused(bundle, {"items": [{"service_id": course.pk}]})
    assert "not in Starter bundle" in error.message
    three = [
        {"service_id": bundle.items.first().item_service_id, "start_datetime": iso(at(h))}
        for h in (9, 11, 13)
    ]
    assert "holds 2 of Coaching call" in refused(bundle, {"items": three}).message
    assert "list of objects" in refused(bundle, {"items": "soon"}).message


def test_two_slots_of_one_purchase_may_not_overlap(bundle, one_on_one):
    items = [
        {"service_id": one_on_one.pk, "start_datetime": iso(at(10))},
        {"service_id": one_on_one.pk, "start_datetime": iso(at(10, 30))},
    ]
    assert "overlap" in refused(bundle, {"items": items}).message


def test_the_service_must_exist_be_active_and_be_of_the_kind(workshop, course):
    assert "is a Workshop, not a Course" in refused(workshop, kind="course").message
    workshop.active = False
    workshop.save()
    assert "No bookable service" in refused(workshop).message


def test_a_bundle_plans_a_child_per_unit(bundle, one_on_one, workshop):
    plan = plan_for(
        bundle, {"items": [{"service_id": one_on_one.pk, "start_datetime": iso(at(10))}]}
    )
    kinds = [(c.kind, c.start, c.session_id) for c in plan.children]
    assert kinds == [
        ("session", at(10), None),
        ("session", None, None),  # scheduled later
        ("workshop", workshop.sessions.get().start, workshop.sessions.get().pk),
    ]
