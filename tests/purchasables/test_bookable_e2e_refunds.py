"""Every bookable type refunded end to end, and a payment that outlives its seat hold.

Staff refund through `POST /payments/orders/{id}/refunds/` against localstripe:
a partial refund marks the bookings `partially_refunded` and keeps their seats;
the refund that completes the order cancels them and frees the seats and slots.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import Order, Refund
from billing.services.events import events_drain
from billing.tasks import refund_submit
from bookings.models import Booking, SeatHold, Service
from tests.billing.conftest import wait_for_event
from tests.bookings.purchases import (
    KINDS,
    Http,
    bookable,
    bought,
    http_for,
    purchase,
    stripe_client,
)
from tests.bookings.seat_checks import free_seats

pytest_plugins = ["tests.bookings.fixtures"]
pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def statuses(http: Http, order: Order) -> set[str]:
    """Every booking of the order, as its buyer sees them over the API."""
    [top] = [b for b in http.get("/bookings/").json()["items"] if b["order_id"] == order.pk]
    return {top["status"], *(c["status"] for c in top["children"])}


def seats_left(service: Service) -> list[int]:
    return [free_seats(s) for s in service.sessions.order_by("start")]


def refund(staff_http: Http, order: Order, body: dict) -> dict:
    resp = staff_http.post(f"/payments/orders/{order.pk}/refunds/", body)
    assert resp.status_code == 201, resp.text
    assert (resp.json()["status"], resp.json()["applied"]) == ("succeeded", True)
    order.refresh_from_db()
    return resp.json()


def rebuy_fits(http: Http, service: Service, scheduling: dict) -> None:
    """The same purchase again: it fits only if the first one's seats and slots were freed."""
    resp = http.post("/payments/create/", purchase(service, scheduling))
    assert resp.status_code == 201, resp.text


@pytest.mark.parametrize("kind", KINDS)
def test_a_partial_refund_then_the_rest(kind, request, http, staff_http, stripe_server):
    service, scheduling = bookable(kind, request)
    if kind == "course":
        service.sessions.update(capacity=1)
    order = bought(http, service, scheduling)
    seats = seats_left(service)

    refund(staff_http, order, {"amount": "1.00", "reason": "late start"})
    assert order.status == Order.Status.PARTIALLY_REFUNDED
    assert statuses(http, order) == {"partially_refunded"}
    assert seats_left(service) == seats  # a partial refund keeps the places

    rest = refund(staff_http, order, {})
    assert rest["amount"] == service.price - 100
    assert order.status == Order.Status.REFUNDED
    assert statuses(http, order) == {"canceled"}
    at_stripe = sorted(r.amount for r in stripe_client().v1.refunds.list().data)
    assert at_stripe == sorted([100, service.price - 100])
    rebuy_fits(http, service, scheduling)


@pytest.mark.parametrize("kind", KINDS)
def test_a_full_refund_cancels_and_frees_everything(kind, request, http, staff_http, stripe_server):
    service, scheduling = bookable(kind, request)
    if kind == "course":
        service.sessions.update(capacity=1)
    before = seats_left(service)
    order = bought(http, service, scheduling)

    body = refund(staff_http, order, {})
    assert body["amount"] == service.price
    assert order.status == Order.Status.REFUNDED
    assert statuses(http, order) == {"canceled"}
    assert seats_left(service) == before
    rebuy_fits(http, service, scheduling)


def pay_later(http: Http, service: Service, *, hold_expired: bool) -> Order:
    """Order now, let the hold run out, then pay from the browser as Stripe.js would."""
    body = purchase(service)
    del body["payment_method_id"]
    resp = http.post("/payments/create/", body)
    assert resp.status_code == 201, resp.text
    order = Order.objects.get(pk=resp.json()["order_id"])
    if hold_expired:
        SeatHold.objects.filter(order_id=order.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
    return order


def confirm_and_process(order: Order) -> None:
    intent_id = order.payments.get().stripe_payment_intent_id
    client = stripe_client()
    client.v1.payment_intents.update(intent_id, params={"payment_method": "pm_card_visa"})
    client.v1.payment_intents.confirm(intent_id)
    wait_for_event("payment_intent.succeeded", intent_id)
    events_drain()
    order.refresh_from_db()


def test_a_payment_after_the_hold_ran_out_takes_a_free_seat(http, live_stripe, small_workshop):
    order = pay_later(http, small_workshop, hold_expired=True)
    confirm_and_process(order)
    assert order.status == Order.Status.PAID
    [booking] = Booking.objects.filter(order_id=order.pk)
    assert booking.session == small_workshop.sessions.get()
    assert free_seats(booking.session) == 1


def test_a_payment_after_the_seat_was_taken_is_refunded_with_the_reason(
    http, live_stripe, small_workshop, live_server, other_user
):
    order = pay_later(http, small_workshop, hold_expired=True)
    others = http_for(live_server, other_user)
    bought(others, small_workshop, {})
    bought(others, small_workshop, {})

    confirm_and_process(order)
    assert order.status == Order.Status.PAID
    assert order.failure_code == "fulfilment_impossible"
    assert "were taken meanwhile" in order.failure_message
    assert not Booking.objects.filter(order_id=order.pk).exists()
    automatic = Refund.objects.get(order=order)
    assert automatic.source == Refund.Source.AUTOMATIC

    assert refund_submit(automatic.pk) == "succeeded"  # what the worker runs
    seen = http.get(f"/payments/orders/{order.pk}/").json()
    assert seen["status"] == "refunded"
    assert "were taken meanwhile" in seen["failure_message"]
    assert free_seats(small_workshop.sessions.get()) == 0  # the two paid buyers keep theirs
