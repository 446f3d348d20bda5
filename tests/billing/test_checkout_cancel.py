"""Cancelling a Checkout order expires its session first, so a canceled order cannot be paid.

The end-to-end test runs against any Stripe with Checkout Sessions and is skipped
against one without (localstripe answers 404). The decisions around the expiry
call are tested with the session routes answered at the Stripe SDK boundary,
in the shapes of Stripe's fixtures.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import stripe
from django.conf import settings

from billing.models import Order
from credits.selectors import credits_balance_get
from tests.billing.test_checkout import FakeSessions, fake_checkout  # noqa: F401 - a fixture
from tests.stripe_events import new_id

pytestmark = pytest.mark.django_db

BUY_100 = {"is_credit_purchase": True, "credit_amount": 100, "payment_type": "checkout"}


def test_cancelling_a_checkout_order_expires_its_session_at_stripe(api, stripe_server):
    resp = api.post("/payments/create/", BUY_100)
    if resp.status_code == 501 and resp.json()["code"] == "feature_unavailable":
        pytest.skip(
            "The Stripe in use has no Checkout Sessions (it answers 404 for them); "
            "this runs against a Stripe with Checkout."
        )
    assert resp.status_code == 201, resp.content
    order_id = resp.json()["order_id"]
    cancel = api.post(f"/payments/orders/{order_id}/cancel/")
    assert cancel.status_code == 200, cancel.content
    order = Order.objects.get(pk=order_id)
    assert order.status == Order.Status.CANCELED
    client = stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
    )
    session = client.v1.checkout.sessions.retrieve(order.stripe_checkout_session_id)
    assert session.status == "expired"


class ExpiringSessions(FakeSessions):
    """`/v1/checkout/sessions`: create, expire (400 once completed), retrieve."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions: dict[str, dict[str, Any]] = {}
        self.expired: list[tuple[str, str]] = []

    def create(self, params, options):
        made = super().create(params, options)
        session = made.to_dict()
        session.update(status="open", payment_status="unpaid")
        self.sessions[session["id"]] = session
        return made

    def complete(self, session_id: str, amount: int) -> None:
        self.sessions[session_id].update(
            status="complete",
            payment_status="paid",
            amount_total=amount,
            currency="usd",
            payment_intent=new_id("pi"),
        )

    def expire(self, session_id: str, options: dict[str, Any]):
        self.expired.append((session_id, options["idempotency_key"]))
        session = self.sessions[session_id]
        if session["status"] != "open":
            raise stripe.InvalidRequestError(
                "Only Checkout Sessions with a status in [open] can be expired.",
                param=None,
                http_status=400,
            )
        session["status"] = "expired"
        return self._object(session)

    def retrieve(self, session_id: str):
        return self._object(self.sessions[session_id])

    @staticmethod
    def _object(session: dict[str, Any]):
        # As stripe-python gives it: decoded from the JSON on the wire, so no string in it
        # is one of this module's (or the product's) own literals.
        answer = json.loads(json.dumps(session))
        return type("StripeObject", (), {"to_dict": lambda self: answer})()


@pytest.fixture
def sessions(fake_checkout, monkeypatch) -> ExpiringSessions:  # noqa: F811
    from billing import gateway

    expiring = ExpiringSessions()
    gateway.checkout._client().v1.checkout.sessions = expiring
    return expiring


def _checkout_order(api) -> Order:
    resp = api.post("/payments/create/", BUY_100)
    assert resp.status_code == 201, resp.content
    return Order.objects.get(pk=resp.json()["order_id"])


def test_cancel_expires_the_open_session_before_the_order_is_canceled(api, sessions):
    order = _checkout_order(api)
    assert api.post(f"/payments/orders/{order.pk}/cancel/").status_code == 200
    [(expired_id, key)] = sessions.expired
    assert expired_id == order.stripe_checkout_session_id
    assert key.endswith(f"order-{order.pk}-checkout-expire")
    assert sessions.sessions[expired_id]["status"] == "expired"
    assert Order.objects.get(pk=order.pk).status == Order.Status.CANCELED


def test_a_session_completed_before_the_cancel_pays_the_order_instead(api, user, sessions):
    order = _checkout_order(api)
    sessions.complete(order.stripe_checkout_session_id, order.amount)
    resp = api.post(f"/payments/orders/{order.pk}/cancel/")
    assert resp.status_code == 409
    assert resp.json()["extra"]["status"] == "paid"
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert order.payments.get().status == "succeeded"
    assert credits_balance_get(user_id=user.pk) == 100
