"""Every bookable type bought end to end: real HTTP to a live server, localstripe as Stripe.

Each purchase pays at once with `pm_card_visa`, so the order is `paid` and its
bookings exist when `POST /payments/create/` answers. Then the bookings, the
seats and the unified metadata are checked as a client and as Stripe see them.
"""

from __future__ import annotations

import json

import pytest

from billing.models import Order
from bookings.models import Booking, SeatHold, Service
from tests.bookings.purchases import KINDS, bookable, bought, purchase, stripe_client
from tests.bookings.seat_checks import free_seats
from tests.bookings.times import at, iso

pytest_plugins = ["tests.bookings.fixtures"]
pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def shape(order: Order) -> list[tuple[str, str | None, int | None]]:
    """The order's bookings as (kind, parent's kind, session id), top-level first."""
    return [
        (b.service.kind, b.parent.service.kind if b.parent else None, b.session_id)
        for b in Booking.objects.filter(order_id=order.pk)
        .select_related("service", "parent__service")
        .order_by("id")
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_each_type_is_bought_over_http_and_booked(kind, request, http, stripe_server, user):
    service, scheduling = bookable(kind, request)
    order = bought(http, service, scheduling)

    # The unified metadata, on the order and at Stripe.
    expected = {
        "order_id": str(order.pk),
        "user_id": str(user.pk),
        "order_type": "direct",
        "purchase_type": kind,
        "service_id": str(service.pk),
        "service_type": kind,
        "service_name": service.name,
        "tollgate_deployment": "tollgate",
    }
    if kind == "workshop":
        expected["service_session_id"] = str(scheduling["service_session_id"])
    if scheduling:
        expected["scheduling_data"] = json.dumps(scheduling, separators=(",", ":"), sort_keys=True)
    assert order.metadata == expected
    [intent] = stripe_client().v1.payment_intents.list().data
    assert intent.metadata.to_dict() == expected
    assert (intent.amount, order.amount) == (service.price, service.price)

    # The bookings, as the buyer sees them.
    listed = http.get("/bookings/").json()["items"]
    [top] = listed
    assert (top["service_id"], top["order_id"], top["status"]) == (
        service.pk,
        order.pk,
        "confirmed",
    )
    assert SeatHold.objects.filter(order_id=order.pk).exclude(status="converted").count() == 0
    workshop_session = (
        request.getfixturevalue("workshop").sessions.get()
        if kind in ("workshop", "bundle")
        else None
    )
    if kind == "session":
        assert shape(order) == [("session", None, None)]
        assert top["start"] == iso(at(10)).replace("+00:00", "Z")
    elif kind == "workshop":
        assert shape(order) == [("workshop", None, workshop_session.pk)]
        assert free_seats(workshop_session) == 9
    elif kind == "course":
        sessions = list(service.sessions.order_by("start"))
        assert shape(order) == [("course", None, None)] + [
            ("course", "course", s.pk) for s in sessions
        ]
        assert [free_seats(s) for s in sessions] == [4, 4, 4]
        assert len(top["children"]) == 3
    elif kind == "package":
        assert shape(order) == [("package", None, None)] + [("session", "package", None)] * 3
        assert [c["start"] is not None for c in top["children"]] == [True, False, False]
    else:
        assert shape(order) == [
            ("bundle", None, None),
            ("session", "bundle", None),
            ("session", "bundle", None),
            ("workshop", "bundle", workshop_session.pk),
        ]
        assert free_seats(workshop_session) == 9

    if kind in ("session", "package", "bundle"):
        # The 1-on-1 slot is taken now: the same time again is refused before Stripe.
        call = request.getfixturevalue("one_on_one")
        again = http.post("/payments/create/", purchase(call, {"start_datetime": iso(at(10, 30))}))
        assert again.status_code == 409, again.text
        assert again.json()["code"] == "seats_unavailable"
        assert len(stripe_client().v1.payment_intents.list().data) == 1


def test_a_declined_card_releases_the_seat(http, stripe_server, small_workshop):
    session = small_workshop.sessions.get()
    resp = http.post(
        "/payments/create/",
        purchase(small_workshop, payment_method_id="pm_card_chargeCustomerFail"),
    )
    assert resp.status_code == 402, resp.text
    assert resp.json()["code"] == "card_declined"
    order = Order.objects.get(pk=resp.json()["extra"]["order_id"])
    assert order.status == Order.Status.FAILED
    assert SeatHold.objects.get(order_id=order.pk).status == SeatHold.Status.RELEASED
    assert not Booking.objects.exists()
    assert free_seats(session) == 2
    listed = http.get(f"/bookings/services/{small_workshop.pk}/sessions/").json()
    assert listed[0]["free_seats"] == 2


def test_a_pending_order_holds_its_seat_until_paid(http, stripe_server, small_workshop):
    session = small_workshop.sessions.get()
    body = purchase(small_workshop)
    del body["payment_method_id"]
    resp = http.post("/payments/create/", body)
    assert resp.status_code == 201, resp.text
    assert resp.json()["status"] == "pending"
    assert free_seats(session) == 1
    cancel = http.post(f"/payments/orders/{resp.json()['order_id']}/cancel/", {})
    assert cancel.status_code == 200, cancel.text
    assert free_seats(session) == 2


def test_bad_scheduling_is_422_and_nothing_reaches_stripe(http, stripe_server, one_on_one, bundle):
    past = http.post(
        "/payments/create/", purchase(one_on_one, {"start_datetime": "2001-01-01T10:00:00Z"})
    )
    assert past.status_code == 422
    assert "is in the past" in past.json()["message"]
    # Eight scheduled calls make a `scheduling_data` longer than Stripe's 500 characters.
    big = Service.objects.create(name="Eight calls", kind="package", price=50000)
    big.items.create(item_service=one_on_one, quantity=8)
    items = [{"service_id": one_on_one.pk, "start_datetime": iso(at(9 + h))} for h in range(8)]
    assert len(json.dumps({"items": items}, separators=(",", ":"))) > 500
    too_long = http.post("/payments/create/", purchase(big, {"items": items}))
    assert too_long.status_code == 422, too_long.text
    assert too_long.json()["code"] == "metadata_too_large"
    assert "scheduling_data" in too_long.json()["message"]
    assert stripe_client().v1.payment_intents.list().data == []
    assert not Order.objects.exists()
    assert not SeatHold.objects.exists()


def test_a_service_id_alone_buys_the_service(http, stripe_server, workshop):
    """A body that names no purchase type: the plugin that knows the service answers."""
    resp = http.post(
        "/payments/create/",
        {"service_id": workshop.pk, "payment_type": "intent", "payment_method_id": "pm_card_visa"},
    )
    assert resp.status_code == 201, resp.text
    order = Order.objects.get(pk=resp.json()["order_id"])
    assert (order.purchase_type, order.metadata["service_type"]) == ("workshop", "workshop")
    assert Booking.objects.get(order_id=order.pk).session == workshop.sessions.get()
