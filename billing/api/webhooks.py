"""Stripe's webhook endpoint.

The rule: verify, store, enqueue, answer. No Stripe call and no plugin code
here; everything else happens in the event worker.
"""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router

from billing import gateway
from billing.services.events import event_store
from kernel.schemas import ErrorOut

router = Router(tags=["webhooks"])


@router.post("/webhook/", auth=None, response={200: dict, 400: ErrorOut})
def payments_webhook(request: HttpRequest) -> dict:
    """Stripe's webhook: verify, store, enqueue, answer. No Stripe call, no plugin code."""
    event = gateway.webhook_event_verify(
        payload=request.body, signature_header=request.headers.get("Stripe-Signature")
    )
    stored, created = event_store(event=event)
    return {"received": True, "duplicate": not created, "id": stored.stripe_id}
