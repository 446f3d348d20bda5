"""Subscriptions: started against localstripe on a legacy plan, then kept in step by
fixture-shaped events delivered shuffled and duplicated; every paid invoice grants its
cycle's credits exactly once."""

from __future__ import annotations

import random
import time

import pytest
import requests
import stripe
from django.conf import settings

from billing.models import Order, StripeCustomer, Subscription
from billing.services.events import events_drain
from credits.models import CreditTransaction
from credits.selectors import credits_balance_get
from purchasables.models import Plan
from tests.billing.conftest import post_webhook
from tests.billing.test_cards import add_card_via_setup_intent
from tests.stripe_events import event, fixture, new_id

pytestmark = pytest.mark.django_db


def stripe_client() -> stripe.StripeClient:
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
    )


@pytest.fixture
def plan(db) -> Plan:
    return Plan.objects.create(
        name="Pro", stripe_price_id="plan_pro_monthly", amount=1900, credits_per_cycle=500
    )


@pytest.fixture
def stripe_plan(stripe_server, plan) -> Plan:
    stripe_client().v1.plans.create(
        params={
            "id": plan.stripe_price_id,
            "amount": plan.amount,
            "currency": "usd",
            "interval": "month",
            "product": {"name": plan.name},
        }
    )
    return plan


def test_a_subscription_charges_the_default_card_and_grants_its_first_cycle_once(
    api, user, stripe_plan
):
    add_card_via_setup_intent(api)
    resp = api.post("/payments/subscriptions/", {"plan_id": stripe_plan.pk})
    assert resp.status_code == 201, resp.content
    sub = resp.json()["subscription"]
    assert sub["status"] == "active"
    assert sub["plan_name"] == "Pro subscription"
    assert sub["stripe_subscription_id"].startswith("sub_")
    assert credits_balance_get(user_id=user.pk) == 500
    order = Order.objects.get(order_type="subscription")
    assert order.status == Order.Status.PAID
    assert order.amount == 1900
    assert order.stripe_invoice_id.startswith("in_")

    # localstripe's own invoice event for that invoice, and Stripe's newer name for it.
    invoice = stripe_client().v1.invoices.retrieve(order.stripe_invoice_id).to_dict()
    post_webhook(event("invoice.payment_succeeded", invoice))
    post_webhook(event("invoice.paid", invoice))
    events_drain()
    assert credits_balance_get(user_id=user.pk) == 500
    assert CreditTransaction.objects.filter(kind="subscription").count() == 1

    listing = api.get("/payments/subscriptions/").json()
    assert listing["summary"]["has_active_subscription"] is True
    assert listing["summary"]["plan_name"] == "Pro subscription"
    assert [s["id"] for s in listing["subscriptions"]] == [sub["id"]]

    canceled = api.delete(f"/payments/subscriptions/{sub['id']}/")
    assert canceled.status_code == 200, canceled.content
    assert canceled.json()["cancel_at_period_end"] is True
    assert canceled.json()["status"] == "active"  # it runs to the end of the period
    assert api.get("/payments/subscriptions/").json()["summary"]["cancel_at_period_end"] is True


def test_bad_subscription_requests_are_clear_4xx_and_reach_no_stripe(api, other_api, stripe_plan):
    no_card = api.post("/payments/subscriptions/", {"plan_id": stripe_plan.pk})
    assert no_card.status_code == 422
    assert no_card.json()["extra"]["field"] == "payment_method_id"
    assert api.post("/payments/subscriptions/", {"plan_id": 999}).status_code == 422
    card = add_card_via_setup_intent(api)["payment_methods"][0]
    stolen = other_api.post(
        "/payments/subscriptions/", {"plan_id": stripe_plan.pk, "payment_method_id": card["id"]}
    )
    assert stolen.status_code == 404
    assert stripe_client().v1.subscriptions.list(params={"limit": 10}).data == []
    assert api.post("/payments/subscriptions/", {"plan_id": stripe_plan.pk}).status_code == 201
    again = api.post("/payments/subscriptions/", {"plan_id": stripe_plan.pk})
    assert again.status_code == 409
    assert other_api.delete("/payments/subscriptions/1/").status_code == 404


def test_the_portal_opens_for_the_users_own_customer(api, user, stripe_server):
    resp = api.post("/payments/portal/")
    assert resp.status_code == 200, resp.content
    url = resp.json()["url"]
    assert url.startswith(stripe_server.base + "/p/session/")
    customer = StripeCustomer.objects.get(user=user).stripe_customer_id
    page = requests.get(url, timeout=10)
    assert page.status_code == 200
    assert user.email in page.text
    assert customer not in url  # the page is named by a secret, not the customer


def test_the_portal_where_the_stripe_api_has_none_is_501(api, customer, stripe_without_the_route):
    resp = api.post("/payments/portal/")
    assert resp.status_code == 501
    assert resp.json()["code"] == "feature_unavailable"


# --- events, shuffled and duplicated --------------------------------------------------


@pytest.fixture
def customer(user) -> StripeCustomer:
    return StripeCustomer.objects.create(user=user, stripe_customer_id="cus_fixture")


def subscription_obj(plan: Plan, status: str, **kw) -> dict:
    obj = fixture("subscription")
    item = obj["items"]["data"][0]
    item.update(
        price={**item["price"], "id": plan.stripe_price_id},
        current_period_end=kw.pop("period_end", 1_900_000_000),
    )
    obj.update(
        id="sub_fixture",
        customer="cus_fixture",
        status=status,
        cancel_at_period_end=False,
        metadata={"plan_id": str(plan.pk), "purchase_type": "subscription"},
    )
    obj.update(kw)
    return obj


def at(evt: dict, created: int) -> dict:
    evt["created"] = created
    return evt


def invoice_obj(number: int, *, paid: bool = True) -> dict:
    obj = fixture("invoice")
    obj.update(
        id=f"in_cycle_{number}",
        customer="cus_fixture",
        amount_paid=1900 if paid else 0,
        amount_due=1900,
        currency="usd",
        status="paid" if paid else "open",
        billing_reason="subscription_cycle",
        parent={
            "type": "subscription_details",
            "subscription_details": {"subscription": "sub_fixture", "metadata": {}},
        },
    )
    return obj


def test_subscription_events_in_any_order_make_one_record_with_the_newest_state(customer, plan):
    t0 = int(time.time()) - 1000
    events = [
        at(event("customer.subscription.created", subscription_obj(plan, "incomplete")), t0),
        at(event("customer.subscription.updated", subscription_obj(plan, "active")), t0 + 10),
        at(
            event(
                "customer.subscription.updated",
                subscription_obj(plan, "active", cancel_at_period_end=True),
            ),
            t0 + 20,
        ),
        at(event("customer.subscription.deleted", subscription_obj(plan, "canceled")), t0 + 30),
    ]
    deliveries = events + events[1:3]  # two duplicated
    random.Random(7).shuffle(deliveries)
    for evt in deliveries:
        post_webhook(evt)
        events_drain()
    [record] = Subscription.objects.all()
    assert record.status == Subscription.Status.CANCELED
    assert record.user == customer.user


def test_an_update_before_its_create_does_not_regress_or_duplicate(customer, plan):
    t0 = int(time.time()) - 1000
    post_webhook(
        at(event("customer.subscription.updated", subscription_obj(plan, "active")), t0 + 5)
    )
    post_webhook(
        at(event("customer.subscription.created", subscription_obj(plan, "incomplete")), t0)
    )
    events_drain()
    [record] = Subscription.objects.all()
    assert record.status == Subscription.Status.ACTIVE


def test_three_cycles_grant_exactly_three_times(customer, plan, user):
    post_webhook(event("customer.subscription.created", subscription_obj(plan, "active")))
    deliveries = []
    for n in (1, 2, 3):
        deliveries += [
            event("invoice.paid", invoice_obj(n)),
            event("invoice.payment_succeeded", invoice_obj(n)),
        ]
    deliveries += deliveries[:2]  # Stripe retried the first cycle's events
    random.Random(3).shuffle(deliveries)
    for evt in deliveries:
        post_webhook(evt)
    events_drain()
    assert Order.objects.filter(order_type="subscription", status="paid").count() == 3
    assert CreditTransaction.objects.filter(kind="subscription").count() == 3
    assert credits_balance_get(user_id=user.pk) == 1500


def test_an_invoice_before_its_subscription_reads_the_subscription_from_stripe(
    customer, plan, user, stripe_plan, monkeypatch
):
    """Here the subscription must come from Stripe; localstripe has no `sub_fixture`,
    so the read is answered at the gateway with the fixture's shape."""
    from billing import gateway
    from billing.stripe_objects import subscription_from_payload

    monkeypatch.setattr(
        gateway,
        "subscription_retrieve",
        lambda *, subscription_id: subscription_from_payload(subscription_obj(plan, "active")),
    )
    post_webhook(event("invoice.paid", invoice_obj(1)))
    events_drain()
    assert Subscription.objects.get().status == Subscription.Status.ACTIVE
    assert credits_balance_get(user_id=user.pk) == 500


def test_a_failed_cycle_marks_past_due_and_grants_nothing(customer, plan, user):
    post_webhook(event("customer.subscription.created", subscription_obj(plan, "active")))
    post_webhook(event("invoice.payment_failed", invoice_obj(1, paid=False)))
    events_drain()
    assert Subscription.objects.get().status == Subscription.Status.PAST_DUE
    assert not Order.objects.exists()
    assert credits_balance_get(user_id=user.pk) == 0


def test_a_refunded_subscription_cycle_debits_its_credits(customer, plan, user):
    post_webhook(event("customer.subscription.created", subscription_obj(plan, "active")))
    paid = invoice_obj(1)
    paid["payment_intent"] = new_id("pi")
    post_webhook(event("invoice.paid", paid))
    events_drain()
    order = Order.objects.get()
    assert order.payments.get().amount_received == 1900
    assert credits_balance_get(user_id=user.pk) == 500

    refund = fixture("refund")
    refund.update(
        id=new_id("re"), amount=950, status="succeeded", payment_intent=paid["payment_intent"]
    )
    post_webhook(event("refund.created", refund))
    events_drain()
    order.refresh_from_db()
    assert order.status == Order.Status.PARTIALLY_REFUNDED
    assert credits_balance_get(user_id=user.pk) == 250
