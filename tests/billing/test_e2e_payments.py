"""Credit top-ups end to end: real HTTP to a live server, localstripe as Stripe, its signed
webhooks delivered back, and the worker's drain task (or a real django-q2 cluster)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests
import stripe
from django.conf import settings
from django.db import connection

from billing.models import Fulfilment, Order, StripeEvent
from billing.services.events import events_drain
from credits.models import CreditTransaction
from credits.selectors import credits_balance_get, credits_ledger_sum
from devstack.database import url_for
from platform_core.auth import api_token_create
from tests.billing.conftest import eventually, wait_for_event
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


class Http:
    def __init__(self, base: str, token: str) -> None:
        self.base = base + "/api/v1"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def post(self, path: str, body: dict, **headers: str) -> requests.Response:
        return self.session.post(self.base + path, json=body, headers=headers, timeout=30)

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.base + path, timeout=30)


@pytest.fixture
def http(live_server, user) -> Http:
    raw, _ = api_token_create(username=user.username, password=PASSWORD)
    return Http(live_server.url, raw)


def card(number: str) -> str:
    """A payment method at localstripe made from a raw test card number."""
    client = stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
    )
    method = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    return method.id


BUY_100 = {"is_credit_purchase": True, "credit_amount": 100, "amount": "10.00"}


def test_card_4242_pays_and_credits_exactly_once(http, live_stripe, user):
    resp = http.post(
        "/payments/create/", {**BUY_100, "payment_method_id": card("4242424242424242")}
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["status"] == "paid"
    assert body["payment_status"] == "succeeded"
    assert body["client_secret"].startswith(body["payment_intent_id"])
    assert body["publishable_key"] == settings.STRIPE_PUBLISHABLE_KEY
    assert credits_balance_get(user_id=user.pk) == 100

    # Stripe's own webhook for the same payment arrives and changes nothing.
    event = wait_for_event("payment_intent.succeeded", body["payment_intent_id"])
    # The development Stripe sends the pinned version's shapes, as Stripe would.
    assert event.api_version == stripe.api_version
    intent = event.payload["data"]["object"]
    assert intent["amount_received"] == 1000
    assert isinstance(intent["latest_charge"], str)
    assert events_drain() >= 1
    event.refresh_from_db()
    assert event.status == StripeEvent.Status.PROCESSED
    assert "stale" in event.last_error
    assert CreditTransaction.objects.filter(account__user=user).count() == 1
    assert credits_balance_get(user_id=user.pk) == credits_ledger_sum(user_id=user.pk) == 100
    assert http.get("/credits/balance/").json()["balance"] == 100


def test_payment_confirmed_by_the_client_is_fulfilled_by_the_webhook(http, live_stripe, user):
    resp = http.post("/payments/create/", BUY_100)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["status"] == "pending"
    assert body["payment_status"] == "requires_payment_method"
    order = Order.objects.get(pk=body["order_id"])
    assert order.metadata == {
        "order_id": str(order.pk),
        "user_id": str(user.pk),
        "order_type": "credit",
        "purchase_type": "credits",
        "credit_amount": "100",
        "tollgate_deployment": "tollgate",  # this deployment's marker
    }

    # What Stripe.js does in the browser: confirm with a card.
    client = stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
    )
    intent = client.v1.payment_intents.retrieve(body["payment_intent_id"])
    assert intent.metadata.to_dict() == order.metadata  # unified metadata reached Stripe
    client.v1.payment_intents.update(intent.id, params={"payment_method": "pm_card_visa"})
    client.v1.payment_intents.confirm(intent.id)

    wait_for_event("payment_intent.succeeded", intent.id)
    assert credits_balance_get(user_id=user.pk) == 0  # nothing before the worker runs
    events_drain()
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert Fulfilment.objects.filter(order=order).count() == 1
    assert credits_balance_get(user_id=user.pk) == 100


def test_declined_card_fails_the_order_and_grants_nothing(http, live_stripe, user):
    resp = http.post(
        "/payments/create/", {**BUY_100, "payment_method_id": card("4000000000000341")}
    )
    assert resp.status_code == 402, resp.text
    error = resp.json()
    assert error["code"] == "card_declined"
    order = Order.objects.get(pk=error["extra"]["order_id"])
    assert order.status == Order.Status.FAILED
    assert order.failure_code == "card_declined"

    intent_id = order.payments.get().stripe_payment_intent_id
    wait_for_event("payment_intent.payment_failed", intent_id)
    events_drain()
    order.refresh_from_db()
    assert order.status == Order.Status.FAILED
    assert not Fulfilment.objects.filter(order=order).exists()
    assert credits_balance_get(user_id=user.pk) == 0
    assert not CreditTransaction.objects.exists()


def test_3d_secure_requires_action_then_pays_once_authenticated(http, live_stripe, user):
    resp = http.post(
        "/payments/create/", {**BUY_100, "payment_method_id": card("4000002500003155")}
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["status"] == "requires_action"
    assert body["payment_status"] == "requires_action"
    assert body["client_secret"]
    assert credits_balance_get(user_id=user.pk) == 0

    live_stripe.authenticate_3ds(body["payment_intent_id"], body["client_secret"], success=True)
    wait_for_event("payment_intent.succeeded", body["payment_intent_id"])
    events_drain()
    order = Order.objects.get(pk=body["order_id"])
    assert order.status == Order.Status.PAID
    assert credits_balance_get(user_id=user.pk) == 100
    assert http.get(f"/payments/orders/{order.pk}/").json()["fulfilled"] is True


def test_a_real_worker_processes_the_queued_webhook(http, live_stripe, user):
    """The whole path with django-q2's own cluster draining the database queue."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": url_for(db),
        "Q_WORKERS": "1",
    }
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        resp = http.post("/payments/create/", BUY_100)
        intent_id = resp.json()["payment_intent_id"]
        client = stripe.StripeClient(
            settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
        )
        client.v1.payment_intents.update(intent_id, params={"payment_method": "pm_card_visa"})
        client.v1.payment_intents.confirm(intent_id)

        def processed() -> bool:
            event = StripeEvent.objects.filter(
                type="payment_intent.succeeded", object_id=intent_id
            ).first()
            return event is not None and event.status == StripeEvent.Status.PROCESSED

        eventually(processed, timeout=30)
        assert Order.objects.get(pk=resp.json()["order_id"]).status == Order.Status.PAID
        assert credits_balance_get(user_id=user.pk) == 100
    finally:
        worker.terminate()
        worker.wait(timeout=30)
