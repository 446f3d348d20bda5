"""Stripe events for tests: an envelope as Stripe sends it, signed, delivered and processed."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

WEBHOOK_PATH = "/api/v1/payments/webhook/"


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def event(
    type: str, obj: dict[str, Any], *, id: str | None = None, **fields: Any
) -> dict[str, Any]:
    """An Event envelope around `obj`, at the pinned API version, created now."""
    import stripe

    return {
        "id": id or new_id("evt"),
        "object": "event",
        "api_version": stripe.api_version,
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type,
        "data": {"object": obj},
        **fields,
    }


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header Stripe would send: t=<ts>,v1=HMAC-SHA256(secret, "ts.body")."""
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def deliver(evt: dict[str, Any] | bytes, *, secret: str | None = None, client=None, **kw: Any):
    """POST an event to Tollgate's webhook, signed with `secret` (the first configured one)."""
    from django.conf import settings
    from django.test import Client

    body = evt if isinstance(evt, bytes) else json.dumps(evt).encode()
    signature = sign(body, secret or settings.STRIPE_WEBHOOK_SECRETS[0], **kw)
    return (client or Client()).post(
        WEBHOOK_PATH, body, content_type="application/json", headers={"Stripe-Signature": signature}
    )


def process(stripe_event_id: str, *, timeout: float = 10.0):
    """Run the event worker here until the event is processed; answers the stored event.

    An event that failed, or is still due after `timeout`, fails the test with its error.
    """
    from billing.models import StripeEvent
    from billing.services.events import events_drain

    deadline = time.monotonic() + timeout
    while True:
        events_drain()
        stored = StripeEvent.objects.filter(stripe_id=stripe_event_id).first()
        if stored is not None and stored.status in (
            StripeEvent.Status.PROCESSED,
            StripeEvent.Status.IGNORED,
        ):
            return stored
        if stored is not None and stored.status == StripeEvent.Status.FAILED:
            raise AssertionError(f"event {stripe_event_id} failed: {stored.last_error}")
        if time.monotonic() > deadline:
            state = "never stored" if stored is None else f"{stored.status}: {stored.last_error}"
            raise AssertionError(f"event {stripe_event_id} was not processed ({state})")
        time.sleep(0.05)


def wait_for_event(type: str, object_id: str, *, timeout: float = 10.0):
    """Wait until Stripe's delivery of `type` about `object_id` has been stored; answers it."""
    from billing.models import StripeEvent

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = StripeEvent.objects.filter(type=type, object_id=object_id).first()
        if found is not None:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {type} event for {object_id} arrived within {timeout}s")
