"""One live subscription per user and plan, enforced by the database: simultaneous
starts make one Stripe subscription, a refused card leaves nothing live, and a failure
after Stripe answered cancels what Stripe made."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

from billing import gateway
from billing.models import StripeCustomer, Subscription
from credits.selectors import credits_balance_get
from tests.billing.conftest import in_threads
from tests.billing.test_cards import add_card_via_setup_intent
from tests.billing.test_subscriptions import plan, stripe_client, stripe_plan  # noqa: F401
from tests.conftest import client_for


def stripe_subscriptions(user) -> list:
    customer = StripeCustomer.objects.get(user=user).stripe_customer_id
    listing = stripe_client().v1.subscriptions.list(params={"customer": customer, "limit": 100})
    return [s for s in listing.data if s["status"] not in ("canceled", "incomplete_expired")]


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
    assert not Subscription.objects.filter(status__in=Subscription.LIVE_STATUSES).exists()
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
