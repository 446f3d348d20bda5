"""The bookings API: public service listings with free seats, my bookings only, scheduling."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from bookings.models import Booking, SeatHold, Service
from bookings.services.bookings import bookings_create_for_order
from bookings.services.holds import seat_holds_create
from tests.bookings.factories import AvailabilityWindowFactory, ServiceFactory
from tests.bookings.seat_checks import plan_for
from tests.bookings.times import at, iso

pytest_plugins = ["tests.bookings.fixtures"]
pytestmark = pytest.mark.django_db


def buy(service, user, order_id: int, scheduling=None):
    plan = plan_for(service, scheduling)
    seat_holds_create(order_id=order_id, user_id=user.pk, plan=plan)
    return bookings_create_for_order(order_id=order_id, user_id=user.pk, plan=plan)


def test_services_are_listed_publicly_with_prices_and_contents(anon_api, bundle, course):
    course.active = False
    course.save()
    resp = anon_api.get("/bookings/services/")
    assert resp.status_code == 200, resp.content
    services = {s["name"]: s for s in resp.json()}
    assert set(services) == {"Coaching call", "Sourdough workshop", "Starter bundle"}
    starter = services["Starter bundle"]
    assert (starter["kind"], starter["price"], starter["currency"]) == ("bundle", 15000, "usd")
    assert [(i["name"], i["quantity"]) for i in starter["items"]] == [
        ("Coaching call", 2),
        ("Sourdough workshop", 1),
    ]
    call = services["Coaching call"]
    assert call["duration_minutes"] == 60
    assert [(w["start"], w["end"]) for w in call["availability"]] == [
        (iso(at(9)).replace("+00:00", "Z"), iso(at(17)).replace("+00:00", "Z"))
    ]
    assert services["Sourdough workshop"]["items"] == []


def test_sessions_show_free_seats_less_bookings_and_live_holds(anon_api, small_workshop, user):
    session = small_workshop.sessions.get()
    buy(small_workshop, user, 1)
    seat_holds_create(order_id=2, user_id=user.pk, plan=plan_for(small_workshop))

    resp = anon_api.get(f"/bookings/services/{small_workshop.pk}/sessions/")
    assert resp.status_code == 200, resp.content
    [listed] = resp.json()
    assert (listed["id"], listed["capacity"], listed["free_seats"]) == (session.pk, 2, 0)


def test_sessions_of_an_unknown_or_inactive_service_are_404(anon_api, workshop):
    assert anon_api.get("/bookings/services/999999/sessions/").status_code == 404
    workshop.active = False
    workshop.save()
    resp = anon_api.get(f"/bookings/services/{workshop.pk}/sessions/")
    assert resp.status_code == 404
    assert resp.json()["code"] == "not_found"


def test_my_bookings_are_mine_only_and_paginated(
    api, other_api, user, other_user, course, workshop
):
    parent, *children = buy(course, user, 1)
    [theirs] = buy(workshop, other_user, 2)

    resp = api.get("/bookings/")
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert body["count"] == 1
    [listed] = body["items"]
    assert (listed["id"], listed["service_kind"], listed["order_id"]) == (parent.pk, "course", 1)
    assert [c["id"] for c in listed["children"]] == [c.pk for c in children]
    assert {c["status"] for c in listed["children"]} == {"confirmed"}

    child = api.get(f"/bookings/{children[0].pk}/").json()
    assert (child["parent_id"], child["session_id"]) == (parent.pk, children[0].session_id)
    assert api.get(f"/bookings/{theirs.pk}/").status_code == 404
    assert other_api.get(f"/bookings/{parent.pk}/").json()["code"] == "not_found"


def test_bookings_need_a_user(anon_api):
    assert anon_api.get("/bookings/").status_code == 401


def test_a_package_unit_is_scheduled_over_the_api(api, user, package):
    _, first, *_ = buy(package, user, 1)
    path = f"/bookings/{first.pk}/schedule/"

    resp = api.post(path, {"start_datetime": "tomorrow"})
    assert resp.status_code == 422
    assert "ISO-8601" in resp.json()["message"]
    resp = api.post(path, {"start_datetime": iso(at(10))})
    assert resp.status_code == 200, resp.content
    assert resp.json()["start"] == iso(at(10)).replace("+00:00", "Z")
    assert api.post(path, {"start_datetime": iso(at(12))}).status_code == 409


def test_a_page_beyond_any_offset_is_422_not_500(api):
    assert api.get("/bookings/", page=10**20).status_code == 422


def test_only_free_slots_of_a_one_on_one_are_offered(anon_api, one_on_one, coach, user):
    path = f"/bookings/services/{one_on_one.pk}/slots/"
    resp = anon_api.get(path)
    assert resp.status_code == 200, resp.content
    assert [s["start"] for s in resp.json()] == [
        iso(at(hour)).replace("+00:00", "Z") for hour in range(9, 17)
    ]
    assert resp.json()[0]["end"] == iso(at(10)).replace("+00:00", "Z")

    # Booked, held by an unpaid order, and booked with the same host through another
    # service (a half hour that overlaps the 14:00 slot): none of those is offered.
    buy(one_on_one, user, 1, {"start_datetime": iso(at(10))})
    seat_holds_create(
        order_id=2, user_id=user.pk, plan=plan_for(one_on_one, {"start_datetime": iso(at(12))})
    )
    quick = ServiceFactory(
        name="Quick call", kind=Service.Kind.SESSION, duration_minutes=30, host=coach
    )
    AvailabilityWindowFactory(service=quick, start=at(14, 30), end=at(15))
    buy(quick, user, 3, {"start_datetime": iso(at(14, 30))})
    # A hold that has lapsed, and a cancelled booking, free their slot again.
    [lapsed] = seat_holds_create(
        order_id=4, user_id=user.pk, plan=plan_for(one_on_one, {"start_datetime": iso(at(15))})
    )
    SeatHold.objects.filter(pk=lapsed.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    [cancelled] = buy(one_on_one, user, 5, {"start_datetime": iso(at(16))})
    Booking.objects.filter(pk=cancelled.pk).update(status=Booking.Status.CANCELED)

    starts = [s["start"] for s in anon_api.get(path).json()]
    assert starts == [iso(at(hour)).replace("+00:00", "Z") for hour in (9, 11, 13, 15, 16)]


def test_slots_start_in_the_future_and_other_kinds_have_none(anon_api, one_on_one, workshop):
    now = timezone.now().replace(microsecond=0)
    AvailabilityWindowFactory(
        service=one_on_one, start=now - timedelta(minutes=90), end=now + timedelta(minutes=90)
    )
    starts = [s["start"] for s in anon_api.get(f"/bookings/services/{one_on_one.pk}/slots/").json()]
    # Of the slots at now-90 min, now-30 min and now+30 min, only the last one is to come.
    assert starts[0] == iso(now + timedelta(minutes=30)).replace("+00:00", "Z")
    assert len(starts) == 1 + 8

    assert anon_api.get(f"/bookings/services/{workshop.pk}/slots/").json() == []
    assert anon_api.get("/bookings/services/999999/slots/").status_code == 404
    one_on_one.active = False
    one_on_one.save()
    assert anon_api.get(f"/bookings/services/{one_on_one.pk}/slots/").status_code == 404


def test_a_listing_offers_the_soonest_free_slots_up_to_its_limit(one_on_one):
    from bookings.selectors import service_slots_free

    # A second window a day later, and one that overlaps the first: no slot twice.
    AvailabilityWindowFactory(service=one_on_one, start=at(33), end=at(36))
    AvailabilityWindowFactory(service=one_on_one, start=at(16), end=at(18))
    starts = [slot.start for slot in service_slots_free(service=one_on_one)]
    assert starts == [at(h) for h in (*range(9, 18), 33, 34, 35)]
    assert [slot.start for slot in service_slots_free(service=one_on_one, limit=3)] == [
        at(9),
        at(10),
        at(11),
    ]
