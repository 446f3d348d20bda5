"""Capacity under real concurrency: 30 buyers race for a 10-seat workshop.

Real threads, each with its own database connection and bearer token, post
`/payments/create/` at the same moment against committed data on PostgreSQL,
with localstripe as Stripe. Exactly ten hold a seat; the rest are refused with
409 before anything reaches Stripe; a watcher never sees more than ten seats taken.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import stripe
from django.conf import settings
from django.db import connection
from django.utils import timezone

from bookings.models import SEAT_TAKING_STATUSES, Booking, SeatHold
from bookings.tasks import seat_holds_expire
from platform_core.auth import api_token_create
from tests.bookings.seat_checks import free_seats
from tests.conftest import PASSWORD, ApiClient
from tests.factories import UserFactory

pytest_plugins = ["tests.bookings.fixtures"]
pytestmark = pytest.mark.django_db(transaction=True)

BUYERS = 30
CAPACITY = 10


def stripe_intents() -> list:
    client = stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
    )
    return list(client.v1.payment_intents.list(params={"limit": 100}).data)


def seats_taken(session_id: int) -> int:
    booked = Booking.objects.filter(session_id=session_id, status__in=SEAT_TAKING_STATUSES)
    held = SeatHold.objects.live(timezone.now()).filter(session_id=session_id)
    return booked.count() + sum(held.values_list("quantity", flat=True))


# A body where the service alone says what is bought.
BODY = {"payment_type": "intent"}


def test_thirty_buyers_race_for_ten_seats(workshop, stripe_server):
    session = workshop.sessions.get()
    assert session.capacity == CAPACITY
    tokens = []
    for _ in range(BUYERS):
        buyer = UserFactory()
        tokens.append(api_token_create(username=buyer.username, password=PASSWORD)[0])

    barrier = threading.Barrier(BUYERS + 1)
    done = threading.Event()
    results: list = [None] * BUYERS
    most_seen: list[int] = []

    def buy(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = ApiClient(tokens[i]).post(
                "/payments/create/", {**BODY, "service_id": workshop.pk}
            )
        except Exception as exc:  # asserted on below
            results[i] = exc
        finally:
            connection.close()

    def watch() -> None:
        try:
            barrier.wait(timeout=30)
            while not done.is_set():
                most_seen.append(seats_taken(session.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=buy, args=(i,)) for i in range(BUYERS)]
    watcher = threading.Thread(target=watch)
    for thread in [*threads, watcher]:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    done.set()
    watcher.join(timeout=30)
    assert not any(t.is_alive() for t in [*threads, watcher]), "a racing thread did not finish"

    statuses = sorted(getattr(r, "status_code", r) for r in results)
    assert statuses == [201] * CAPACITY + [409] * (BUYERS - CAPACITY), results
    refused = [r.json() for r in results if r.status_code == 409]
    assert {e["code"] for e in refused} == {"seats_unavailable"}
    # The refused never reached Stripe: one PaymentIntent per seat.
    intents = stripe_intents()
    assert len(intents) == CAPACITY
    assert {i.id for i in intents} == {
        r.json()["payment_intent_id"] for r in results if r.status_code == 201
    }
    assert most_seen and max(most_seen) <= CAPACITY
    assert SeatHold.objects.filter(status="active").count() == CAPACITY
    assert free_seats(session) == 0

    # Holds that run out are swept, and their seats can be bought again.
    SeatHold.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert seat_holds_expire() == CAPACITY
    assert free_seats(session) == CAPACITY
    again = ApiClient(tokens[0]).post("/payments/create/", {**BODY, "service_id": workshop.pk})
    assert again.status_code == 201, again.content
