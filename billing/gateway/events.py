"""Stripe's events: listed for reconciliation, and a webhook delivery verified."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import stripe
from django.conf import settings
from stripe.params import (
    EventListParams,
)

from billing.gateway._client import (
    _client,
    _stripe,
)
from billing.gateway.errors import (
    BadSignatureError,
)
from kernel.storable_json import storable_json_loads


def events_since(*, created_after: int) -> Iterator[dict[str, Any]]:
    """Stripe's events created after a Unix time, newest first, as plain dicts."""
    with _stripe("list events"):
        params: EventListParams = {"limit": 100, "created": {"gt": created_after}}
        page = _client().v1.events.list(params=params)
        for evt in page.auto_paging_iter():
            yield evt.to_dict()


def webhook_event_verify(*, payload: bytes, signature_header: str | None) -> dict[str, Any]:
    """Check `Stripe-Signature` over the raw body against every configured secret.

    Any one secret may match (rotation); the timestamp must be within
    `STRIPE_WEBHOOK_TOLERANCE` seconds. Answers the event as a plain dict, read once
    and refused (`UnstorableJsonError`, 422) when PostgreSQL could not store it.
    """
    if not signature_header:
        raise BadSignatureError("The Stripe-Signature header is missing.")
    secrets = settings.STRIPE_WEBHOOK_SECRETS
    if not secrets:
        raise BadSignatureError("No webhook secret is configured.")
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(
                payload, signature_header, secret, tolerance=settings.STRIPE_WEBHOOK_TOLERANCE
            )
            break
        except (stripe.SignatureVerificationError, UnicodeDecodeError):
            continue
    else:
        raise BadSignatureError("The Stripe-Signature does not match, or it is too old.")
    try:
        # Checked here, once, for what PostgreSQL cannot store: the event is stored as sent.
        event = storable_json_loads(payload)
    except ValueError:
        raise BadSignatureError("The signed body is not JSON.") from None
    created = event.get("created") if isinstance(event, dict) else None
    data = event.get("data") if isinstance(event, dict) else None
    if (
        not isinstance(event, dict)
        or not isinstance(data, dict)
        or not isinstance(data.get("object"), dict)
        or not isinstance(event.get("id"), str)
        or not 0 < len(event["id"]) <= 255
        or not isinstance(event.get("type", ""), str)
        or (created is not None and not (isinstance(created, int) and 0 <= created < 2**33))
    ):
        raise BadSignatureError("The signed body is not a Stripe event.")
    return event
