"""A refund is pinned on an order by our metadata only when Stripe names no payment:
one that names a PaymentIntent we never recorded is not taken as a refund of the
order's other, recorded payment, whatever its metadata says."""

from __future__ import annotations

import pytest

from billing.models import Order, Refund
from billing.services.events import events_drain
from tests.billing.conftest import post_webhook
from tests.billing.test_refunds import paid_payment  # noqa: F401  (the fixture)
from tests.stripe_events import event, fixture, new_id

pytestmark = pytest.mark.django_db


def test_a_refund_naming_an_unrecorded_payment_is_not_pinned_on_the_order(paid_payment):  # noqa: F811
    order = paid_payment.order
    refund = fixture("refund")
    refund.update(
        id=new_id("re"),
        amount=400,
        currency="usd",
        status="succeeded",
        payment_intent=new_id("pi"),
        charge=None,
        metadata=dict(order.metadata),
    )
    post_webhook(event("refund.updated", refund))
    events_drain()
    assert not Refund.objects.filter(order=order).exists()
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
