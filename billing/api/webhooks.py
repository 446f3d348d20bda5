"""Stripe's webhook endpoint.

The rule: verify, store, enqueue, answer. No Stripe call and no plugin code
here; everything else happens in the event worker. A body larger than any
Stripe event is refused before it is read or its signature computed.

`webhook_receive` is the whole endpoint. The busiest path of the platform is
served by a plain Django view (`platform_core.api.stripe_webhook`, routed ahead
of the API) that calls it without django-ninja's per-request work; the
operation below documents it in the OpenAPI schema and calls the same function.
"""

from __future__ import annotations

import json
import logging

from django.http import HttpRequest
from ninja import Router

from billing import gateway
from billing.services.events import event_store
from kernel.errors import DomainError, ErrorCode
from kernel.metrics import WEBHOOKS
from kernel.schemas import ErrorOut

log = logging.getLogger(__name__)

router = Router(tags=["webhooks"])

# Stripe's events are a few kilobytes; this leaves room for large objects and
# bounds the memory and HMAC work an unauthenticated caller can cost us.
WEBHOOK_MAX_BYTES = 512 * 1024


class WebhookTooLargeError(DomainError):
    code = ErrorCode.INVALID_INPUT
    status = 413


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def webhook_receive(request: HttpRequest) -> dict:
    """Verify, store, enqueue; the answer's body. Raises `DomainError`s for a 4xx."""
    # The declared length first, so an oversized body is never read into memory.
    if _declared_length(request) > WEBHOOK_MAX_BYTES or len(request.body) > WEBHOOK_MAX_BYTES:
        WEBHOOKS.labels(outcome="too_large").inc()
        raise WebhookTooLargeError(
            f"A webhook body is at most {WEBHOOK_MAX_BYTES} bytes.", limit=WEBHOOK_MAX_BYTES
        )
    try:
        event = gateway.webhook_event_verify(
            payload=request.body, signature_header=request.META.get("HTTP_STRIPE_SIGNATURE")
        )
    except gateway.BadSignatureError as exc:
        WEBHOOKS.labels(outcome="refused").inc()
        log.warning("webhook refused: %s", exc)
        raise
    # Stored as received when it is plain UTF-8 (Stripe's); JSON in another encoding,
    # or with a byte-order mark, is stored as parsed.
    raw = request.body
    body = raw.decode() if json.detect_encoding(raw) == "utf-8" else None
    stored, created = event_store(event=event, body=body)
    outcome = "stored" if created else "duplicate"
    WEBHOOKS.labels(outcome=outcome).inc()
    if log.isEnabledFor(logging.INFO):
        log.info(
            "webhook %s (%s) %s",
            stored.stripe_id,
            event.get("type"),
            outcome,
            extra={"stripe_event_id": stored.stripe_id, "event_id": stored.pk},
        )
    return {"received": True, "duplicate": not created, "id": stored.stripe_id}


@router.post(
    "/webhook/", auth=None, response={200: dict, 400: ErrorOut, 413: ErrorOut, 422: ErrorOut}
)
def payments_webhook(request: HttpRequest) -> dict:
    """Stripe's webhook: verify, store, enqueue, answer. No Stripe call, no plugin code.

    400 for a bad signature or a signed body no Stripe event could have; 413 past
    the size limit; 422 for a signed event PostgreSQL cannot store (U+0000, a lone
    surrogate, NaN, nesting past the limit), which Stripe never sends.
    """
    return webhook_receive(request)
