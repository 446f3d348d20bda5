"""The development Stripe takes the pinned API version's parameters and answers in its
shapes, though localstripe behind it speaks the API of 2017."""

from __future__ import annotations

import time

import pytest
import stripe

from tollgate_testing.stripe_server import DevStripe

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(stripe_server: DevStripe) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_localstripe",
        base_addresses={"api": stripe_server.base},
        stripe_version=stripe.api_version,
    )


@pytest.fixture
def customer_with_card(client: stripe.StripeClient) -> tuple[str, str]:
    customer = client.v1.customers.create(params={"email": "buyer@example.com"})
    card = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": card.id}}
    )
    return customer.id, card.id


def test_a_dynamic_payment_method_intent_is_made_confirmed_and_read_back(client):
    intent = client.v1.payment_intents.create(
        params={
            "amount": 1500,
            "currency": "eur",
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            "allowed_payment_method_types": ["card"],
            "description": "Ten credits",
            "statement_descriptor_suffix": "CREDITS",
            "receipt_email": "buyer@example.com",
            "payment_method": "pm_card_visa",
            "metadata": {"order_id": "7"},
        }
    )
    assert intent.status == "requires_confirmation"
    assert intent.description == "Ten credits"
    assert intent.amount_received == 0
    confirmed = client.v1.payment_intents.confirm(intent.id).to_dict()
    assert confirmed["status"] == "succeeded"
    assert confirmed["amount_received"] == 1500
    assert isinstance(confirmed["latest_charge"], str)
    assert "charges" not in confirmed
    assert confirmed["automatic_payment_methods"] == {"enabled": True, "allow_redirects": "never"}
    read = client.v1.payment_intents.retrieve(intent.id).to_dict()
    assert (read["description"], read["receipt_email"]) == ("Ten credits", "buyer@example.com")
    expanded = client.v1.payment_intents.retrieve(
        intent.id, params={"expand": ["latest_charge"]}
    ).to_dict()
    assert expanded["latest_charge"]["id"] == confirmed["latest_charge"]
    charge = client.v1.charges.retrieve(confirmed["latest_charge"]).to_dict()
    assert "refunds" not in charge
    assert charge["amount_captured"] == 1500


def test_a_refund_keeps_its_reason(client):
    intent = client.v1.payment_intents.create(
        params={
            "amount": 900,
            "currency": "eur",
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    )
    refund = client.v1.refunds.create(
        params={"payment_intent": intent.id, "amount": 400, "reason": "requested_by_customer"}
    )
    assert refund.reason == "requested_by_customer"
    listed = client.v1.refunds.list(params={"payment_intent": intent.id}).data
    assert [r.reason for r in listed] == ["requested_by_customer"]


def test_a_setup_intent_takes_dynamic_payment_methods(client, customer_with_card):
    customer_id, _ = customer_with_card
    intent = client.v1.setup_intents.create(
        params={
            "customer": customer_id,
            "usage": "off_session",
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
        }
    )
    assert intent.status == "requires_payment_method"
    assert intent.client_secret


def test_payment_intents_are_listed_by_customer_and_creation_time(client, customer_with_card):
    customer_id, card_id = customer_with_card
    before = int(time.time()) - 1
    params = {
        "amount": 500,
        "currency": "eur",
        "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
    }
    mine = client.v1.payment_intents.create(
        params={**params, "customer": customer_id, "payment_method": card_id}
    )
    other = client.v1.payment_intents.create(params=params)
    by_customer = client.v1.payment_intents.list(params={"customer": customer_id}).data
    assert [i.id for i in by_customer] == [mine.id]
    recent = client.v1.payment_intents.list(params={"created": {"gte": before}, "limit": 100})
    assert {i.id for i in recent.data} == {mine.id, other.id}
    assert client.v1.payment_intents.list(params={"created": {"lt": before}}).data == []
    first = client.v1.payment_intents.list(params={"limit": 1})
    assert first.has_more and len(first.data) == 1


def test_a_subscription_to_a_price_is_billed_in_the_pinned_shapes(client, customer_with_card):
    customer_id, card_id = customer_with_card
    client.v1.plans.create(
        params={
            "id": "plan_pro_monthly",
            "amount": 1900,
            "currency": "usd",
            "interval": "month",
            "product": {"name": "Pro"},
        }
    )
    price = client.v1.prices.retrieve("plan_pro_monthly")
    assert (price.unit_amount, price.recurring.interval) == (1900, "month")
    subscription = client.v1.subscriptions.create(
        params={
            "customer": customer_id,
            "items": [{"price": "plan_pro_monthly"}],
            "default_payment_method": card_id,
            "payment_behavior": "error_if_incomplete",
            "metadata": {"plan_id": "1"},
        }
    ).to_dict()
    assert subscription["status"] == "active"
    assert subscription["default_payment_method"] == card_id
    assert not {"current_period_end", "plan"} & subscription.keys()
    (item,) = subscription["items"]["data"]
    assert item["price"]["id"] == "plan_pro_monthly"
    assert item["current_period_end"] > item["current_period_start"]

    (invoice,) = client.v1.invoices.list(params={"subscription": subscription["id"]}).data
    raw = invoice.to_dict()
    assert raw["status"] == "paid"
    assert raw["parent"]["subscription_details"]["subscription"] == subscription["id"]
    assert not {"paid", "charge", "payment_intent", "subscription"} & raw.keys()
    expanded = client.v1.invoices.retrieve(invoice.id, params={"expand": ["payments"]}).to_dict()
    (payment,) = expanded["payments"]["data"]
    assert payment["object"] == "invoice_payment"
    assert payment["status"] == "paid"
    assert payment["payment"]["type"] in ("payment_intent", "charge")
    listed = client.v1.invoice_payments.list(params={"invoice": invoice.id}).data
    assert [p.id for p in listed] == [payment["id"]]
    assert client.v1.invoice_payments.retrieve(payment["id"]).invoice == invoice.id


def test_events_say_the_pinned_version_and_carry_its_shapes(client):
    intent = client.v1.payment_intents.create(
        params={
            "amount": 700,
            "currency": "eur",
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    )
    events = [
        e.to_dict()
        for e in client.v1.events.list(params={"limit": 100}).data
        if e.to_dict()["data"]["object"].get("id") == intent.id
    ]
    assert events
    assert {e["api_version"] for e in events} == {stripe.api_version}
    succeeded = next(e for e in events if e["type"] == "payment_intent.succeeded")
    obj = succeeded["data"]["object"]
    assert obj["amount_received"] == 700
    assert isinstance(obj["latest_charge"], str)


def test_a_recurring_price_is_made_and_read_back(client):
    price = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 500,
            "recurring": {"interval": "month"},
            "product_data": {"name": "Basic"},
        }
    )
    read = client.v1.prices.retrieve(price.id)
    assert (read.unit_amount, read.currency, read.recurring.interval) == (500, "usd", "month")
    assert price.id in {p.id for p in client.v1.prices.list().data}
