"""How an event that cannot succeed ends: at once when it never will, with back-off when
it is ours but early; and refunds that must not repeat (applied twice, sent twice)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing.metadata import metadata_marker
from billing.models import Order, Refund, StripeCustomer, StripeEvent
from billing.services.events import events_drain
from billing.services.refunds import refund_apply, refund_create, refund_submit
from tests.billing.conftest import deliver
from tests.billing.factories import PaymentFactory
from tests.billing.test_stripe_faults import FaultyProxy
from tests.factories import UserFactory
from tests.stripe_events import event, fixture, new_id, payment_intent, stripe_client

pytestmark = pytest.mark.django_db

BUY_100 = {"is_credit_purchase": True, "credit_amount": 100, "payment_method_id": "pm_card_visa"}


def refund_of(intent_id: str, amount: int = 500) -> dict:
    obj = fixture("refund")
    obj.update(
        id=new_id("re"), amount=amount, currency="usd", status="succeeded", payment_intent=intent_id
    )
    return obj


# --- one place says whether an error is worth retrying ---------------------------------


def test_a_gateway_error_says_for_itself_whether_it_is_retryable():
    from billing.gateway import FeatureUnavailableError, PaymentGatewayError
    from kernel.errors import DomainError, error_retryable

    assert error_retryable(PaymentGatewayError("x", retryable=True))
    assert not error_retryable(PaymentGatewayError("x", retryable=False))
    assert not error_retryable(FeatureUnavailableError("x"))
    assert error_retryable(DomainError("x"))
    assert error_retryable(RuntimeError("the database went away"))


def test_a_stripe_4xx_while_processing_fails_the_event_at_once(user, stripe_server):
    """Our customer's invoice for a subscription Stripe does not have: Stripe answers 404,
    which no retry can change."""
    StripeCustomer.objects.create(user=user, stripe_customer_id="cus_ours")
    invoice = fixture("invoice")
    invoice.update(
        id=new_id("in"),
        customer="cus_ours",
        amount_paid=1900,
        currency="usd",
        status="paid",
        parent={
            "type": "subscription_details",
            "subscription_details": {"subscription": "sub_missing", "metadata": {}},
        },
    )
    stored = deliver(event("invoice.paid", invoice))
    assert stored.status == StripeEvent.Status.FAILED
    assert stored.attempts == 1
    assert stored.next_attempt_at is None
    assert "PaymentGatewayError" in stored.last_error


# --- another system's objects are recorded as such at once ------------------------------


def test_a_refund_of_another_systems_payment_is_recorded_as_not_ours_at_once(stripe_server):
    ours = PaymentFactory()
    theirs = stripe_client().v1.payment_intents.create(
        params={
            "amount": 121000,
            "currency": "eur",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "metadata": {"order_id": str(ours.order_id)},  # their order number, like ours
        }
    )
    refund = refund_of(theirs.id, 121000)
    refund["metadata"] = {"order_id": str(ours.order_id)}
    stored = deliver(event("refund.created", refund))
    assert stored.status == StripeEvent.Status.NOT_OURS
    assert stored.attempts == 1
    assert stored.processed_at is not None
    assert "another system's" in stored.last_error
    assert not Refund.objects.exists()
    events_drain()
    stored.refresh_from_db()
    assert (stored.status, stored.attempts) == (StripeEvent.Status.NOT_OURS, 1)


def test_an_invoice_of_a_customer_we_do_not_know_is_not_ours():
    invoice = fixture("invoice")
    invoice.update(id=new_id("in"), customer="cus_someone_else", amount_paid=1900, status="paid")
    stored = deliver(event("invoice.paid", invoice))
    assert stored.status == StripeEvent.Status.NOT_OURS
    assert stored.attempts == 1
    assert not Order.objects.exists()


@pytest.mark.parametrize("customer", [None, "cus_someone_else"])
def test_a_payment_without_our_marker_or_customer_is_not_ours(customer):
    obj = payment_intent(id=new_id("pi"), amount=500, metadata={"order_id": "7"}, customer=customer)
    stored = deliver(event("payment_intent.succeeded", obj))
    assert stored.status == StripeEvent.Status.NOT_OURS


def test_a_payment_of_our_customer_without_our_marker_is_ours_and_pays_nothing():
    """One of our customers paid outside Tollgate's orders (a subscription's invoice
    pays this way): it is not another system's, and it names no order to pay."""
    StripeCustomer.objects.create(user=UserFactory(), stripe_customer_id="cus_ours")
    obj = payment_intent(id=new_id("pi"), amount=500, metadata={}, customer="cus_ours")
    stored = deliver(event("payment_intent.succeeded", obj))
    assert (stored.status, stored.last_error) == (
        StripeEvent.Status.PROCESSED,
        "no order of ours for this PaymentIntent",
    )
    assert not Order.objects.exists()


def test_a_refund_of_another_systems_payment_with_its_own_customer_is_not_ours(stripe_server):
    customer = stripe_client().v1.customers.create(params={"email": "them@example.com"})
    theirs = stripe_client().v1.payment_intents.create(
        params={
            "amount": 1000,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    )
    stored = deliver(event("refund.created", refund_of(theirs.id)))
    assert stored.status == StripeEvent.Status.NOT_OURS
    assert not Refund.objects.exists()


def test_not_ours_events_are_listed_apart_in_the_admin():
    deliver(event("payment_intent.succeeded", payment_intent(id="pi_theirs", amount=500)))
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    url = reverse("admin:billing_stripeevent_changelist")
    resp = client.get(url, {"status__exact": "not_ours"})
    assert [e.object_id for e in resp.context["cl"].result_list] == ["pi_theirs"]
    assert "Another system" in resp.content.decode()
    assert not client.get(url, {"status__exact": "processed"}).context["cl"].result_list


@pytest.mark.parametrize("how", ["marker", "customer"])
def test_a_refund_of_our_payment_before_its_payment_is_recorded_waits(user, stripe_server, how):
    params = {"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa"}
    if how == "marker":
        params["metadata"] = {"order_id": "1", **metadata_marker()}
    else:  # a subscription cycle's PaymentIntent: no metadata, our customer
        customer = stripe_client().v1.customers.create(params={"email": "a@example.com"})
        StripeCustomer.objects.create(user=user, stripe_customer_id=customer.id)
        params["customer"] = customer.id
    ours = stripe_client().v1.payment_intents.create(params={**params, "confirm": True})
    stored = deliver(event("refund.created", refund_of(ours.id)))
    assert stored.status == StripeEvent.Status.RETRYING
    assert stored.next_attempt_at > timezone.now()
    assert "RefundBeforePaymentError" in stored.last_error


def test_a_refund_of_a_payment_stripe_cannot_show_waits_as_ours_would(stripe_server):
    """Stripe cannot show the refund's PaymentIntent, so nothing proves it another
    system's: the refund waits for its payment instead of being written off."""
    stored = deliver(event("refund.created", refund_of(new_id("pi"))))
    assert stored.status == StripeEvent.Status.RETRYING
    assert "RefundBeforePaymentError" in stored.last_error
    assert not Refund.objects.exists()


# --- refunds never repeat ---------------------------------------------------------------


def test_applying_an_applied_refund_again_changes_nothing(api, staff_api, stripe_server):
    order_id = api.post("/payments/create/", BUY_100).json()["order_id"]
    resp = staff_api.post(f"/payments/orders/{order_id}/refunds/", {"amount": "5.00"})
    assert resp.status_code == 201, resp.content
    refund = Refund.objects.get()
    assert refund.applied_at is not None
    before = (refund.applied_at, refund.result, refund.updated_at)
    assert "needs nothing more" in refund_apply(refund_id=refund.pk)
    refund.refresh_from_db()
    assert (refund.applied_at, refund.result, refund.updated_at) == before
    # Applied again, the same half would have made the order look fully refunded.
    assert Order.objects.get(pk=order_id).status == Order.Status.PARTIALLY_REFUNDED


class UnreachableRefunds(FaultyProxy):
    """Records every request's headers; the first refund creates never reach Stripe."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.refused = 0
        self.refund_keys: list[str | None] = []

    def handle(self, req) -> None:
        if (req.command, req.path.split("?")[0]) == ("POST", "/v1/refunds"):
            self.refund_keys.append(req.headers.get("Idempotency-Key"))
            if self.refused < 1:
                self.refused += 1
                req.rfile.read(int(req.headers.get("Content-Length") or 0))
                body = b'{"error": {"type": "api_error", "message": "Service unavailable"}}'
                req.send_response(503)
                req.send_header("Content-Type", "application/json")
                req.send_header("Content-Length", str(len(body)))
                req.end_headers()
                req.wfile.write(body)
                return
        super().handle(req)


def test_a_refund_resent_after_a_retryable_failure_carries_the_same_idempotency_key(
    api, stripe_server, settings
):
    from billing.gateway import PaymentGatewayError

    order_id = api.post("/payments/create/", BUY_100).json()["order_id"]
    proxy = UnreachableRefunds(stripe_server.base)
    settings.STRIPE_API_BASE = proxy.base
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    try:
        with pytest.raises(PaymentGatewayError) as raised:
            refund_create(order_id=order_id, amount=None)
        assert raised.value.retryable
        refund = Refund.objects.get()
        assert refund.status == Refund.Status.PENDING
        refund_submit(refund_id=refund.pk)  # what the sweep does
    finally:
        proxy.close()
        settings.STRIPE_API_BASE = stripe_server.base
    refund.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED
    assert len(proxy.refund_keys) == 2
    assert proxy.refund_keys[0]
    assert proxy.refund_keys[0] == proxy.refund_keys[1]
    assert len(stripe_client().v1.refunds.list(params={"limit": 100}).data) == 1


def test_a_refund_whose_payment_intent_stripe_cannot_show_waits(stripe_server):
    """Not proven another system's: it waits, as an early refund of ours does."""
    stored = deliver(event("refund.created", refund_of(new_id("pi"))))
    assert stored.status == StripeEvent.Status.RETRYING
    assert "RefundBeforePaymentError" in stored.last_error


def test_a_subscription_of_a_customer_we_do_not_know_is_not_ours():
    sub = fixture("subscription")
    sub.update(id=new_id("sub"), customer="cus_someone_else", metadata={"order_id": "1"})
    stored = deliver(event("customer.subscription.created", sub))
    assert stored.status == StripeEvent.Status.NOT_OURS
    assert stored.attempts == 1


def test_refund_all_never_asks_more_than_the_payment_has_left(api, staff_api, stripe_server):
    """A second payment of the order whose automatic refund failed at Stripe still counts
    as captured; refund-all refunds the order's payment, never beyond it."""
    order = Order.objects.get(pk=api.post("/payments/create/", BUY_100).json()["order_id"])
    second = PaymentFactory(
        order=order, status="succeeded", amount_received=order.amount, stripe_charge_id="ch_2"
    )
    Refund.objects.create(
        order=order,
        payment=second,
        amount=order.amount,
        currency=order.currency,
        source=Refund.Source.AUTOMATIC,
        status=Refund.Status.FAILED,
        reverses_order=False,
    )
    resp = staff_api.post(f"/payments/orders/{order.pk}/refunds/", {})
    assert resp.status_code == 201, resp.content
    assert resp.json()["amount"] == order.amount
    [at_stripe] = stripe_client().v1.refunds.list(params={"limit": 100}).data
    assert at_stripe.amount == order.amount


def test_refund_all_after_a_partial_refund_asks_only_what_the_payment_has_left(
    api, staff_api, stripe_server
):
    order = Order.objects.get(pk=api.post("/payments/create/", BUY_100).json()["order_id"])
    part = staff_api.post(f"/payments/orders/{order.pk}/refunds/", {"amount": "4.00"})
    assert part.status_code == 201, part.content
    second = PaymentFactory(
        order=order, status="succeeded", amount_received=order.amount, stripe_charge_id="ch_2"
    )
    Refund.objects.create(
        order=order,
        payment=second,
        amount=order.amount,
        currency=order.currency,
        source=Refund.Source.AUTOMATIC,
        status=Refund.Status.FAILED,
        reverses_order=False,
    )
    resp = staff_api.post(f"/payments/orders/{order.pk}/refunds/", {})
    assert resp.status_code == 201, resp.content
    assert resp.json()["amount"] == 600
    at_stripe = stripe_client().v1.refunds.list(params={"limit": 100}).data
    assert sorted(r.amount for r in at_stripe) == [400, 600]
