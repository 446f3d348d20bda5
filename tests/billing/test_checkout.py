"""Checkout Sessions, the request and the events: the session-create call is faked at the
Stripe SDK boundary (the gateway still builds the real request), and the session events
are shaped from Stripe's fixtures and signed. The whole flow against the development
Stripe's Checkout is in test_checkout_e2e.py."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from billing import gateway
from billing.metadata import metadata_marker
from billing.models import Fulfilment, Order, Refund, StripeEvent
from billing.services.checkout import redirect_urls_check
from billing.services.events import events_drain
from credits.selectors import credits_balance_get
from purchasables import hookimpl
from purchasables.registry import registry
from purchasables.types import PurchaseType, Quote
from tests.billing.conftest import deliver, post_webhook
from tests.billing.factories import OrderFactory, PaymentFactory
from tests.billing.test_refunds import SoldOut
from tests.stripe_events import event, fixture, new_id, payment_intent

pytestmark = pytest.mark.django_db

BUY_100 = {"is_credit_purchase": True, "credit_amount": 100, "payment_type": "checkout"}


class FakeSessions:
    """Stands in for Stripe's `/v1/checkout/sessions`, answering with the fixture's shape."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def create(self, params: dict[str, Any], options: dict[str, Any]):
        self.calls.append({"params": params, "options": options})
        session = fixture("checkout.session")
        session.update(
            id=new_id("cs_test"),
            url="https://checkout.stripe.com/c/pay/cs_test_fake",
            mode=params["mode"],
            metadata=params["metadata"],
            client_reference_id=params["client_reference_id"],
            payment_intent=None,
        )
        return type("StripeObject", (), {"to_dict": lambda self: session})()


@pytest.fixture
def fake_checkout(monkeypatch) -> FakeSessions:
    sessions = FakeSessions()
    client = type("V1", (), {})()
    client.v1 = type("Namespace", (), {})()
    client.v1.checkout = type("Namespace", (), {})()
    client.v1.checkout.sessions = sessions
    monkeypatch.setattr(gateway.checkout, "_client", lambda: client)
    return sessions


def test_checkout_where_the_stripe_api_has_none_is_501_with_a_way_forward(
    api, stripe_without_the_route
):
    resp = api.post("/payments/create/", BUY_100)
    assert resp.status_code == 501
    error = resp.json()
    assert error["code"] == "feature_unavailable"
    assert "STRIPE_SECRET_KEY" in error["message"]
    order = Order.objects.get(pk=error["extra"]["order_id"])
    assert order.status == Order.Status.CANCELED


def test_checkout_creates_a_session_with_the_metadata_on_both_objects(api, user, fake_checkout):
    resp = api.post("/payments/create/", BUY_100)
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["payment_type"] == "checkout"
    assert body["checkout_url"] == "https://checkout.stripe.com/c/pay/cs_test_fake"
    assert body["client_secret"] is None
    order = Order.objects.get(pk=body["order_id"])
    [call] = fake_checkout.calls
    params = call["params"]
    assert params["metadata"] == order.metadata
    assert params["payment_intent_data"] == {"metadata": order.metadata}
    assert params["client_reference_id"] == str(order.pk)
    assert params["line_items"][0]["price_data"]["unit_amount"] == 1000
    assert params["success_url"].startswith("http://127.0.0.1:8000/")
    key = call["options"]["idempotency_key"]
    assert key.startswith("tg-") and key.endswith(f"-order-{order.pk}-checkout")
    assert order.stripe_checkout_session_id.startswith("cs_test_")


@pytest.mark.parametrize(
    "urls",
    [
        {"success_url": "https://evil.example/steal"},
        {"cancel_url": "http://127.0.0.1:9999/other-port"},
        # Origins that sort before the frontend's are other origins all the same.
        {"success_url": "http://127.0.0.1/default-port"},
        {"cancel_url": "http://10.0.0.1:8000/other-host"},
        {"success_url": "javascript:alert(1)"},
        {"success_url": "//evil.example/x"},
    ],
)
def test_redirects_off_the_frontend_origin_are_422_and_nothing_is_created(api, fake_checkout, urls):
    resp = api.post("/payments/create/", {**BUY_100, **urls})
    assert resp.status_code == 422
    assert resp.json()["extra"]["allowed_origin"] == "http://127.0.0.1:8000"
    assert not Order.objects.exists()
    assert fake_checkout.calls == []


def test_an_idempotent_replay_answers_the_same_checkout_page(api, fake_checkout):
    first = api.post("/payments/create/", BUY_100, headers={"Idempotency-Key": "co-1"})
    again = api.post("/payments/create/", BUY_100, headers={"Idempotency-Key": "co-1"})
    assert again.status_code == 200
    assert again.json()["checkout_url"] == first.json()["checkout_url"]
    assert len(fake_checkout.calls) == 1


# --- session events -------------------------------------------------------------------


def checkout_order(api) -> Order:
    return Order.objects.get(pk=api.post("/payments/create/", BUY_100).json()["order_id"])


def session_event(order: Order, type: str, payment_status: str, **kw) -> dict:
    session = fixture("checkout.session")
    session.update(
        id=order.stripe_checkout_session_id,
        status="complete",
        payment_status=payment_status,
        amount_total=order.amount,
        currency=order.currency,
        metadata=order.metadata,
        client_reference_id=str(order.pk),
        payment_intent=new_id("pi"),
    )
    session.update(kw)
    return event(type, session)


def test_completed_and_paid_fulfils_once_with_its_payment_intent_event(api, user, fake_checkout):
    order = checkout_order(api)
    completed = session_event(order, "checkout.session.completed", "paid")
    post_webhook(completed)
    post_webhook(completed)
    intent_id = completed["data"]["object"]["payment_intent"]
    pi = payment_intent(id=intent_id, amount=order.amount, metadata=order.metadata)
    post_webhook(event("payment_intent.succeeded", pi))
    events_drain()
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert Fulfilment.objects.filter(order=order).count() == 1
    assert credits_balance_get(user_id=user.pk) == 100
    assert order.payments.get().stripe_payment_intent_id == intent_id


def test_an_async_payment_waits_then_succeeds(api, user, fake_checkout):
    order = checkout_order(api)
    post_webhook(session_event(order, "checkout.session.completed", "unpaid"))
    events_drain()
    order.refresh_from_db()
    assert order.status == Order.Status.PROCESSING
    assert credits_balance_get(user_id=user.pk) == 0
    post_webhook(session_event(order, "checkout.session.async_payment_succeeded", "paid"))
    events_drain()
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert credits_balance_get(user_id=user.pk) == 100


def test_an_async_payment_that_fails_fails_the_order(api, user, fake_checkout):
    order = checkout_order(api)
    post_webhook(session_event(order, "checkout.session.completed", "unpaid"))
    post_webhook(session_event(order, "checkout.session.async_payment_failed", "unpaid"))
    events_drain()
    order.refresh_from_db()
    assert order.status == Order.Status.FAILED
    assert order.failure_code == "checkout_payment_failed"
    assert order.failure_message == "The delayed payment failed."
    assert credits_balance_get(user_id=user.pk) == 0


def test_a_late_async_failure_after_paid_leaves_the_order_paid(api, user, fake_checkout):
    """The order's states only move forward: news of a failure that Stripe sends after the
    success (or that arrives after it) changes nothing, whatever order events come in."""
    order = checkout_order(api)
    completed = session_event(order, "checkout.session.completed", "unpaid")
    succeeded = session_event(order, "checkout.session.async_payment_succeeded", "paid")
    failed = session_event(order, "checkout.session.async_payment_failed", "unpaid")
    post_webhook(completed)
    post_webhook(succeeded)
    events_drain()
    post_webhook(failed)
    events_drain()

    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert (order.failure_code, order.failure_message) == ("", "")
    # What staff read on each event.
    notes = [
        StripeEvent.objects.get(stripe_id=e["id"]).last_error
        for e in (completed, succeeded, failed)
    ]
    assert notes == [
        "order is now processing",
        "order is now paid",
        "order is paid; failed is stale",
    ]
    assert Fulfilment.objects.filter(order=order).count() == 1
    assert credits_balance_get(user_id=user.pk) == 100


@pytest.mark.parametrize(
    "paid",
    [
        {"amount_total": 1},
        {"amount_total": 1001},
        # Stripe's adaptive pricing may show the buyer another currency.
        {"currency": "eur"},
        {"currency": "zar"},
    ],
    ids=["less", "more", "eur", "zar"],
)
def test_a_session_paid_for_the_wrong_amount_is_not_fulfilled(api, fake_checkout, paid):
    order = checkout_order(api)
    assert (order.amount, order.currency) == (1000, "usd")
    post_webhook(session_event(order, "checkout.session.completed", "paid", **paid))
    events_drain()
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
    assert not Fulfilment.objects.exists()


@pytest.mark.parametrize(
    ("type", "payment_status", "status"),
    [
        ("checkout.session.completed", "unpaid", Order.Status.PROCESSING),
        ("checkout.session.async_payment_failed", "unpaid", Order.Status.FAILED),
        ("checkout.session.expired", "unpaid", Order.Status.CANCELED),
    ],
    ids=["waiting", "failed", "expired"],
)
def test_news_short_of_a_payment_moves_the_order_whatever_the_session_showed(
    api, fake_checkout, type, payment_status, status
):
    """Only money received must fit the order: a session that has taken none (its payment
    waits, failed, or it expired) moves its order all the same, even shown in another
    currency for another amount."""
    order = checkout_order(api)
    news = session_event(order, type, payment_status, amount_total=1190, currency="eur")
    post_webhook(news)
    events_drain()
    order.refresh_from_db()
    assert order.status == status
    assert StripeEvent.objects.get(stripe_id=news["id"]).status == StripeEvent.Status.PROCESSED
    assert not Fulfilment.objects.exists()


class Held:
    """A purchase type that holds stock on order and records what it gives back."""

    released: list[tuple[int, str]] = []

    @hookimpl
    def tollgate_purchase_types(self):
        return [PurchaseType(name="held", order_type="direct", label="Held")]

    @hookimpl
    def tollgate_quote(self, request):
        return Quote(amount=700, currency="usd", description="held")

    @hookimpl
    def tollgate_reserve(self, order):
        pass

    @hookimpl
    def tollgate_release(self, order, reason):
        self.released.append((order.order_id, reason))


def test_an_expired_session_cancels_the_order_and_releases_its_hold(api, fake_checkout):
    plugin = Held()
    plugin.released = []
    with registry.plugin_registered(plugin, name="held"):
        body = api.post("/payments/create/", {"purchase_type": "held", "payment_type": "checkout"})
        order = Order.objects.get(pk=body.json()["order_id"])
        expired = session_event(order, "checkout.session.expired", "unpaid", payment_intent=None)
        expired["data"]["object"]["status"] = "expired"
        post_webhook(expired)
        post_webhook(expired)
        events_drain()
        order.refresh_from_db()
        assert order.status == Order.Status.CANCELED
        assert plugin.released == [(order.pk, "canceled")]


def test_a_checkout_order_that_cannot_be_delivered_is_refunded_automatically(api, fake_checkout):
    with registry.plugin_registered(SoldOut(), name="sold-out"):
        body = api.post(
            "/payments/create/", {"purchase_type": "sold-out", "payment_type": "checkout"}
        )
        order = Order.objects.get(pk=body.json()["order_id"])
        completed = session_event(order, "checkout.session.completed", "paid")
        stored = deliver(completed)
        assert stored.status == StripeEvent.Status.PROCESSED, stored.last_error
        order.refresh_from_db()
        assert order.status == Order.Status.PAID
        assert order.failure_message == "The last seat was taken while you paid."
        [refund] = Refund.objects.filter(order=order)
        assert (refund.source, refund.amount, refund.reverses_order) == ("automatic", 1500, True)
        assert (
            refund.payment.stripe_payment_intent_id == completed["data"]["object"]["payment_intent"]
        )


def test_the_default_return_pages_are_pages_the_web_client_serves(client, settings):
    success, cancel = redirect_urls_check(success_url=None, cancel_url=None)
    for url in (success, cancel):
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}" == settings.FRONTEND_URL.rstrip("/")
        assert (
            client.get(parts.path + ("?" + parts.query if parts.query else "")).status_code == 200
        )
    assert "checkout=success" in success and "checkout=canceled" in cancel


def test_checkout_with_stripe_unreachable_is_502_and_the_order_keeps_the_error(api, settings, db):
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens on the discard port
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    resp = api.post("/payments/create/", BUY_100)
    assert resp.status_code == 502, resp.content
    error = resp.json()
    assert error["code"] == "payment_gateway_error"
    order = Order.objects.get(pk=error["extra"]["order_id"])
    assert order.status == Order.Status.PENDING
    assert "failed to" in order.gateway_error
    assert not order.stripe_checkout_session_id


def unrecorded_session_event(order: Order, **kw) -> dict:
    """A paid session Stripe made for `order` whose id the order never stored (the answer
    to the create was lost): it carries the order's metadata, and no reference."""
    return session_event(
        order,
        "checkout.session.completed",
        "paid",
        id=new_id("cs_test"),
        client_reference_id=None,
        customer=None,
        **kw,
    )


def test_a_session_the_order_never_stored_pays_it_by_its_marker_and_metadata(user):
    order = OrderFactory(user=user, payment_type=Order.PaymentType.CHECKOUT)
    post_webhook(unrecorded_session_event(order))
    events_drain()
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert Fulfilment.objects.filter(order=order).count() == 1
    assert credits_balance_get(user_id=user.pk) == 100


def test_a_session_naming_an_order_it_does_not_fit_pays_nothing(user, other_user):
    order = OrderFactory(user=user, payment_type=Order.PaymentType.CHECKOUT)
    theirs = {**order.metadata, "user_id": str(other_user.pk)}
    post_webhook(unrecorded_session_event(order, metadata=theirs))
    events_drain()
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
    assert not Fulfilment.objects.exists()
    assert credits_balance_get(user_id=user.pk) == credits_balance_get(user_id=other_user.pk) == 0


@pytest.mark.parametrize("order_id", ["not-a-number", "424242"])
def test_a_session_naming_no_order_of_ours_pays_nothing(user, order_id):
    order = OrderFactory(user=user, payment_type=Order.PaymentType.CHECKOUT)
    event = unrecorded_session_event(order, metadata={**order.metadata, "order_id": order_id})
    post_webhook(event)
    events_drain()
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
    assert not Fulfilment.objects.exists()


def test_a_retry_of_a_checkout_that_never_opened_its_session_is_409_and_opens_none(
    api, settings, db
):
    """Stripe was unreachable when the first request asked for the session: the retry
    with the same key cannot give the buyer a checkout page, and says so."""
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens on the discard port
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    headers = {"Idempotency-Key": "co-unreachable"}
    first = api.post("/payments/create/", BUY_100, headers=headers)
    assert first.status_code == 502, first.content
    again = api.post("/payments/create/", BUY_100, headers=headers)
    assert again.status_code == 409, again.content
    assert again.json()["code"] == "idempotency_conflict"
    assert again.json()["extra"]["order_id"] == first.json()["extra"]["order_id"]
    assert "did not open a Checkout Session" in again.json()["message"]
    order = Order.objects.get()
    assert order.status == Order.Status.PENDING
    assert not order.stripe_checkout_session_id


@pytest.mark.parametrize("type", ["checkout.session.completed", "checkout.session.expired"])
def test_a_subscription_started_on_checkout_leaves_its_session_events_to_its_invoices(user, type):
    """A subscription's Checkout Session pays no order: its invoice and subscription events
    carry the payment, and the session's event says so to staff."""
    pending = OrderFactory(user=user, payment_type=Order.PaymentType.CHECKOUT)
    session = fixture("checkout.session")
    session.update(
        id=new_id("cs_test"),
        mode="subscription",
        status="complete" if type.endswith("completed") else "expired",
        payment_status="paid" if type.endswith("completed") else "unpaid",
        amount_total=pending.amount,
        currency="usd",
        metadata={
            "user_id": str(user.pk),
            "subscription_id": "1",
            "purchase_type": "subscription",
            "plan_id": "1",
            "order_type": "subscription",
            **metadata_marker(),
        },
        client_reference_id="subscription-1",
        payment_intent=None,
        subscription=new_id("sub"),
    )
    delivered = event(type, session)
    stored = deliver(delivered)
    assert stored.status == StripeEvent.Status.PROCESSED
    assert stored.last_error == (
        "subscription checkout: its invoices and subscription events carry it"
    )
    assert Order.objects.get(pk=pending.pk).status == Order.Status.PENDING
    assert not Fulfilment.objects.exists()


def test_checkout_with_a_payment_method_is_422_and_nothing_is_created(api, fake_checkout):
    resp = api.post("/payments/create/", {**BUY_100, "payment_method_id": "pm_card_visa"})
    assert resp.status_code == 422, resp.content
    assert "Checkout collects the card" in resp.json()["message"]
    assert not Order.objects.exists()
    assert fake_checkout.calls == []


@pytest.mark.parametrize("paid_order", ["earlier", "later"])
def test_a_session_whose_payment_intent_is_another_orders_pays_nothing(
    api, user, fake_checkout, paid_order
):
    earlier, later = checkout_order(api), checkout_order(api)
    order, other = (earlier, later) if paid_order == "earlier" else (later, earlier)
    theirs = PaymentFactory(order=other)
    post_webhook(
        session_event(
            order,
            "checkout.session.completed",
            "paid",
            payment_intent=theirs.stripe_payment_intent_id,
        )
    )
    events_drain()
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
    assert not Fulfilment.objects.exists()
    assert credits_balance_get(user_id=user.pk) == 0


def test_a_session_told_after_its_payment_intent_is_its_orders_at_any_order_id(user):
    """Stripe may tell the PaymentIntent's success before the session's completion. The
    session then finds its payment stored already, for its own order, whose id may be of
    any size (a live shop's run to the millions)."""
    order = OrderFactory(
        id=4_000_001,
        user=user,
        payment_type=Order.PaymentType.CHECKOUT,
        stripe_checkout_session_id=new_id("cs_test"),
    )
    completed = session_event(order, "checkout.session.completed", "paid")
    intent_id = completed["data"]["object"]["payment_intent"]
    pi = payment_intent(id=intent_id, amount=order.amount, metadata=order.metadata)
    post_webhook(event("payment_intent.succeeded", pi))
    events_drain()
    stored = deliver(completed)
    assert stored.status == StripeEvent.Status.PROCESSED, stored.last_error
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert order.payments.get().stripe_payment_intent_id == intent_id
    assert Fulfilment.objects.filter(order=order).count() == 1
    assert credits_balance_get(user_id=user.pk) == 100


def test_a_delayed_payment_is_not_received_until_it_succeeds(api, user, fake_checkout):
    order = checkout_order(api)
    completed = session_event(order, "checkout.session.completed", "unpaid")
    post_webhook(completed)
    events_drain()
    payment = order.payments.get()
    assert payment.stripe_payment_intent_id == completed["data"]["object"]["payment_intent"]
    assert payment.status != "succeeded" and payment.amount_received == 0
    post_webhook(session_event(order, "checkout.session.async_payment_failed", "unpaid"))
    events_drain()
    payment.refresh_from_db()
    assert payment.status != "succeeded" and payment.amount_received == 0
    assert Order.objects.get(pk=order.pk).status == Order.Status.FAILED
