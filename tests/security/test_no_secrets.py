"""No secret in any answer or log line, with every logger at DEBUG.

The main flows run against localstripe (a token, orders paid and declined,
cards, a signed webhook, a staff refund, the common errors) while every
response body and every log record is kept. Afterwards none may contain the
Stripe secret key, a webhook secret or a raw card number; no log line may hold
a client secret (whoever reads logs is not the customer); and no response to one
user may hold another user's client secret.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from billing.models import Payment
from billing.services.events import events_drain
from tests.billing.conftest import post_webhook
from tests.billing.test_cards import new_card
from tests.stripe_events import event, fixture, new_id, payment_intent, sign

pytestmark = pytest.mark.django_db

CARD_NUMBERS = ("4242424242424242", "4000000000000341", "4000002500003155")
# A client secret as Stripe makes them: `pi_…_secret_…`, `seti_…_secret_…`.
CLIENT_SECRET = re.compile(r"\b(?:pi|seti|pm)_[A-Za-z0-9]+_secret_[A-Za-z0-9]+")


class Recorder:
    """Every response body, tagged with the user it went to."""

    def __init__(self) -> None:
        self.responses: list[tuple[str, bytes]] = []

    def keep(self, who: str, resp) -> Any:
        self.responses.append((who, resp.content))
        return resp


@pytest.fixture
def record(caplog) -> Recorder:
    caplog.set_level(logging.DEBUG)
    return Recorder()


def log_lines(caplog) -> list[str]:
    """Each record as a handler would write it, with its extra fields and traceback."""
    lines = []
    for record in caplog.records:
        lines.append(record.getMessage())
        lines.append(repr({k: v for k, v in vars(record).items() if k not in ("msg", "args")}))
        if record.exc_info:
            lines.append(logging.Formatter().formatException(record.exc_info))
    lines.append(caplog.text)
    return lines


def secrets_in(text: str) -> list[str]:
    found = [s for s in (settings.STRIPE_SECRET_KEY, *settings.STRIPE_WEBHOOK_SECRETS) if s in text]
    return found + [n for n in CARD_NUMBERS if n in text]


def run_the_main_flows(rec: Recorder, api, other_api, staff_api, user, stripe_server) -> None:
    clients = {"owner": api, "other": other_api, "staff": staff_api}

    def call(who: str, method: str, path: str, body: Any = None, **kw):
        client = clients[who]
        resp = client.get(path) if method == "GET" else client.post(path, body, **kw)
        return rec.keep(who, resp)

    # Tokens: a good one and a wrong password.
    for password in ("correct-horse-battery", "wrong"):
        rec.keep(
            "anon",
            Client().post(
                "/api/v1/auth/token/",
                {"username": user.username, "password": password},
                content_type="application/json",
            ),
        )
    # Orders: unpaid (a client secret to finish in the browser), paid, declined,
    # a card number sent where a payment method id belongs, a bad amount.
    buy = {"is_credit_purchase": True, "credit_amount": 10}
    unpaid = call("owner", "POST", "/payments/create/", buy, headers={"Idempotency-Key": "k1"})
    assert unpaid.status_code == 201, unpaid.content
    # Another user reusing the owner's Idempotency-Key gets their own order.
    theirs = call("other", "POST", "/payments/create/", buy, headers={"Idempotency-Key": "k1"})
    assert theirs.json()["order_id"] != unpaid.json()["order_id"]
    paid = call("owner", "POST", "/payments/create/", {**buy, "payment_method_id": "pm_card_visa"})
    assert paid.json()["status"] == "paid", paid.content
    declined = call(
        "owner",
        "POST",
        "/payments/create/",
        {**buy, "payment_method_id": new_card(CARD_NUMBERS[1])},
    )
    assert declined.status_code == 402, declined.content
    for number in CARD_NUMBERS[:2]:
        pan = call("owner", "POST", "/payments/create/", {**buy, "payment_method_id": number})
        assert pan.status_code == 422, pan.content
    call("owner", "POST", "/payments/create/", {**buy, "amount": "1.001"})
    # Cards: a SetupIntent (its client secret is the owner's), then the card list.
    setup = call("owner", "POST", "/payments/methods/setup/")
    assert setup.status_code == 201, setup.content
    call("owner", "GET", "/payments/methods/")
    # Reads, by the owner and by everyone else.
    for who in clients:
        call(who, "GET", "/payments/orders/")
        call(who, "GET", f"/payments/orders/{unpaid.json()['order_id']}/")
        call(who, "GET", "/me/export/")
    # A staff refund, and a refund the owner may not make.
    call("owner", "POST", f"/payments/orders/{paid.json()['order_id']}/refunds/", {})
    refund = call("staff", "POST", f"/payments/orders/{paid.json()['order_id']}/refunds/", {})
    assert refund.status_code == 201, refund.content
    # Webhooks: a signed event for the unpaid order, one with a bad signature, processed.
    payment = Payment.objects.get(stripe_payment_intent_id=unpaid.json()["payment_intent_id"])
    obj = payment_intent(
        id=payment.stripe_payment_intent_id,
        amount=payment.amount,
        metadata=payment.order.metadata,
        client_secret=payment.client_secret,
    )
    rec.keep("stripe", post_webhook(event("payment_intent.succeeded", obj)))
    charge = fixture("charge")
    charge.update(id=new_id("ch"), payment_method_details={"card": {"last4": "4242"}})
    bad = event("charge.succeeded", charge)
    rec.keep("stripe", post_webhook(bad, secret="whsec_not_ours"))
    body = b'{"id": "evt_1"}'
    rec.keep(
        "stripe",
        Client().post(
            "/api/v1/payments/webhook/",
            body,
            content_type="application/json",
            headers={"Stripe-Signature": sign(body) + "0"},
        ),
    )
    events_drain()


def test_no_secret_reaches_a_response_or_a_log_line(
    record, caplog, api, other_api, staff_api, user, stripe_server
):
    run_the_main_flows(record, api, other_api, staff_api, user, stripe_server)
    assert len(caplog.records) > 20, "the flows logged almost nothing: is logging captured?"

    owners_secrets = set(
        Payment.objects.filter(order__user=user)
        .exclude(client_secret="")
        .values_list("client_secret", flat=True)
    )
    assert owners_secrets, "the owner has no client secret to leak: the test proves nothing"
    for who, content in record.responses:
        text = content.decode(errors="replace")
        assert not secrets_in(text), (who, secrets_in(text), text[:500])
        if who != "owner":
            leaked = owners_secrets & set(CLIENT_SECRET.findall(text))
            assert not leaked, f"{who} was answered the owner's client secret"

    for line in log_lines(caplog):
        assert not secrets_in(line), (secrets_in(line), line[:500])
        assert not CLIENT_SECRET.findall(line), f"a client secret in the logs: {line[:500]}"
