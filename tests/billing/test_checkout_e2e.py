"""Stripe Checkout end to end: Tollgate's API over HTTP, the development Stripe's Checkout
Session and its hosted page (posted to as the customer's browser would), its signed
webhooks delivered back, and the worker's drain task."""

from __future__ import annotations

import pytest
import requests
import stripe
from django.conf import settings

from billing.models import Fulfilment, Order, Refund, StripeEvent
from billing.services.events import events_drain
from credits.models import CreditTransaction
from credits.selectors import credits_balance_get
from platform_core.auth import api_token_create
from purchasables import hookimpl
from purchasables.registry import registry
from purchasables.types import PurchaseType, Quote
from tests.billing.conftest import eventually, wait_for_event
from tests.billing.test_e2e_payments import Http
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BUY_100 = {"is_credit_purchase": True, "credit_amount": 100, "payment_type": "checkout"}


@pytest.fixture
def http(live_server, user) -> Http:
    raw, _ = api_token_create(username=user.username, password=PASSWORD)
    return Http(live_server.url, raw)


def stripe_client() -> stripe.StripeClient:
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": settings.STRIPE_API_BASE},
        stripe_version=stripe.api_version,
    )


def card_form(number: str) -> dict[str, str]:
    return {"email": "buyer@example.com", "cardnumber": number, "exp": "12 / 34", "cvc": "123"}


def start_checkout(http: Http, body: dict | None = None) -> tuple[Order, str]:
    resp = http.post(
        "/payments/create/",
        {
            **(body or BUY_100),
            "success_url": f"{settings.FRONTEND_URL}/orders/?session={{CHECKOUT_SESSION_ID}}",
            "cancel_url": f"{settings.FRONTEND_URL}/orders/?checkout=canceled",
        },
    )
    assert resp.status_code == 201, resp.text
    out = resp.json()
    assert out["payment_type"] == "checkout"
    order = Order.objects.get(pk=out["order_id"])
    assert out["checkout_url"] == order.checkout_url
    assert out["checkout_url"].startswith(settings.STRIPE_API_BASE + "/c/pay/cs_test_")
    return order, out["checkout_url"]


def pay(url: str, number: str) -> requests.Response:
    return requests.post(url, data=card_form(number), allow_redirects=False, timeout=30)


def test_checkout_paid_with_4242_pays_and_fulfils_the_order_once(http, live_stripe, user):
    order, url = start_checkout(http)
    page = requests.get(url, timeout=30)
    assert page.status_code == 200
    assert "10.00 USD" in page.text
    assert f"href='{settings.FRONTEND_URL}/orders/?checkout=canceled'" in page.text

    paid = pay(url, "4242 4242 4242 4242")
    assert paid.status_code == 303
    session_id = order.stripe_checkout_session_id
    assert paid.headers["Location"] == f"{settings.FRONTEND_URL}/orders/?session={session_id}"

    session = stripe_client().v1.checkout.sessions.retrieve(session_id)
    assert (session.status, session.payment_status) == ("complete", "paid")
    intent = stripe_client().v1.payment_intents.retrieve(session.payment_intent)
    assert intent.metadata.to_dict() == order.metadata  # payment_intent_data.metadata

    completed = wait_for_event("checkout.session.completed", session_id)
    assert completed.api_version == stripe.api_version
    wait_for_event("payment_intent.succeeded", session.payment_intent)
    events_drain()
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert Fulfilment.objects.filter(order=order).count() == 1
    assert CreditTransaction.objects.filter(account__user=user).count() == 1
    assert credits_balance_get(user_id=user.pk) == 100
    assert http.get(f"/payments/orders/{order.pk}/").json()["status"] == "paid"
    # Paying again on the completed session only sends the customer back.
    again = pay(url, "4242424242424242")
    assert again.status_code == 303
    assert StripeEvent.objects.filter(type="checkout.session.completed").count() == 1


def test_a_declined_card_then_another_card_pays_once(http, live_stripe, user):
    order, url = start_checkout(http)
    declined = pay(url, "4000 0000 0000 0002")
    assert declined.status_code == 402
    assert "declined" in declined.text
    assert 'name="cardnumber"' in declined.text  # the customer may try another card
    session_id = order.stripe_checkout_session_id
    intent_id = stripe_client().v1.checkout.sessions.retrieve(session_id).payment_intent
    wait_for_event("payment_intent.payment_failed", intent_id)

    assert pay(url, "4242424242424242").status_code == 303
    wait_for_event("checkout.session.completed", session_id)
    wait_for_event("payment_intent.succeeded", intent_id)
    events_drain()
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert Fulfilment.objects.filter(order=order).count() == 1
    assert credits_balance_get(user_id=user.pk) == 100


def test_3d_secure_on_the_page_completes_the_payment(http, live_stripe, user):
    order, url = start_checkout(http)
    challenge = pay(url, "4000 0025 0000 3155")
    assert challenge.status_code == 200
    assert "3-D Secure" in challenge.text
    failed = requests.post(url + "/3ds", data={"result": "fail"}, timeout=30)
    assert failed.status_code == 402
    assert "unable to authenticate" in failed.text
    assert pay(url, "4000002500003155").status_code == 200
    done = requests.post(
        url + "/3ds", data={"result": "complete"}, allow_redirects=False, timeout=30
    )
    assert done.status_code == 303
    wait_for_event("checkout.session.completed", order.stripe_checkout_session_id)
    events_drain()
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert credits_balance_get(user_id=user.pk) == 100


class Held:
    """A purchase type that holds a seat on order and records what it gives back."""

    def __init__(self) -> None:
        self.released: list[tuple[int, str]] = []

    @hookimpl
    def tollgate_purchase_types(self):
        return [PurchaseType(name="held", order_type="direct", label="Held")]

    @hookimpl
    def tollgate_quote(self, request):
        return Quote(amount=700, currency="usd", description="held seat")

    @hookimpl
    def tollgate_reserve(self, order):
        pass

    @hookimpl
    def tollgate_release(self, order, reason):
        self.released.append((order.order_id, reason))


def test_an_abandoned_session_expires_and_releases_its_hold(http, live_stripe, user):
    plugin = Held()
    with registry.plugin_registered(plugin, name="held"):
        order, url = start_checkout(http, {"purchase_type": "held", "payment_type": "checkout"})
        assert requests.get(url, timeout=30).status_code == 200  # opened, then abandoned
        session_id = order.stripe_checkout_session_id
        expired = stripe_client().v1.checkout.sessions.expire(session_id)
        assert expired.status == "expired"
        wait_for_event("checkout.session.expired", session_id)
        events_drain()
        order.refresh_from_db()
        assert order.status == Order.Status.CANCELED
        assert plugin.released == [(order.pk, "canceled")]
        assert requests.get(url, timeout=30).status_code == 410  # the page is gone
        assert pay(url, "4242424242424242").status_code == 410


def test_a_payment_landing_after_the_session_expired_is_refunded(http, live_stripe, user):
    plugin = Held()
    with registry.plugin_registered(plugin, name="held"):
        order, _url = start_checkout(http, {"purchase_type": "held", "payment_type": "checkout"})
        session_id = order.stripe_checkout_session_id
        stripe_client().v1.checkout.sessions.expire(session_id)
        wait_for_event("checkout.session.expired", session_id)
        events_drain()
        order.refresh_from_db()
        assert order.status == Order.Status.CANCELED

        # A payment for the order that lands anyway (a race with the expiry) is given back.
        client = stripe_client()
        intent = client.v1.payment_intents.create(
            params={
                "amount": order.amount,
                "currency": order.currency,
                "metadata": order.metadata,
                "payment_method": "pm_card_visa",
                "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            }
        )
        client.v1.payment_intents.confirm(intent.id)
        wait_for_event("payment_intent.succeeded", intent.id)
        events_drain()
        order.refresh_from_db()
        assert order.status == Order.Status.CANCELED
        assert not Fulfilment.objects.filter(order=order).exists()
        eventually(
            lambda: Refund.objects.filter(
                order=order, payment__stripe_payment_intent_id=intent.id
            ).exists(),
            timeout=5,
        )
        assert plugin.released == [(order.pk, "canceled")]
