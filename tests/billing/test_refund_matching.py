"""A refund is pinned on an order by our metadata only when Stripe names no payment:
one that names a PaymentIntent we never recorded is not taken as a refund of the
order's other, recorded payment, whatever its metadata says."""

from __future__ import annotations

import pytest

from billing.metadata import DEPLOYMENT_KEY
from billing.models import Order, Payment, Refund, StripeEvent
from billing.services.events import events_drain
from tests.billing.conftest import post_webhook
from tests.billing.factories import OrderFactory, PaymentFactory
from tests.billing.test_refunds import paid_payment  # noqa: F401  (the fixture)
from tests.stripe_events import event, fixture, new_id, payment_intent

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


def _paid_after_a_failed_attempt(amount: int = 1000) -> tuple[Payment, Payment]:
    """An order whose first PaymentIntent failed and whose second paid it."""
    order = OrderFactory(amount=amount)
    failed = PaymentFactory(order=order, amount_received=0)
    paid = PaymentFactory(order=order)
    obj = payment_intent(id=paid.stripe_payment_intent_id, amount=amount, metadata=order.metadata)
    post_webhook(event("payment_intent.succeeded", obj))
    events_drain()
    paid.refresh_from_db()
    assert paid.order.status == Order.Status.PAID
    return failed, paid


def _refund_naming_no_payment(amount: int, metadata: dict) -> dict:
    refund = fixture("refund")
    refund.update(
        id=new_id("re"),
        amount=amount,
        currency="usd",
        status="succeeded",
        payment_intent=None,
        charge=None,
        metadata=metadata,
    )
    return refund


@pytest.mark.parametrize("amount", [1000, 1])
def test_a_refund_naming_no_payment_goes_by_our_metadata_to_the_payment_that_took_money(amount):
    failed, paid = _paid_after_a_failed_attempt(amount)
    order = paid.order
    post_webhook(event("refund.updated", _refund_naming_no_payment(amount, dict(order.metadata))))
    events_drain()
    assert StripeEvent.objects.get(type="refund.updated").status == StripeEvent.Status.PROCESSED
    refund = Refund.objects.get()
    assert (refund.order_id, refund.payment_id, refund.amount) == (order.pk, paid.pk, amount)
    assert refund.applied_at is not None
    assert Order.objects.get(pk=order.pk).status == Order.Status.REFUNDED
    assert not failed.refunds.exists()


@pytest.mark.parametrize(
    ("metadata", "outcome"),
    [
        pytest.param(
            lambda o: {k: v for k, v in o.metadata.items() if k != DEPLOYMENT_KEY},
            StripeEvent.Status.NOT_OURS,
            id="foreign",
        ),
        pytest.param(
            lambda o: {**o.metadata, "order_id": f"#{o.pk}"},
            StripeEvent.Status.RETRYING,
            id="order_id_not_a_number",
        ),
        pytest.param(
            lambda o: {k: v for k, v in o.metadata.items() if k != "order_id"},
            StripeEvent.Status.RETRYING,
            id="no_order_id",
        ),
    ],
)
def test_a_refund_naming_no_payment_without_our_marker_and_order_is_not_pinned(metadata, outcome):
    _failed, paid = _paid_after_a_failed_attempt()
    order = paid.order
    post_webhook(event("refund.updated", _refund_naming_no_payment(400, metadata(order))))
    events_drain()
    assert StripeEvent.objects.get(type="refund.updated").status == outcome
    assert not Refund.objects.exists()
    assert Order.objects.get(pk=order.pk).status == Order.Status.PAID
