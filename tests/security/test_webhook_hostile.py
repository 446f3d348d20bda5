"""Hostile webhook deliveries: refused with a 4xx before anything is stored.

tests/billing/test_webhooks.py already covers a missing, forged, stale,
wrong-secret or altered signature, a new timestamp on an old signature, a
non-UTF-8 body, a signed body that is not an event, and an unknown event type.
This file adds what an attacker tries next: oversized bodies, signed non-JSON,
a replay of an old capture re-timestamped, signature-header tricks, and
unknown or odd event types that Stripe may genuinely send.
"""

from __future__ import annotations

import json
import time

import pytest
from django.test import Client
from django_q.models import OrmQ

from billing.api.webhooks import WEBHOOK_MAX_BYTES
from billing.models import StripeEvent
from billing.services.events import events_drain
from tests.billing.conftest import WEBHOOK_PATH, post_webhook
from tests.stripe_events import PRIMARY_SECRET, encode, event, new_id, sign

pytestmark = pytest.mark.django_db


def deliver(body: bytes, header: str | None, content_type: str = "application/json"):
    headers = {"Stripe-Signature": header} if header is not None else {}
    return Client().post(WEBHOOK_PATH, body, content_type=content_type, headers=headers)


def assert_refused(resp, status: int = 400, code: str = "bad_signature") -> None:
    assert resp.status_code == status, resp.content
    assert resp["Content-Type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"code", "message", "extra"}
    assert body["code"] == code
    assert not StripeEvent.objects.exists()
    assert not OrmQ.objects.exists()


def padded(evt: dict, size: int) -> bytes:
    """The event's JSON, padded with whitespace (still valid JSON) to exactly `size` bytes."""
    body = encode(evt)
    assert len(body) <= size
    return body[:-1] + b" " * (size - len(body)) + b"}"


# --- size --------------------------------------------------------------------------


def test_a_signed_body_over_512_kib_is_refused_with_413():
    body = padded(event("customer.created", {"id": new_id("cus")}), WEBHOOK_MAX_BYTES + 1)
    assert_refused(deliver(body, sign(body)), 413, "invalid_input")


def test_an_oversized_body_is_refused_before_its_signature_is_checked():
    """No signature at all: the size alone refuses it, so a caller cannot make us hash 5 MB."""
    body = b"{" + b" " * (5 * 1024 * 1024) + b"}"
    resp = deliver(body, None)
    assert_refused(resp, 413, "invalid_input")
    assert resp.json()["extra"]["limit"] == WEBHOOK_MAX_BYTES


def test_a_declared_length_over_the_limit_is_refused_without_reading_the_body():
    body = encode(event("customer.created", {"id": new_id("cus")}))
    resp = Client().generic(
        "POST",
        WEBHOOK_PATH,
        body,
        content_type="application/json",
        headers={"Stripe-Signature": sign(body)},
        CONTENT_LENGTH=str(WEBHOOK_MAX_BYTES + 1),
    )
    assert_refused(resp, 413, "invalid_input")


def test_a_body_of_exactly_the_limit_is_accepted():
    evt = event("customer.created", {"id": new_id("cus")})
    body = padded(evt, WEBHOOK_MAX_BYTES)
    resp = deliver(body, sign(body))
    assert resp.status_code == 200, resp.content
    assert StripeEvent.objects.get().stripe_id == evt["id"]


# --- bodies and signatures ------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"not json at all", b"", b"{", b'{"id": "evt_1", "type": "x"', b"\x00\x01\x02"],
    ids=["text", "empty", "brace", "truncated", "binary"],
)
def test_a_correctly_signed_body_that_is_not_json_is_refused(body):
    assert_refused(deliver(body, sign(body)))


def test_an_old_capture_replayed_with_a_fresh_timestamp_is_refused():
    """An attacker holds a delivery from an hour ago (body and header) and resends the
    body under a fresh `t=`: the signature covers the timestamp, so it no longer matches."""
    body = encode(event("payment_intent.succeeded", {"id": new_id("pi")}))
    captured = sign(body, timestamp=int(time.time()) - 3600)
    signature = captured.split(",", 1)[1]
    assert_refused(deliver(body, f"t={int(time.time())},{signature}"))
    assert_refused(deliver(body, captured))  # and as it was: too old


def test_a_fresh_signature_over_an_old_body_still_counts_once():
    """Within the tolerance a captured delivery can be resent as it is: it is the same
    event id, so it is stored and processed once."""
    evt = event("customer.tax_id.created", {"id": "txi_1", "object": "tax_id"})
    body = encode(evt)
    header = sign(body)
    assert deliver(body, header).status_code == 200
    again = deliver(body, header)
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert StripeEvent.objects.count() == 1
    assert OrmQ.objects.count() == 1


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        "t=,v1=",
        "v1=deadbeef",  # no timestamp
        "t=notanumber,v1=deadbeef",
        "t=1,v1=" + "0" * 64,  # 1970
    ],
)
def test_a_malformed_signature_header_is_refused(header):
    body = encode(event("customer.created", {"id": new_id("cus")}))
    assert_refused(deliver(body, header))


def test_only_the_v1_scheme_counts():
    """`v0` is Stripe's test-mode scheme; a correct v0 without a v1 proves nothing."""
    body = encode(event("customer.created", {"id": new_id("cus")}))
    v1 = sign(body)
    assert_refused(deliver(body, v1.replace("v1=", "v0=")))


def test_a_signature_made_with_a_secret_we_retired_is_refused(settings):
    settings.STRIPE_WEBHOOK_SECRETS = ["whsec_test_rotated"]
    body = encode(event("customer.created", {"id": new_id("cus")}))
    assert_refused(deliver(body, sign(body, PRIMARY_SECRET)))


def test_with_no_secret_configured_everything_is_refused(settings):
    settings.STRIPE_WEBHOOK_SECRETS = []
    body = encode(event("customer.created", {"id": new_id("cus")}))
    assert_refused(deliver(body, sign(body)))


# --- unknown and odd event types ----------------------------------------------------------


@pytest.mark.parametrize(
    "type_",
    ["radar.early_fraud_warning.created", "v2.core.event_destination.ping", "", "x" * 300],
)
def test_an_unknown_event_type_is_stored_and_ignored(type_):
    evt = event(type_, {"id": new_id("obj"), "object": "thing"})
    resp = post_webhook(evt)
    assert resp.status_code == 200, resp.content
    assert events_drain() == 1
    stored = StripeEvent.objects.get(stripe_id=evt["id"])
    assert stored.status == StripeEvent.Status.IGNORED
    assert stored.payload == evt  # kept whole, for a later handler or a person


def test_the_answer_never_echoes_the_body_or_the_secret():
    body = b'{"secret": "' + PRIMARY_SECRET.encode() + b'"}'
    resp = deliver(body, "t=1,v1=" + "0" * 64)
    assert_refused(resp)
    assert PRIMARY_SECRET.encode() not in resp.content
    assert json.loads(resp.content)["extra"] == {}


@pytest.mark.parametrize(
    "change",
    [
        {"id": "evt_" + "x" * 300},
        {"created": 10**20},
        {"id": ""},
        {"type": 7},
        # Every Stripe event's `data.object` is an object; the worker reads it as one.
        {"data": {"object": None}},
        {"data": {"object": "cus_1"}},
        {"data": None},
    ],
)
def test_a_signed_body_no_stripe_event_could_have_is_refused(db, change):
    from django.test import Client

    from billing.models import StripeEvent
    from tests.stripe_events import encode, event, sign

    evt = {**event("customer.created", {"id": "cus_1", "object": "customer"}), **change}
    body = encode(evt)
    resp = Client().post(
        "/api/v1/payments/webhook/",
        body,
        content_type="application/json",
        headers={"Stripe-Signature": sign(body)},
    )
    assert resp.status_code == 400
    assert not StripeEvent.objects.exists()
