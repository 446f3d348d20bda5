"""What the gateway sends Stripe at the pinned API version: dynamic payment methods
(narrowed by STRIPE_PAYMENT_METHOD_TYPES), the order's description, Stripe's reason for
a refund. The development Stripe refuses and records any parameter the version lacks
(the `stripe_server` fixture fails a test that sent one), and echoes what it keeps."""

from __future__ import annotations

import pytest

from billing.models import Order
from tests.billing.test_refunds import BUY_100
from tests.stripe_events import stripe_client

pytestmark = pytest.mark.django_db


def test_a_card_payment_uses_dynamic_payment_methods_and_carries_its_description(
    api, stripe_server
):
    body = api.post("/payments/create/", BUY_100).json()
    assert body["status"] == "paid", body
    order = Order.objects.get(pk=body["order_id"])
    intent = stripe_client().v1.payment_intents.retrieve(body["payment_intent_id"]).to_dict()
    assert intent["automatic_payment_methods"] == {"enabled": True, "allow_redirects": "never"}
    assert order.description and intent["description"] == order.description
    assert intent["amount_received"] == order.amount


def test_payment_method_types_can_be_narrowed_by_a_setting(api, stripe_server, settings):
    settings.STRIPE_PAYMENT_METHOD_TYPES = ["card"]
    body = api.post("/payments/create/", BUY_100).json()
    assert body["status"] == "paid", body
    setup = api.post("/payments/methods/setup/", {})
    assert setup.status_code in (200, 201), setup.content


def test_a_staff_refund_tells_stripe_the_customer_asked(api, staff_api, stripe_server):
    body = api.post("/payments/create/", BUY_100).json()
    resp = staff_api.post(
        f"/payments/orders/{body['order_id']}/refunds/", {"amount": "4.00", "reason": "goodwill"}
    )
    assert resp.status_code == 201, resp.content
    refund = stripe_client().v1.refunds.retrieve(resp.json()["stripe_refund_id"])
    assert refund.reason == "requested_by_customer"
    assert refund.metadata["reason"] == "goodwill"
