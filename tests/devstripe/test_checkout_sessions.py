"""The development Stripe's Checkout, portal and test clocks, as Stripe's API answers them:
what the pinned version accepts and refuses, and what each object looks like."""

from __future__ import annotations

import asyncio
import time

import pytest
import requests
import stripe
from django.conf import settings

pytestmark = [
    pytest.mark.e2e,
    # localstripe's own routes are plain functions, which aiohttp warns about when its
    # module is imported in this process (the sweep test runs devstripe's code here).
    pytest.mark.filterwarnings("ignore:Bare functions are deprecated:DeprecationWarning"),
]


@pytest.fixture
def client(stripe_server) -> stripe.StripeClient:
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": stripe_server.base},
        stripe_version=stripe.api_version,
    )


def one_time(amount: int = 1000, quantity: int = 1) -> dict:
    return {
        "price_data": {
            "currency": "usd",
            "unit_amount": amount,
            "product_data": {"name": "100 credits"},
        },
        "quantity": quantity,
    }


def test_a_payment_session_has_the_pinned_shape_and_its_line_items(client):
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [one_time(500, quantity=3)],
            "success_url": "https://shop.example/ok?s={CHECKOUT_SESSION_ID}",
            "metadata": {"order_id": "9"},
            "client_reference_id": "9",
        }
    )
    assert session.object == "checkout.session"
    assert (session.status, session.payment_status, session.mode) == ("open", "unpaid", "payment")
    assert (session.amount_total, session.currency) == (1500, "usd")
    assert session.payment_intent is None  # made when the customer pays
    assert session.expires_at - session.created == 24 * 60 * 60
    assert session.metadata.to_dict() == {"order_id": "9"}
    fields = set(stripe.checkout.Session.__annotations__) - {"OBJECT_NAME", "line_items"}
    missing = fields - set(session.to_dict())
    assert missing <= {
        "branding_settings",
        "presentment_details",
        "name_collection",
        "optional_items",
        "redirect_on_completion",
        "return_url",
        "tax_id_collection",
        "wallet_options",
        "adaptive_pricing",
        "collected_information",
        "currency_conversion",
        "customer_account",
        "integration_identifier",
        "managed_payments",
        "origin_context",
        "permissions",
        "allowed_payment_method_types",
        "excluded_payment_method_types",
    }, missing
    [item] = client.v1.checkout.sessions.line_items.list(session.id).data
    assert (item.object, item.quantity, item.amount_total) == ("item", 3, 1500)
    assert item.price.unit_amount == 500 and item.price.type == "one_time"
    expanded = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["line_items"]})
    assert expanded.line_items.data[0].id == item.id
    assert [s.id for s in client.v1.checkout.sessions.list().data] == [session.id]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        (
            {"mode": "payment", "line_items": [one_time()], "payment_method_types": ["card"]},
            "payment_method_types",
        ),
        ({"line_items": [one_time()]}, "mode"),
        ({"mode": "payment"}, "line_items"),
        ({"mode": "payment", "line_items": [{"price": "plan_missing"}]}, "line_items[0][price]"),
        ({"mode": "payment", "line_items": [one_time()], "customer": "cus_missing"}, "customer"),
        (
            {"mode": "payment", "line_items": [one_time()], "expires_at": int(time.time()) + 60},
            "expires_at",
        ),
        ({"mode": "subscription", "line_items": [one_time()]}, "line_items"),
        (
            {
                "mode": "payment",
                "line_items": [one_time()],
                "subscription_data": {"metadata": {"a": "b"}},
            },
            "subscription_data",
        ),
    ],
)
def test_what_stripe_refuses_is_a_400_naming_the_parameter(client, stripe_server, params, param):
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.checkout.sessions.create(params=params)
    assert refused.value.http_status == 400
    assert refused.value.param == param
    # Sent on purpose: a parameter the pinned version does not have is also recorded.
    for violation in stripe_server.violations():
        assert violation["path"] == "/v1/checkout/sessions"


def test_a_recurring_price_belongs_in_subscription_mode(client):
    client.v1.plans.create(
        params={
            "id": "plan_m",
            "amount": 900,
            "currency": "usd",
            "interval": "month",
            "product": {"name": "Monthly"},
        }
    )
    with pytest.raises(stripe.InvalidRequestError, match="recurring price"):
        client.v1.checkout.sessions.create(
            params={"mode": "payment", "line_items": [{"price": "plan_m", "quantity": 1}]}
        )
    session = client.v1.checkout.sessions.create(
        params={"mode": "subscription", "line_items": [{"price": "plan_m", "quantity": 1}]}
    )
    assert session.amount_total == 900
    assert session.payment_method_collection == "always"


def test_the_hosted_page_needs_no_key_but_the_api_does(client, stripe_server):
    session = client.v1.checkout.sessions.create(
        params={"mode": "payment", "line_items": [one_time()]}
    )
    assert requests.get(session.url, timeout=10).status_code == 200
    assert requests.get(f"{stripe_server.base}/c/pay/cs_test_nope", timeout=10).status_code == 404
    anonymous = requests.get(f"{stripe_server.base}/v1/checkout/sessions/{session.id}", timeout=10)
    assert anonymous.status_code == 401
    bad_card = requests.post(
        session.url,
        data={"cardnumber": "4242424242424241", "exp": "12/34", "cvc": "123"},
        timeout=10,
    )
    assert bad_card.status_code == 400 and "invalid" in bad_card.text


def test_sessions_past_their_expires_at_are_expired_by_the_sweep(client):
    """The sweep the server runs every second, run here on this process's own store."""
    from localstripe.resources import store

    from devstripe import checkout

    async def run() -> tuple[str, str, list]:
        store.clear()
        session = checkout.session_create(
            {"mode": "payment", "line_items": [one_time()]}, "http://127.0.0.1:1"
        )
        later = checkout.session_create(
            {"mode": "payment", "line_items": [one_time()]}, "http://127.0.0.1:1"
        )
        assert checkout.sessions_expire_due(now=session.expires_at - 1) == 0
        later.expires_at += 10
        assert checkout.sessions_expire_due(now=session.expires_at) == 1
        events = [
            v for k, v in store.items() if k.startswith("event:") and v.type.startswith("checkout.")
        ]
        return session.status, later.status, events

    try:
        first, second, events = asyncio.run(run())
    finally:
        from localstripe.resources import store

        store.clear()
    assert (first, second) == ("expired", "open")
    [event] = events
    assert event.type == "checkout.session.expired"
    assert event.api_version == stripe.api_version
    assert event.data["object"]["status"] == "expired"


def test_a_portal_session_for_a_customer(client):
    customer = client.v1.customers.create(params={"email": "a@example.com"})
    portal = client.v1.billing_portal.sessions.create(
        params={"customer": customer.id, "return_url": "https://shop.example/account"}
    )
    assert portal.object == "billing_portal.session"
    assert portal.customer == customer.id and portal.return_url == "https://shop.example/account"
    page = requests.get(portal.url, timeout=10)
    assert page.status_code == 200 and "a@example.com" in page.text
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.billing_portal.sessions.create(params={"customer": "cus_missing"})
    assert refused.value.param == "customer"


def test_a_test_clock_moves_only_forward(client):
    now = int(time.time())
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": now, "name": "t"})
    assert (clock.object, clock.status, clock.frozen_time) == (
        "test_helpers.test_clock",
        "ready",
        now,
    )
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": now - 1})
    assert refused.value.param == "frozen_time"
    moved = client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": now + 60})
    assert moved.status == "advancing"
    assert client.v1.test_helpers.test_clocks.retrieve(clock.id).frozen_time == now + 60
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.create(params={"test_clock": "clock_missing"})
    deleted = client.v1.test_helpers.test_clocks.delete(clock.id)
    assert deleted.deleted is True


def test_a_declined_card_on_a_subscription_page_leaves_no_subscription(client):
    client.v1.plans.create(
        params={
            "id": "plan_d",
            "amount": 900,
            "currency": "usd",
            "interval": "month",
            "product": {"name": "Monthly"},
        }
    )
    customer = client.v1.customers.create(params={"email": "d@example.com"})
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer": customer.id,
            "line_items": [{"price": "plan_d", "quantity": 1}],
        }
    )
    form = {"cardnumber": "4000000000000341", "exp": "12/34", "cvc": "123"}
    declined = requests.post(session.url, data=form, timeout=10)
    assert declined.status_code == 402 and "declined" in declined.text
    listed = client.v1.subscriptions.list(params={"customer": customer.id, "status": "all"})
    assert listed.data == []
    paid = requests.post(
        session.url,
        data={**form, "cardnumber": "4242424242424242"},
        timeout=10,
        allow_redirects=False,
    )
    assert paid.status_code == 200  # no success_url: Checkout's own "paid" page
    [subscription] = client.v1.subscriptions.list(params={"customer": customer.id}).data
    assert subscription.status == "active"
    assert client.v1.checkout.sessions.retrieve(session.id).subscription == subscription.id


@pytest.mark.parametrize(
    ("iban", "outcome"),
    [
        ("DE89 3704 0044 0532 0130 00", "checkout.session.async_payment_succeeded"),
        ("DE62370400440532013001", "checkout.session.async_payment_failed"),
    ],
)
def test_sepa_debit_completes_unpaid_then_settles_later(client, iban, outcome):
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [
                {**one_time(), "price_data": {**one_time()["price_data"], "currency": "eur"}}
            ],
        }
    )
    assert "SEPA Direct Debit" in requests.get(session.url, timeout=10).text
    done = requests.post(
        session.url + "/sepa", data={"iban": iban, "name": "Jenny Rosen"}, timeout=10
    )
    assert done.status_code == 200
    completed = client.v1.checkout.sessions.retrieve(session.id)
    assert (completed.status, completed.payment_status) == ("complete", "unpaid")

    def events() -> list[str]:
        return [
            e.type
            for e in client.v1.events.list(params={"limit": 100}).data
            if e.type.startswith("checkout.") and e.data.object.id == session.id
        ]

    deadline = time.monotonic() + 10
    while outcome not in events() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sorted(events()) == sorted(["checkout.session.completed", outcome])
    paid = outcome.endswith("succeeded")
    final = client.v1.checkout.sessions.retrieve(session.id)
    assert final.payment_status == ("paid" if paid else "unpaid")
    intent = client.v1.payment_intents.retrieve(final.payment_intent)
    assert intent.status == ("succeeded" if paid else "requires_payment_method")


def test_sepa_is_offered_only_for_euros(client):
    session = client.v1.checkout.sessions.create(
        params={"mode": "payment", "line_items": [one_time()]}
    )
    assert "SEPA" not in requests.get(session.url, timeout=10).text
