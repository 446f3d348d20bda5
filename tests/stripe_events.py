"""Stripe events for tests: shaped from Stripe's own fixtures and signed as Stripe signs them."""

from __future__ import annotations

import copy
import functools
import json
import time
import uuid
from pathlib import Path
from typing import Any

import stripe
from django.conf import settings

from tollgate_testing.events import sign as kit_sign

FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "stripe" / "fixtures3.json"
PRIMARY_SECRET = "whsec_test_primary"
ROTATED_SECRET = "whsec_test_rotated"


@functools.cache
def _resources() -> dict[str, Any]:
    return json.loads(FIXTURES.read_text())["resources"]


def stripe_client() -> stripe.StripeClient:
    """A client of the development Stripe the tests run against."""
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
    )


def fixture(name: str) -> dict[str, Any]:
    """A deep copy of Stripe's fixture for one resource (`payment_intent`, `charge`, …)."""
    return copy.deepcopy(_resources()[name])


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def payment_intent(
    *, id: str, amount: int, currency: str = "usd", status: str = "succeeded", **overrides: Any
) -> dict[str, Any]:
    obj = fixture("payment_intent")
    obj.update(
        id=id,
        amount=amount,
        currency=currency,
        status=status,
        amount_received=amount if status == "succeeded" else 0,
        latest_charge=new_id("ch") if status == "succeeded" else None,
        last_payment_error=None,
        client_secret=f"{id}_secret_test",
    )
    if status == "requires_payment_method":
        obj["last_payment_error"] = {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
        }
    obj.update(overrides)
    return obj


def event(type: str, obj: dict[str, Any], *, id: str | None = None) -> dict[str, Any]:
    envelope = fixture("event")
    envelope.update(
        id=id or new_id("evt"),
        type=type,
        api_version=stripe.api_version,
        created=int(time.time()),
        data={"object": obj},
    )
    return envelope


def sign(payload: bytes, secret: str = PRIMARY_SECRET, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header Stripe would send (the test kit's, with our secret)."""
    return kit_sign(payload, secret, timestamp)


def encode(evt: dict[str, Any]) -> bytes:
    return json.dumps(evt).encode()
