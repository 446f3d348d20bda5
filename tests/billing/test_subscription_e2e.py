"""A subscription's life end to end on the development Stripe: started on Checkout's page,
renewed by a test clock, cancelled in the customer portal; Tollgate's API over HTTP,
signed webhooks delivered back, the worker's drain task."""

from __future__ import annotations

import time

import pytest
import requests

from billing.models import Order, StripeCustomer, StripeEvent, Subscription
from billing.services.events import events_drain
from credits.models import Plan
from credits.selectors import credits_balance_get, credits_ledger_sum
from platform_core.auth import api_token_create
from tests.billing.conftest import eventually, stripe_plan_create, wait_for_event
from tests.billing.test_checkout_e2e import card_form, stripe_client
from tests.billing.test_e2e_payments import Http
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DAY = 24 * 60 * 60


@pytest.fixture
def http(live_server, user) -> Http:
    raw, _ = api_token_create(username=user.username, password=PASSWORD)
    return Http(live_server.url, raw)


@pytest.fixture
def plan(live_stripe) -> Plan:
    plan = Plan.objects.create(
        name="Pro", stripe_price_id="plan_pro_monthly", amount=1900, credits_per_cycle=500
    )
    stripe_plan_create(plan)
    return plan


@pytest.fixture
def clocked_customer(user, live_stripe) -> tuple[str, int]:
    """The user's Stripe customer, made on a test clock (as Stripe allows: only at creation)."""
    now = int(time.time())
    client = stripe_client()
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": now})
    customer = client.v1.customers.create(params={"email": user.email, "test_clock": clock.id})
    StripeCustomer.objects.create(user=user, stripe_customer_id=customer.id)
    return clock.id, now


def drain_until(check, timeout: float = 15.0) -> None:
    """Drain the event queue until `check()` holds (deliveries arrive about a second late)."""

    def drained() -> bool:
        events_drain()
        return check()

    eventually(drained, timeout=timeout)


def advance(clock_id: str, to: int) -> str:
    """Advance the clock; answers the subscription's newest invoice once the clock is ready."""
    client = stripe_client()
    client.v1.test_helpers.test_clocks.advance(clock_id, params={"frozen_time": to})
    assert client.v1.test_helpers.test_clocks.retrieve(clock_id).status == "ready"
    return to


def test_subscription_on_checkout_renewed_by_the_clock_then_cancelled_in_the_portal(
    http, user, plan, clocked_customer
):
    clock_id, now = clocked_customer
    client = stripe_client()

    # Started on Checkout's page.
    resp = http.post("/payments/subscriptions/", {"plan_id": plan.pk, "payment_type": "checkout"})
    assert resp.status_code == 201, resp.text
    url = resp.json()["checkout_url"]
    local = Subscription.objects.get(pk=resp.json()["subscription"]["id"])
    page = requests.get(url, timeout=30)
    assert "19.00 USD" in page.text and "every month" in page.text
    paid = requests.post(url, data=card_form("4242424242424242"), allow_redirects=False, timeout=30)
    assert paid.status_code == 303
    session = client.v1.checkout.sessions.list(params={"limit": 1}).data[0]
    assert (session.status, session.mode) == ("complete", "subscription")
    first_invoice = session.invoice
    wait_for_event("invoice.paid", first_invoice)
    drain_until(lambda: credits_balance_get(user_id=user.pk) == 500)
    local.refresh_from_db()
    assert local.stripe_subscription_id == session.subscription
    assert local.status == Subscription.Status.ACTIVE
    assert Order.objects.filter(subscription=local).count() == 1

    # Renewed by the clock: one more invoice, paid, granted once.
    advance(clock_id, now + 32 * DAY)
    renewal = client.v1.subscriptions.retrieve(session.subscription).latest_invoice
    assert renewal != first_invoice
    assert client.v1.invoices.retrieve(renewal).status == "paid"
    wait_for_event("invoice.paid", renewal)
    wait_for_event("invoice.payment_succeeded", renewal)
    drain_until(lambda: credits_balance_get(user_id=user.pk) == 1000)
    # A day later nothing is due: no invoice, no grant.
    advance(clock_id, now + 33 * DAY)
    assert client.v1.subscriptions.retrieve(session.subscription).latest_invoice == renewal
    time.sleep(1.5)
    events_drain()
    assert Order.objects.filter(subscription=local).count() == 2
    assert credits_balance_get(user_id=user.pk) == credits_ledger_sum(user_id=user.pk) == 1000
    assert set(
        Order.objects.filter(subscription=local).values_list("stripe_invoice_id", flat=True)
    ) == {
        first_invoice,
        renewal,
    }

    # Cancelled in the portal, at the end of the period.
    portal = http.post("/payments/portal/", {})
    assert portal.status_code == 200, portal.text
    portal_url = portal.json()["url"]
    shown = requests.get(portal_url, timeout=30)
    assert shown.status_code == 200
    assert "Pro" in shown.text and "Cancel plan" in shown.text
    assert (
        "href='http://127.0.0.1:8000'" in shown.text
        or "href='http://127.0.0.1:8000/'" in shown.text
    )
    canceled = requests.post(
        f"{portal_url}/subscriptions/{session.subscription}/cancel", timeout=30
    )
    assert canceled.status_code == 200
    assert "will be canceled" in canceled.text
    drain_until(lambda: Subscription.objects.get(pk=local.pk).cancel_at_period_end)
    local.refresh_from_db()
    assert local.status == Subscription.Status.ACTIVE  # paid up to the period's end

    # At the period's end the clock ends it, and nothing more is billed or granted.
    advance(clock_id, now + 70 * DAY)
    assert client.v1.subscriptions.retrieve(session.subscription).status == "canceled"
    wait_for_event("customer.subscription.deleted", session.subscription)
    drain_until(
        lambda: Subscription.objects.get(pk=local.pk).status == Subscription.Status.CANCELED
    )
    assert Order.objects.filter(subscription=local).count() == 2
    assert credits_balance_get(user_id=user.pk) == 1000
    # Every event about this customer's objects settled. (The development Stripe may still
    # deliver an earlier test's queued events here; they are not this flow's.)
    customer_id = StripeCustomer.objects.get(user=user).stripe_customer_id
    unsettled = [
        (e.type, e.object_id, e.last_error[-300:])
        for e in StripeEvent.objects.filter(
            status__in=[StripeEvent.Status.FAILED, StripeEvent.Status.RETRYING]
        )
        if (e.payload.get("data") or {}).get("object", {}).get("customer") == customer_id
    ]
    assert not unsettled
