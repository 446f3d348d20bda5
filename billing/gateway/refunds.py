"""Refunds, and the charge a refund event names."""

from __future__ import annotations

from typing import Literal

from stripe.params import (
    RefundCreateParams,
)

from billing.gateway._client import (
    _client,
    _scoped,
    _stripe,
)
from billing.stripe_objects import (
    RefundData,
    refund_from_payload,
)

# Why Stripe is asked for a refund (the text of our own reason goes in its metadata).
RefundReason = Literal["duplicate", "fraudulent", "requested_by_customer"]


def refund_create(
    *,
    payment_intent_id: str,
    amount: int,
    metadata: dict[str, str],
    idempotency_key: str,
    reason: RefundReason | None = None,
) -> RefundData:
    """Refund `amount` of a PaymentIntent's charge, for `reason` (one of Stripe's)."""
    params: RefundCreateParams = {
        "payment_intent": payment_intent_id,
        "amount": amount,
        "metadata": metadata,
    }
    if reason:
        params["reason"] = reason
    with _stripe("refund the payment"):
        refund = _client().v1.refunds.create(
            params=params, options={"idempotency_key": _scoped(idempotency_key)}
        )
    return refund_from_payload(refund.to_dict())


def refunds_for_payment_intent(*, payment_intent_id: str) -> list[RefundData]:
    with _stripe("list the refunds"):
        page = _client().v1.refunds.list(params={"payment_intent": payment_intent_id, "limit": 100})
        return [refund_from_payload(r.to_dict()) for r in page.auto_paging_iter()]


def refunds_list_for_charge(*, charge_id: str) -> list[RefundData]:
    """Every refund of a charge (for `charge.refunded` events that do not embed them)."""
    with _stripe("list the refunds"):
        page = _client().v1.refunds.list(params={"charge": charge_id, "limit": 100})
        return [refund_from_payload(r.to_dict()) for r in page.auto_paging_iter()]


def charge_payment_intent_id(*, charge_id: str) -> str:
    """The PaymentIntent a charge belongs to, or "" for a charge made without one (not
    one of ours: every payment here is a PaymentIntent)."""
    with _stripe("read the charge"):
        charge = _client().v1.charges.retrieve(charge_id).to_dict()
    intent = charge.get("payment_intent")
    return (intent.get("id", "") if isinstance(intent, dict) else intent) or ""
