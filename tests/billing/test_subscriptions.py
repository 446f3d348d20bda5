"""Subscriptions: started against localstripe on a legacy plan, then kept in step by
fixture-shaped events delivered shuffled and duplicated; every paid invoice grants its
cycle's credits exactly once. One live subscription per user and plan, enforced by the
database: simultaneous starts make one Stripe subscription, a refused card leaves
nothing live, and a failure after Stripe answered cancels what Stripe made."""

from __future__ import annotations

import random
import time
from datetime import timedelta

import pytest
import requests
import stripe
from django.conf import settings
from django.utils import timezone

from billing import gateway
from billing.models import (
    Order,
    SavedPaymentMethod,
    StripeCustomer,
    StripeEvent,
    Subscription,
)
from billing.services.events import events_drain
from billing.services.payments import order_info
from billing.services.subscriptions import INCOMPLETE_GRACE
from credits.models import CreditTransaction, Plan
from credits.selectors import credits_balance_get
from purchasables import hookimpl
from purchasables.types import InvoiceInfo, PurchaseType, Quote, RecurringPrice
from tests.billing.conftest import in_threads, post_webhook, stripe_plan_create
from tests.billing.test_cards import add_card_via_setup_intent
from tests.conftest import client_for
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
    stripe_plan_create(plan)
    return plan


def test_a_subscription_charges_the_default_card_and_grants_its_first_cycle_once(
    api, user, stripe_plan
):
    add_card_via_setup_intent(api)
    resp = api.post("/payments/subscriptions/", {"plan_id": stripe_plan.pk})
    assert resp.status_code == 201, resp.content
    sub = resp.json()["subscription"]
    assert sub["status"] == "active"
    assert sub["plan_name"] == "Pro"  # the plan's own name, as the catalog lists it
    assert sub["stripe_subscription_id"].startswith("sub_")
    assert credits_balance_get(user_id=user.pk) == 500
    order = Order.objects.get(order_type="subscription")
    assert order.status == Order.Status.PAID
    assert order.amount == 1900
    assert order.description == "Pro subscription"
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
    assert listing["summary"]["plan_name"] == "Pro"
    assert [s["id"] for s in listing["subscriptions"]] == [sub["id"]]

    canceled = api.delete(f"/payments/subscriptions/{sub['id']}/")
    assert canceled.status_code == 200, canceled.content
    assert canceled.json()["cancel_at_period_end"] is True
    assert canceled.json()["status"] == "active"  # it runs to the end of the period
    assert api.get("/payments/subscriptions/").json()["summary"]["cancel_at_period_end"] is True


def test_a_subscription_on_a_named_card_is_billed_to_that_card(api, user, stripe_plan):
    add_card_via_setup_intent(api)  # the default card
    cards = add_card_via_setup_intent(api, number="5555555555554444")["payment_methods"]
    named = next(c for c in cards if c["last4"] == "4444")
    assert not named["is_default"]
    resp = api.post(
        "/payments/subscriptions/", {"plan_id": stripe_plan.pk, "payment_method_id": named["id"]}
    )
    assert resp.status_code == 201, resp.content
    card = named["stripe_payment_method_id"]
    stripe_id = resp.json()["subscription"]["stripe_subscription_id"]
    assert stripe_client().v1.subscriptions.retrieve(stripe_id)["default_payment_method"] == card
    # Stripe bills each cycle to the customer's default card, which is now this one.
    customer = StripeCustomer.objects.get(user=user).stripe_customer_id
    at_stripe = stripe_client().v1.customers.retrieve(customer)
    assert at_stripe["invoice_settings"]["default_payment_method"] == card


def test_an_event_older_than_the_users_cancel_does_not_undo_it(api, user, stripe_plan):
    add_card_via_setup_intent(api)
    sub = api.post("/payments/subscriptions/", {"plan_id": stripe_plan.pk}).json()["subscription"]
    before = stripe_client().v1.subscriptions.retrieve(sub["stripe_subscription_id"]).to_dict()
    assert before["cancel_at_period_end"] is False
    assert api.delete(f"/payments/subscriptions/{sub['id']}/").status_code == 200
    # Stripe's event from before the cancel (the subscription turning active) arrives late.
    post_webhook(at(event("customer.subscription.updated", before), int(time.time()) - 60))
    events_drain()
    summary = api.get("/payments/subscriptions/").json()["summary"]
    assert summary["cancel_at_period_end"] is True
    # An update Stripe makes after the cancel still applies (the user renewed in the portal).
    renewed = {**before, "cancel_at_period_end": False, "canceled_at": None}
    post_webhook(at(event("customer.subscription.updated", renewed), int(time.time()) + 5))
    events_drain()
    assert api.get("/payments/subscriptions/").json()["summary"]["cancel_at_period_end"] is False


def test_bad_subscription_requests_are_clear_4xx_and_reach_no_stripe(api, other_api, stripe_plan):
    no_card = api.post("/payments/subscriptions/", {"plan_id": stripe_plan.pk})
    assert no_card.status_code == 422
    assert no_card.json()["extra"]["field"] == "payment_method_id"
    # Refused before anything was started: no record, not even a customer at Stripe.
    assert not Subscription.objects.exists() and not StripeCustomer.objects.exists()
    assert api.post("/payments/subscriptions/", {"plan_id": 999}).status_code == 422
    card = add_card_via_setup_intent(api)["payment_methods"][0]
    stolen = other_api.post(
        "/payments/subscriptions/", {"plan_id": stripe_plan.pk, "payment_method_id": card["id"]}
    )
    assert stolen.status_code == 404
    # Stripe bills a subscription's cycles to a card: credits cannot pay for one.
    for credits in ({"payment_type": "credits"}, {"apply_credits": True}):
        refused = api.post("/payments/subscriptions/", {"plan_id": stripe_plan.pk, **credits})
        assert refused.status_code == 422, refused.content
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


def test_only_a_live_subscription_stripe_knows_can_be_cancelled(customer, plan, user):
    """One still starting (no Stripe id yet) or one that has ended answers 409, and
    Stripe is not asked."""
    api = client_for(user)
    starting = Subscription.objects.create(
        user=user, purchase_type="subscription", plan_ref=str(plan.pk)
    )
    refused = api.delete(f"/payments/subscriptions/{starting.pk}/")
    assert refused.status_code == 409, refused.content
    Subscription.objects.filter(pk=starting.pk).update(
        status=Subscription.Status.INCOMPLETE_EXPIRED
    )

    post_webhook(event("customer.subscription.created", subscription_obj(plan, "active")))
    post_webhook(event("customer.subscription.deleted", subscription_obj(plan, "canceled")))
    events_drain()
    ended = Subscription.objects.get(stripe_subscription_id="sub_fixture")
    assert ended.status == Subscription.Status.CANCELED
    refused = api.delete(f"/payments/subscriptions/{ended.pk}/")
    assert refused.status_code == 409, refused.content
    assert refused.json()["extra"]["status"] == "canceled"


def test_a_renewal_or_a_change_of_price_at_stripe_moves_the_record_with_it(customer, plan):
    t0 = int(time.time()) - 1000
    created = subscription_obj(plan, "active", period_end=1_900_000_000)
    post_webhook(at(event("customer.subscription.created", created), t0))
    events_drain()
    renewed = subscription_obj(plan, "active", period_end=1_902_592_000)
    item = renewed["items"]["data"][0]
    item["price"] = {**item["price"], "id": "price_pro_yearly"}  # switched in the portal
    post_webhook(at(event("customer.subscription.updated", renewed), t0 + 10))
    events_drain()
    [record] = Subscription.objects.all()
    assert record.stripe_price_id == "price_pro_yearly"
    assert record.current_period_end.timestamp() == 1_902_592_000


def test_a_change_stamped_the_same_second_as_the_recorded_state_still_applies(customer, plan):
    """Stripe stamps events to the second: only a strictly older event is stale."""
    t0 = int(time.time()) - 1000
    post_webhook(at(event("customer.subscription.updated", subscription_obj(plan, "active")), t0))
    events_drain()
    ending = subscription_obj(plan, "active", cancel_at_period_end=True)
    post_webhook(at(event("customer.subscription.updated", ending), t0))
    events_drain()
    [record] = Subscription.objects.all()
    assert (record.status, record.cancel_at_period_end) == (Subscription.Status.ACTIVE, True)


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


def test_a_plan_withdrawn_from_sale_still_grants_its_subscribers_paid_cycles(
    anon_api, customer, plan, user
):
    post_webhook(event("customer.subscription.created", subscription_obj(plan, "active")))
    post_webhook(event("invoice.paid", invoice_obj(1)))
    events_drain()
    plan.active = False
    plan.save(update_fields=["active"])
    # No new buyer can start it: the catalog hides it and a new quote refuses it.
    subscription_type = next(
        t for t in anon_api.get("/catalog/").json()["purchase_types"] if t["name"] == "subscription"
    )
    assert subscription_type["catalog"]["plans"] == []
    refused = client_for(user).post("/payments/subscriptions/", {"plan_id": plan.pk})
    assert refused.status_code == 422, refused.content
    assert refused.json()["extra"]["field"] == "plan_id"
    assert Subscription.objects.count() == 1
    # Those who hold it are still billed by Stripe, and each paid cycle is served.
    post_webhook(event("invoice.paid", invoice_obj(2)))
    events_drain()
    assert StripeEvent.objects.exclude(status="processed").count() == 0
    assert Order.objects.filter(order_type="subscription", status="paid").count() == 2
    assert credits_balance_get(user_id=user.pk) == 1000


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
    """The event's note says what happened: past due, or, for a subscription that is not
    live (already past due), that there was nothing to mark."""
    post_webhook(event("customer.subscription.created", subscription_obj(plan, "active")))
    post_webhook(event("invoice.payment_failed", invoice_obj(1, paid=False)))
    events_drain()
    assert Subscription.objects.get().status == Subscription.Status.PAST_DUE
    assert not Order.objects.exists()
    assert credits_balance_get(user_id=user.pk) == 0
    post_webhook(event("invoice.payment_failed", invoice_obj(2, paid=False)))
    events_drain()
    notes = StripeEvent.objects.filter(type="invoice.payment_failed").order_by("id")
    assert [e.last_error for e in notes] == [
        "subscription is past due",
        "no live subscription to mark",
    ]


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


def test_a_subscription_cycle_refunded_as_credits_takes_back_its_credits_and_grants_new_ones(
    customer, plan, user
):
    from billing.services.credit_refunds import refund_as_credits

    post_webhook(event("customer.subscription.created", subscription_obj(plan, "active")))
    paid = invoice_obj(1)
    paid["payment_intent"] = new_id("pi")
    post_webhook(event("invoice.paid", paid))
    events_drain()
    order = Order.objects.get()
    assert credits_balance_get(user_id=user.pk) == 500

    refund = refund_as_credits(order_id=order.pk, amount=None)

    assert refund.applied_at is not None
    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
    # The cycle's 500 credits go back out; 19.00 comes back as credits at the credit rate.
    assert credits_balance_get(user_id=user.pk) == refund.credits > 0


def test_a_cycle_refunded_as_credits_in_parts_grants_one_credit_per_credit_rate_in_all(
    customer, plan, user
):
    """Credits for money come at the credit rate (0.10 USD a credit here); what a part
    leaves under one credit counts toward the next part, so the parts add up to the
    credits of the whole cycle."""
    from billing.services.credit_refunds import refund_as_credits
    from kernel.errors import InvalidInputError

    post_webhook(event("customer.subscription.created", subscription_obj(plan, "active")))
    paid = invoice_obj(1)
    paid["payment_intent"] = new_id("pi")
    post_webhook(event("invoice.paid", paid))
    events_drain()
    order = Order.objects.get()

    with pytest.raises(InvalidInputError):  # worth less than one credit
        refund_as_credits(order_id=order.pk, amount="0.05")
    assert not order.refunds.exists()
    first = refund_as_credits(order_id=order.pk, amount="0.15")
    rest = refund_as_credits(order_id=order.pk, amount=None)

    assert (first.amount, first.credits) == (15, 1)
    assert (rest.amount, rest.credits) == (1885, 189)
    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
    assert credits_balance_get(user_id=user.pk) == 190


# --- how a purchase type may be sold -------------------------------------------------


def test_a_plan_cannot_be_bought_as_a_one_off_order(api, user, stripe_plan):
    resp = api.post(
        "/payments/create/",
        {
            "purchase_type": "subscription",
            "service_id": stripe_plan.pk,
            "payment_method_id": "pm_card_visa",
        },
    )
    assert resp.status_code == 422, resp.content
    assert resp.json()["code"] == "not_sold_this_way"
    assert resp.json()["extra"]["sold_as"] == ["subscription"]
    assert not Order.objects.exists()
    assert credits_balance_get(user_id=user.pk) == 0
    assert stripe_client().v1.payment_intents.list(params={"limit": 10}).data == []


def test_a_one_off_purchase_type_cannot_be_subscribed_to(api, stripe_plan):
    add_card_via_setup_intent(api)
    resp = api.post("/payments/subscriptions/", {"plan_id": 1, "purchase_type": "credits"})
    assert resp.status_code == 422, resp.content
    assert resp.json()["code"] == "not_sold_this_way"
    assert resp.json()["extra"]["sold_as"] == ["order"]
    assert not Subscription.objects.exists()
    assert stripe_client().v1.subscriptions.list(params={"limit": 10}).data == []


def test_the_catalog_says_how_each_type_is_sold(anon_api, plan):
    types = {t["name"]: t for t in anon_api.get("/catalog/").json()["purchase_types"]}
    assert types["subscription"]["sold_as"] == ["subscription"]
    assert types["credits"]["sold_as"] == ["order"]


# --- one live subscription per user and plan -------------------------------------------


def stripe_subscriptions(user) -> list:
    customer = StripeCustomer.objects.get(user=user).stripe_customer_id
    listing = stripe_client().v1.subscriptions.list(params={"customer": customer, "limit": 100})
    return [s for s in listing.data if s["status"] not in ("canceled", "incomplete_expired")]


class LongNamedClub:
    """A subscription purchase type from a plugin whose plan name (and description) runs
    past 255 characters."""

    name = "The " + "very " * 60 + "long club"

    @hookimpl
    def tollgate_purchase_types(self):
        return [PurchaseType(name="club", order_type="subscription", label="Club")]

    @hookimpl
    def tollgate_quote(self, request):
        return Quote(
            amount=1900,
            currency="usd",
            description=self.name,
            recurring=RecurringPrice(
                stripe_price_id="plan_club_monthly", interval="month", plan_name=self.name
            ),
        )

    @hookimpl
    def tollgate_fulfil(self, order):
        return {}


def test_a_plan_name_past_255_characters_is_kept_to_its_first_255_on_record_and_order(
    api, user, stripe_server
):
    from types import SimpleNamespace

    from purchasables.registry import registry

    stripe_plan_create(
        SimpleNamespace(
            stripe_price_id="plan_club_monthly",
            amount=1900,
            currency="usd",
            interval="month",
            name="Club",
        )
    )
    add_card_via_setup_intent(api)
    assert len(LongNamedClub.name) > 255
    with registry.plugin_registered(LongNamedClub(), name="club"):
        resp = api.post("/payments/subscriptions/", {"plan_id": 1, "purchase_type": "club"})
    assert resp.status_code == 201, resp.content
    assert resp.json()["subscription"]["plan_name"] == LongNamedClub.name[:255]
    [cycle] = api.get("/payments/orders/").json()["items"]
    assert cycle["description"] == LongNamedClub.name[:255]


@pytest.mark.django_db(transaction=True)
def test_simultaneous_starts_make_one_subscription_and_the_rest_409(user, stripe_plan):
    api = client_for(user)
    add_card_via_setup_intent(api)

    def start(i: int) -> int:
        return client_for(user).post("/payments/subscriptions/", {"plan_id": stripe_plan.pk})

    answers = in_threads(5, start)
    codes = sorted(a.status_code for a in answers)
    assert codes == [201, 409, 409, 409, 409], [a.content for a in answers]
    assert {a.json()["code"] for a in answers if a.status_code == 409} == {"subscription_exists"}
    assert len(stripe_subscriptions(user)) == 1
    assert Subscription.objects.filter(status__in=Subscription.LIVE_STATUSES).count() == 1
    assert credits_balance_get(user_id=user.pk) == 500


def test_a_refused_card_leaves_nothing_live_and_the_user_can_try_again(api, user, stripe_plan):
    add_card_via_setup_intent(api, number="4000000000000341")  # attaches, then declines
    refused = api.post("/payments/subscriptions/", {"plan_id": stripe_plan.pk})
    assert refused.status_code == 402, refused.content
    assert stripe_subscriptions(user) == []
    assert not Subscription.objects.filter(status__in=Subscription.LIVE_STATUSES).exists()
    assert credits_balance_get(user_id=user.pk) == 0

    good = add_card_via_setup_intent(api)["payment_methods"]
    card = next(c for c in good if c["last4"] == "4242")
    again = api.post(
        "/payments/subscriptions/", {"plan_id": stripe_plan.pk, "payment_method_id": card["id"]}
    )
    assert again.status_code == 201, again.content
    assert again.json()["subscription"]["status"] == "active"
    assert len(stripe_subscriptions(user)) == 1
    assert credits_balance_get(user_id=user.pk) == 500


def test_a_refused_card_is_still_402_when_stripe_cannot_be_asked_what_to_cancel(
    api, user, stripe_plan, monkeypatch
):
    """The card was refused, and Stripe cannot then be asked what it made for the record:
    the user is told the card was refused, and the record stays incomplete (the plan
    held) rather than risk a second live subscription."""

    def unreachable(**kw):
        raise gateway.PaymentGatewayError("Stripe could not be reached.")

    add_card_via_setup_intent(api, number="4000000000000341")  # attaches, then declines
    monkeypatch.setattr(gateway, "subscriptions_for_customer", unreachable)
    refused = api.post("/payments/subscriptions/", {"plan_id": stripe_plan.pk})
    assert refused.status_code == 402, refused.content
    assert refused.json()["code"] == "card_declined"
    [held] = Subscription.objects.all()
    assert held.status == Subscription.Status.INCOMPLETE
    assert credits_balance_get(user_id=user.pk) == 0


def test_a_failure_after_stripe_answered_cancels_the_stripe_subscription(
    api, user, stripe_plan, monkeypatch
):
    """The local record cannot be kept (the database refuses it here): what Stripe
    made must not go on charging."""
    from billing.services import subscriptions

    def refuse(**kw):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(subscriptions, "subscription_record", refuse)
    add_card_via_setup_intent(api)
    resp = api.post("/payments/subscriptions/", {"plan_id": stripe_plan.pk})
    assert resp.status_code == 500, resp.content
    assert stripe_subscriptions(user) == []
    # The ended record names, for staff, the Stripe subscription that was cancelled.
    [ended] = Subscription.objects.all()
    assert ended.status == Subscription.Status.INCOMPLETE_EXPIRED
    cancelled = stripe_client().v1.subscriptions.retrieve(ended.stripe_subscription_id)
    assert cancelled["status"] == "canceled"
    monkeypatch.undo()
    assert api.post("/payments/subscriptions/", {"plan_id": stripe_plan.pk}).status_code == 201


def test_a_stripe_error_on_create_leaves_the_user_free_to_retry(
    api, user, stripe_plan, monkeypatch
):
    def unreachable(**kw):
        raise gateway.PaymentGatewayError("Stripe could not be reached.")

    monkeypatch.setattr(gateway, "subscription_create", unreachable)
    add_card_via_setup_intent(api)
    assert api.post("/payments/subscriptions/", {"plan_id": stripe_plan.pk}).status_code == 502
    monkeypatch.undo()
    assert api.post("/payments/subscriptions/", {"plan_id": stripe_plan.pk}).status_code == 201
    assert len(stripe_subscriptions(user)) == 1


def test_a_failed_start_leaves_the_users_other_subscriptions_live(
    api, user, stripe_plan, monkeypatch
):
    add_card_via_setup_intent(api)
    first = api.post("/payments/subscriptions/", {"plan_id": stripe_plan.pk})
    assert first.status_code == 201, first.content
    team = Plan.objects.create(
        name="Team", stripe_price_id="plan_team_monthly", amount=4900, credits_per_cycle=1500
    )
    stripe_plan_create(team)

    def unreachable(**kw):
        raise gateway.PaymentGatewayError("Stripe could not be reached.")

    monkeypatch.setattr(gateway, "subscription_create", unreachable)
    assert api.post("/payments/subscriptions/", {"plan_id": team.pk}).status_code == 502
    live = first.json()["subscription"]["stripe_subscription_id"]
    assert [s["id"] for s in stripe_subscriptions(user)] == [live]


def test_a_record_left_incomplete_by_a_dead_request_is_given_up_after_its_grace(
    api, user, stripe_plan
):
    add_card_via_setup_intent(api)
    left = Subscription.objects.create(
        user=user, purchase_type="subscription", plan_ref=str(stripe_plan.pk)
    )
    busy = api.post("/payments/subscriptions/", {"plan_id": stripe_plan.pk})
    assert busy.status_code == 409, busy.content  # it may still be in progress
    assert busy.json()["code"] == "subscription_exists"
    assert (busy.json()["extra"]["subscription_id"], busy.json()["extra"]["status"]) == (
        left.pk,
        "incomplete",
    )
    Subscription.objects.filter(pk=left.pk).update(
        created_at=timezone.now() - INCOMPLETE_GRACE - timedelta(minutes=1)
    )
    resp = api.post("/payments/subscriptions/", {"plan_id": stripe_plan.pk})
    assert resp.status_code == 201, resp.content
    left.refresh_from_db()
    assert left.status == Subscription.Status.INCOMPLETE_EXPIRED
    assert len(stripe_subscriptions(user)) == 1


def test_giving_up_an_old_record_leaves_the_users_later_subscription_alone(api, user, stripe_plan):
    """A record left incomplete by a dead request is given up when the user starts its
    plan again; the subscription to another plan they started since (a later record)
    is neither taken for it nor cancelled."""
    add_card_via_setup_intent(api)
    left = Subscription.objects.create(
        user=user, purchase_type="subscription", plan_ref=str(stripe_plan.pk)
    )
    Subscription.objects.filter(pk=left.pk).update(
        created_at=timezone.now() - INCOMPLETE_GRACE - timedelta(minutes=1)
    )
    team = Plan.objects.create(
        name="Team", stripe_price_id="plan_team_monthly", amount=4900, credits_per_cycle=1500
    )
    stripe_plan_create(team)
    later = api.post("/payments/subscriptions/", {"plan_id": team.pk})
    assert later.status_code == 201, later.content

    again = api.post("/payments/subscriptions/", {"plan_id": stripe_plan.pk})
    assert again.status_code == 201, again.content
    left.refresh_from_db()
    assert left.status == Subscription.Status.INCOMPLETE_EXPIRED
    live = {s["id"]: s["status"] for s in stripe_subscriptions(user)}
    assert live == {
        later.json()["subscription"]["stripe_subscription_id"]: "active",
        again.json()["subscription"]["stripe_subscription_id"]: "active",
    }


def record_left_incomplete(user, plan: Plan) -> Subscription:
    """A record a request that died left `incomplete`, older than its grace."""
    left = Subscription.objects.create(
        user=user, purchase_type="subscription", plan_ref=str(plan.pk)
    )
    Subscription.objects.filter(pk=left.pk).update(
        created_at=timezone.now() - INCOMPLETE_GRACE - timedelta(minutes=1)
    )
    return left


def subscribed_at_stripe(user, plan: Plan, metadata: dict[str, str]) -> dict:
    """A subscription to `plan` made at Stripe (not through Tollgate) for the user's
    customer, billed to their saved card."""
    customer = StripeCustomer.objects.get(user=user).stripe_customer_id
    card = SavedPaymentMethod.objects.get(user=user).stripe_payment_method_id
    stripe_client().v1.customers.update(
        customer, params={"invoice_settings": {"default_payment_method": card}}
    )
    return stripe_client().v1.subscriptions.create(
        params={
            "customer": customer,
            "items": [{"plan": plan.stripe_price_id}],
            "metadata": metadata,
        }
    )


def test_an_old_record_with_two_unpaid_subscriptions_at_stripe_ends_both_and_names_neither(
    api, user, stripe_plan
):
    """Both subscriptions Stripe holds for a record left incomplete are cancelled when its
    plan is started again; the ended record names, for staff, the Stripe subscription that
    was cancelled only when there was one, so here it names neither."""
    add_card_via_setup_intent(api, number="4000000000000341")  # attaches, then declines
    left = record_left_incomplete(user, stripe_plan)
    metadata = {"subscription_id": str(left.pk), "plan_id": str(stripe_plan.pk)}
    unpaid = [subscribed_at_stripe(user, stripe_plan, metadata) for _ in range(2)]
    assert [s["status"] for s in unpaid] == ["incomplete", "incomplete"]

    good = add_card_via_setup_intent(api)["payment_methods"]
    card = next(c for c in good if c["last4"] == "4242")
    again = api.post(
        "/payments/subscriptions/", {"plan_id": stripe_plan.pk, "payment_method_id": card["id"]}
    )
    assert again.status_code == 201, again.content
    left.refresh_from_db()
    assert (left.status, left.stripe_subscription_id) == (
        Subscription.Status.INCOMPLETE_EXPIRED,
        None,
    )
    for s in unpaid:
        assert stripe_client().v1.subscriptions.retrieve(s["id"])["status"] == "canceled"
    live = again.json()["subscription"]["stripe_subscription_id"]
    assert [s["id"] for s in stripe_subscriptions(user)] == [live]


@pytest.mark.parametrize(
    ("age", "kept"),
    [
        (timedelta(hours=24), True),
        (timedelta(hours=24, minutes=4, seconds=30), True),
        (timedelta(hours=24, minutes=5, seconds=30), False),
        (timedelta(hours=25), False),
    ],
)
def test_a_record_left_incomplete_is_kept_while_its_checkout_could_still_be_paid(
    api, user, stripe_plan, age, kept
):
    """Stripe keeps a Checkout Session open for 24 hours, and a start request may talk to
    Stripe for five minutes more: until then the record may still become a subscription,
    and the plan stays taken."""
    add_card_via_setup_intent(api)
    left = Subscription.objects.create(
        user=user, purchase_type="subscription", plan_ref=str(stripe_plan.pk)
    )
    Subscription.objects.filter(pk=left.pk).update(created_at=timezone.now() - age)
    resp = api.post("/payments/subscriptions/", {"plan_id": stripe_plan.pk})
    assert resp.status_code == (409 if kept else 201), resp.content
    left.refresh_from_db()
    assert left.status == (
        Subscription.Status.INCOMPLETE if kept else Subscription.Status.INCOMPLETE_EXPIRED
    )


def test_a_start_whose_first_invoice_cannot_be_recorded_starts_and_its_event_grants(
    api, user, stripe_plan, monkeypatch
):
    from billing.services import subscriptions

    def refuse(**kw):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(subscriptions, "invoice_record", refuse)
    add_card_via_setup_intent(api)
    resp = api.post("/payments/subscriptions/", {"plan_id": stripe_plan.pk})
    assert resp.status_code == 201, resp.content
    assert resp.json()["subscription"]["status"] == "active"
    assert credits_balance_get(user_id=user.pk) == 0
    monkeypatch.undo()
    stripe_id = resp.json()["subscription"]["stripe_subscription_id"]
    [invoice] = stripe_client().v1.invoices.list(params={"subscription": stripe_id}).data
    post_webhook(event("invoice.paid", invoice.to_dict()))
    events_drain()
    assert credits_balance_get(user_id=user.pk) == 500
    assert Order.objects.get().stripe_invoice_id == invoice["id"]


# --- what a paid invoice grants --------------------------------------------------------


def test_an_invoice_of_one_cent_or_of_the_wrong_currency_grants_nothing(customer, plan, user):
    post_webhook(event("customer.subscription.created", subscription_obj(plan, "active")))
    cent = invoice_obj(1)
    cent.update(amount_paid=1, amount_due=1)
    yen = invoice_obj(2)
    yen.update(currency="jpy")  # 1,900 yen, not 19.00 dollars
    rand = invoice_obj(3)
    rand.update(currency="zar")
    # The shape of API versions before 2025 (and localstripe): no billing_reason,
    # `paid`, `subscription` and `payment_intent` on the invoice.
    old_shape = {
        "id": "in_old_shape",
        "object": "invoice",
        "customer": "cus_fixture",
        "subscription": "sub_fixture",
        "paid": True,
        "status": "paid",
        "amount_paid": 1,
        "currency": "usd",
        "payment_intent": new_id("pi"),
        "charge": None,
    }
    for inv in (cent, yen, rand, old_shape):
        post_webhook(event("invoice.paid", inv))
        post_webhook(event("invoice.payment_succeeded", inv))
    events_drain()
    assert credits_balance_get(user_id=user.pk) == 0
    assert not Order.objects.exists()
    invoice_events = StripeEvent.objects.filter(type__startswith="invoice.")
    assert {e.status for e in invoice_events} == {"processed"}  # recorded, never retried
    assert all(e.last_error.startswith("not granted: ") for e in invoice_events)
    assert "paid in jpy; the plan is priced in usd" in "".join(e.last_error for e in invoice_events)
    notes = {e.object_id: e.last_error for e in invoice_events}
    assert notes[cent["id"]].endswith("1 usd paid, billing_reason subscription_cycle")
    assert notes["in_old_shape"].endswith("1 usd paid, billing_reason not stated")


def test_a_cycle_paid_with_tax_on_top_grants_once_and_its_order_is_what_was_paid(
    customer, plan, user
):
    post_webhook(event("customer.subscription.created", subscription_obj(plan, "active")))
    taxed = invoice_obj(1)
    taxed.update(amount_paid=2090, amount_due=2090)  # 1,900 and 10% tax
    post_webhook(event("invoice.paid", taxed))
    post_webhook(event("invoice.payment_succeeded", taxed))
    events_drain()
    order = Order.objects.get()
    assert (order.status, order.amount, order.currency) == (Order.Status.PAID, 2090, "usd")
    assert credits_balance_get(user_id=user.pk) == 500


def test_a_paid_invoice_of_nothing_grants_nothing_and_says_nothing_was_paid(customer, plan, user):
    post_webhook(event("customer.subscription.created", subscription_obj(plan, "active")))
    free = invoice_obj(1)
    free.update(amount_paid=0, amount_due=0)  # a 100% coupon: Stripe marks it paid
    post_webhook(event("invoice.paid", free))
    events_drain()
    assert credits_balance_get(user_id=user.pk) == 0
    assert not Order.objects.exists()
    stored = StripeEvent.objects.get(type="invoice.paid")
    assert (stored.status, stored.last_error) == ("processed", "invoice is paid; nothing was paid")


@pytest.mark.parametrize(
    ("reason", "why"),
    [
        ("manual", "billing_reason 'manual' is not a billing cycle"),
        ("subscription_threshold", "billing_reason 'subscription_threshold' is not a billing"),
        ("subscription_update", "a proration for a change of plan or quantity, not a cycle"),
        ("upcoming", "billing_reason 'upcoming' is not a billing cycle"),
    ],
)
def test_an_invoice_that_is_not_a_cycle_grants_nothing_and_says_why(
    customer, plan, user, reason, why
):
    post_webhook(event("customer.subscription.created", subscription_obj(plan, "active")))
    inv = invoice_obj(1)
    inv["billing_reason"] = reason
    post_webhook(event("invoice.paid", inv))
    post_webhook(event("invoice.payment_succeeded", inv))
    events_drain()
    assert credits_balance_get(user_id=user.pk) == 0
    assert not Order.objects.exists()
    invoice_events = StripeEvent.objects.filter(type__startswith="invoice.")
    assert {e.status for e in invoice_events} == {"processed"}
    assert all(e.last_error.startswith(f"not granted: {why}") for e in invoice_events)


def test_a_cycle_invoice_tells_the_plugin_what_was_paid_and_for_which_period(customer, plan, user):
    """The pinned API version's invoice: its payment under `payments` (expanded), the
    subscription under `parent`; the renewal order gets its payment row from it."""
    post_webhook(event("customer.subscription.created", subscription_obj(plan, "active")))
    inv = invoice_obj(1)
    inv["billing_reason"] = "subscription_cycle"
    inv["lines"]["data"][0]["period"] = {"start": 1_800_000_000, "end": 1_802_592_000}
    intent = new_id("pi")
    paid = fixture("invoice_payment")
    paid.update(
        id=new_id("inpay"),
        invoice=inv["id"],
        amount_paid=1900,
        currency="usd",
        status="paid",
        payment={"type": "payment_intent", "payment_intent": intent},
    )
    inv["payments"] = {"object": "list", "data": [paid], "has_more": False}
    post_webhook(event("invoice.paid", inv))
    post_webhook(event("invoice.payment_succeeded", inv))
    events_drain()
    assert credits_balance_get(user_id=user.pk) == 500
    order = Order.objects.get()
    assert order.payments.get().stripe_payment_intent_id == intent
    info = order_info(order)
    assert info.invoice == InvoiceInfo(
        stripe_invoice_id=inv["id"],
        billing_reason="subscription_cycle",
        amount_paid=1900,
        currency="usd",
        period_start=1_800_000_000,
        period_end=1_802_592_000,
    )
    assert order.fulfilment.result["period_end"] == 1_802_592_000
    assert set(
        StripeEvent.objects.filter(type__startswith="invoice.").values_list("status", flat=True)
    ) == {"processed"}


@pytest.mark.parametrize("known_by", ["its metadata", "the record"])
def test_an_old_record_whose_subscription_stripe_holds_as_paid_is_kept_not_cancelled(
    api, user, stripe_plan, known_by
):
    """A Checkout completed long ago whose events were never processed: the next start
    finds the paid subscription at Stripe, records it, and answers 409. Stripe's
    subscription is the record's when its metadata names the record, or when the record
    already holds its Stripe id (its metadata was since edited at Stripe)."""
    add_card_via_setup_intent(api)
    left = record_left_incomplete(user, stripe_plan)
    metadata = {"plan_id": str(stripe_plan.pk)}
    if known_by == "its metadata":
        metadata["subscription_id"] = str(left.pk)
    paid = subscribed_at_stripe(user, stripe_plan, metadata)
    assert paid["status"] == "active"
    if known_by == "the record":
        Subscription.objects.filter(pk=left.pk).update(stripe_subscription_id=paid["id"])
    resp = api.post("/payments/subscriptions/", {"plan_id": stripe_plan.pk})
    assert resp.status_code == 409, resp.content
    left.refresh_from_db()
    assert left.status == Subscription.Status.ACTIVE
    assert left.stripe_subscription_id == paid["id"]
    assert [s["id"] for s in stripe_subscriptions(user)] == [paid["id"]]


def test_subscriptions_started_outside_tollgate_on_unknown_prices_are_all_recorded(customer, plan):
    """Staff made two in Stripe's dashboard, on prices no plan names (no metadata):
    the one-live-per-plan rule does not apply to them, and both are kept."""
    for n in (1, 2):
        obj = subscription_obj(plan, "active", id=f"sub_outside_{n}", metadata={})
        post_webhook(event("customer.subscription.created", obj))
    events_drain()
    assert sorted(
        Subscription.objects.filter(plan_ref="").values_list("stripe_subscription_id", flat=True)
    ) == ["sub_outside_1", "sub_outside_2"]
    assert set(StripeEvent.objects.values_list("status", flat=True)) == {"processed"}


def test_a_second_live_subscription_to_a_plan_made_outside_tollgate_waits_as_a_conflict(
    customer, plan
):
    """One live record per user and plan: a second subscription to the same plan made in
    Stripe's dashboard is not recorded over the first; its event is retried as a conflict
    (for staff to see), and the first record is left as it was."""
    post_webhook(event("customer.subscription.created", subscription_obj(plan, "active")))
    events_drain()
    second = subscription_obj(plan, "active", id="sub_fixture_again")
    post_webhook(event("customer.subscription.created", second))
    events_drain()

    [kept] = Subscription.objects.all()
    assert (kept.stripe_subscription_id, kept.status) == ("sub_fixture", "active")
    waiting = StripeEvent.objects.get(payload__data__object__id="sub_fixture_again")
    assert waiting.status == StripeEvent.Status.RETRYING
    assert "ConflictError: Subscription recorded concurrently" in waiting.last_error


def invoice_payment_obj(inv: dict, intent: str) -> dict:
    paid = fixture("invoice_payment")
    paid.update(
        id=new_id("inpay"),
        invoice=inv["id"],
        amount_paid=inv["amount_paid"],
        currency=inv["currency"],
        status="paid",
        payment={"type": "payment_intent", "payment_intent": intent},
    )
    return paid


def test_an_invoice_payment_made_without_a_payment_intent_attaches_nothing(customer, plan, user):
    """A cycle paid out of band (no PaymentIntent): its `invoice_payment.paid` has no
    payment of ours to attach, and the order keeps none."""
    post_webhook(event("customer.subscription.created", subscription_obj(plan, "active")))
    inv = invoice_obj(1)
    post_webhook(event("invoice.paid", inv))
    events_drain()
    order = Order.objects.get()
    out_of_band = invoice_payment_obj(inv, "")
    out_of_band["payment"] = {"type": "out_of_band_payment"}
    post_webhook(event("invoice_payment.paid", out_of_band))
    events_drain()
    noted = StripeEvent.objects.get(type="invoice_payment.paid")
    assert (noted.status, noted.last_error) == (
        "processed",
        "nothing to attach: not a paid PaymentIntent",
    )
    assert not order.payments.exists()


@pytest.mark.parametrize("payment_first", [False, True])
def test_a_renewal_gets_its_payment_from_invoice_payment_paid_in_either_order(
    customer, plan, user, payment_first
):
    """At the pinned API version an invoice event names no payment: the
    `invoice_payment.paid` event does, before or after it; a refund then finds the order."""
    post_webhook(event("customer.subscription.created", subscription_obj(plan, "active")))
    inv = invoice_obj(1)
    intent = new_id("pi")
    deliveries = [
        event("invoice.paid", inv),
        event("invoice_payment.paid", invoice_payment_obj(inv, intent)),
    ]
    for evt in reversed(deliveries) if payment_first else deliveries:
        post_webhook(evt)
        events_drain()
    order = Order.objects.get()
    assert order.payments.get().stripe_payment_intent_id == intent
    assert credits_balance_get(user_id=user.pk) == 500
    assert set(StripeEvent.objects.values_list("status", flat=True)) == {"processed"}

    refund = fixture("refund")
    refund.update(id=new_id("re"), amount=1900, status="succeeded", payment_intent=intent)
    post_webhook(event("refund.created", refund))
    events_drain()
    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
    assert credits_balance_get(user_id=user.pk) == 0
