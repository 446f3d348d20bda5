"""Stripe's objects as the project's own dataclasses, read from plain dicts.

The rule: these readers accept every shape Stripe sends us: the current API
version's and localstripe's 2017-08-15 one (an embedded charge in
`latest_charge`, no `amount_received`, refunds embedded in charges or not).
Nothing here talks to Stripe; `billing.gateway` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def _id(value: Any) -> str:
    """An id from a field that may hold the id or the expanded object."""
    return value.get("id", "") if isinstance(value, dict) else (value or "")


@dataclass(frozen=True)
class PaymentIntentData:
    id: str
    status: str
    amount: int
    currency: str
    client_secret: str
    metadata: dict[str, str]
    amount_received: int
    latest_charge_id: str
    last_error_code: str
    last_error_message: str
    customer_id: str = ""


@dataclass(frozen=True)
class RefundData:
    id: str
    amount: int
    currency: str
    status: str
    charge_id: str
    payment_intent_id: str
    metadata: dict[str, str]
    failure_reason: str


@dataclass(frozen=True)
class CustomerData:
    id: str
    default_payment_method_id: str


@dataclass(frozen=True)
class PaymentMethodData:
    id: str
    customer_id: str
    card_brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None


@dataclass(frozen=True)
class SetupIntentData:
    id: str
    status: str
    client_secret: str
    customer_id: str
    payment_method_id: str
    metadata: dict[str, str]


def payment_intent_from_payload(obj: dict[str, Any]) -> PaymentIntentData:
    """Read a PaymentIntent from a plain dict: an event's `data.object` or an API answer."""
    charge = obj.get("latest_charge")
    charge_id = charge.get("id", "") if isinstance(charge, dict) else (charge or "")
    error = obj.get("last_payment_error") or {}
    status = obj.get("status") or ""
    amount = int(obj.get("amount") or 0)
    received = obj.get("amount_received")
    if received is None:  # localstripe's events omit it
        received = amount if status == "succeeded" else 0
    return PaymentIntentData(
        id=obj["id"],
        status=status,
        amount=amount,
        currency=(obj.get("currency") or "").lower(),
        client_secret=obj.get("client_secret") or "",
        metadata={str(k): str(v) for k, v in (obj.get("metadata") or {}).items()},
        amount_received=int(received),
        latest_charge_id=charge_id,
        last_error_code=error.get("decline_code") or error.get("code") or "",
        last_error_message=error.get("message") or "",
        customer_id=_id(obj.get("customer")),
    )


def refund_from_payload(obj: dict[str, Any]) -> RefundData:
    """Read a refund from a plain dict: a `refund.*` event's object or an API answer."""

    return RefundData(
        id=obj["id"],
        amount=int(obj.get("amount") or 0),
        currency=(obj.get("currency") or "").lower(),
        status=obj.get("status") or "",
        charge_id=_id(obj.get("charge")),
        payment_intent_id=_id(obj.get("payment_intent")),
        metadata={str(k): str(v) for k, v in (obj.get("metadata") or {}).items()},
        failure_reason=obj.get("failure_reason") or "",
    )


def refunds_from_charge_payload(obj: dict[str, Any]) -> list[RefundData] | None:
    """The refunds embedded in a charge, or None when this API version leaves them out."""
    refunds = obj.get("refunds")
    if not isinstance(refunds, dict) or not isinstance(refunds.get("data"), list):
        return None
    if refunds.get("has_more"):
        return None
    charge_id = obj.get("id", "")
    intent_id = obj.get("payment_intent") or ""
    out = []
    for item in refunds["data"]:
        data = refund_from_payload(item)
        out.append(
            RefundData(
                **{
                    **data.__dict__,
                    "charge_id": data.charge_id or charge_id,
                    "payment_intent_id": data.payment_intent_id or intent_id,
                }
            )
        )
    return out


def customer_from_payload(obj: dict[str, Any]) -> CustomerData:
    settings = obj.get("invoice_settings") or {}
    return CustomerData(
        id=obj["id"], default_payment_method_id=_id(settings.get("default_payment_method"))
    )


def payment_method_from_payload(obj: dict[str, Any]) -> PaymentMethodData:
    card = obj.get("card") or {}
    return PaymentMethodData(
        id=obj["id"],
        customer_id=_id(obj.get("customer")),
        card_brand=str(card.get("brand") or ""),
        last4=str(card.get("last4") or ""),
        exp_month=card.get("exp_month"),
        exp_year=card.get("exp_year"),
    )


def setup_intent_from_payload(obj: dict[str, Any]) -> SetupIntentData:
    return SetupIntentData(
        id=obj["id"],
        status=obj.get("status") or "",
        client_secret=obj.get("client_secret") or "",
        customer_id=_id(obj.get("customer")),
        payment_method_id=_id(obj.get("payment_method")),
        metadata={str(k): str(v) for k, v in (obj.get("metadata") or {}).items()},
    )


@dataclass(frozen=True)
class CheckoutSessionData:
    id: str
    url: str
    mode: str
    status: str
    payment_status: str
    payment_intent_id: str
    subscription_id: str
    customer_id: str
    amount_total: int
    currency: str
    metadata: dict[str, str]
    client_reference_id: str


def checkout_session_from_payload(obj: dict[str, Any]) -> CheckoutSessionData:
    return CheckoutSessionData(
        id=obj["id"],
        url=obj.get("url") or "",
        mode=obj.get("mode") or "payment",
        status=obj.get("status") or "",
        payment_status=obj.get("payment_status") or "",
        payment_intent_id=_id(obj.get("payment_intent")),
        subscription_id=_id(obj.get("subscription")),
        customer_id=_id(obj.get("customer")),
        amount_total=int(obj.get("amount_total") or 0),
        currency=(obj.get("currency") or "").lower(),
        metadata={str(k): str(v) for k, v in (obj.get("metadata") or {}).items()},
        client_reference_id=obj.get("client_reference_id") or "",
    )


@dataclass(frozen=True)
class SubscriptionData:
    id: str
    status: str
    customer_id: str
    price_id: str
    current_period_end: int | None
    cancel_at_period_end: bool
    canceled_at: int | None
    metadata: dict[str, str]


def subscription_from_payload(obj: dict[str, Any]) -> SubscriptionData:
    """Both shapes: the period on the subscription (older API versions, localstripe) or
    on its items (current), and a `price` or a legacy `plan` on the item."""
    items = (obj.get("items") or {}).get("data") or []
    first = items[0] if items else {}
    price_id = _id(first.get("price")) or _id(first.get("plan")) or _id(obj.get("plan"))
    period_end = obj.get("current_period_end")
    if period_end is None:
        ends = [i["current_period_end"] for i in items if i.get("current_period_end")]
        period_end = max(ends) if ends else None
    return SubscriptionData(
        id=obj["id"],
        status=obj.get("status") or "",
        customer_id=_id(obj.get("customer")),
        price_id=price_id,
        current_period_end=period_end,
        cancel_at_period_end=bool(obj.get("cancel_at_period_end")),
        canceled_at=obj.get("canceled_at"),
        metadata={str(k): str(v) for k, v in (obj.get("metadata") or {}).items()},
    )


@dataclass(frozen=True)
class InvoiceData:
    id: str
    status: str
    paid: bool
    amount_paid: int
    currency: str
    customer_id: str
    subscription_id: str
    payment_intent_id: str
    charge_id: str
    # Stripe's reason for the invoice; "" when the API version does not state one.
    billing_reason: str
    # The billed service period (Unix times): the subscription line's, else the invoice's.
    period_start: int | None = None
    period_end: int | None = None


def _invoice_paid_payment(obj: dict[str, Any]) -> tuple[str, str]:
    """The PaymentIntent and charge ids of the invoice's paid payment, from the
    `payments` list (InvoicePayment objects) when it was expanded."""
    payments = obj.get("payments")
    if not isinstance(payments, dict):
        return "", ""
    items = [p for p in payments.get("data") or [] if isinstance(p, dict)]
    items.sort(key=lambda p: p.get("status") != "paid")  # a paid one first
    for item in items:
        payment = item.get("payment") or {}
        if payment.get("type") == "payment_intent" and payment.get("payment_intent"):
            return _id(payment["payment_intent"]), ""
        if payment.get("type") == "charge" and payment.get("charge"):
            charge = payment["charge"]
            intent = _id(charge.get("payment_intent")) if isinstance(charge, dict) else ""
            return intent, _id(charge)
    return "", ""


def _invoice_period(obj: dict[str, Any]) -> tuple[int | None, int | None]:
    lines = (obj.get("lines") or {}).get("data") or []
    for line in lines:
        parent = line.get("parent") or {}
        period = line.get("period") or {}
        is_subscription_line = (
            parent.get("type") == "subscription_item_details"
            or line.get("type") == "subscription"  # older API versions
            or bool(line.get("subscription"))
        )
        if is_subscription_line and period.get("end"):
            return period.get("start"), period.get("end")
    if len(lines) == 1 and (lines[0].get("period") or {}).get("end"):
        return lines[0]["period"].get("start"), lines[0]["period"]["end"]
    return obj.get("period_start"), obj.get("period_end")


def invoice_from_payload(obj: dict[str, Any]) -> InvoiceData:
    """Both shapes: `subscription`/`payment_intent`/`charge`/`paid` on the invoice (older
    API versions, localstripe) or, at the pinned version, the subscription under
    `parent.subscription_details`, the payments in `payments` (InvoicePayment objects,
    read when expanded) and paid as `status == "paid"`."""
    parent = (obj.get("parent") or {}).get("subscription_details") or {}
    subscription_id = _id(obj.get("subscription")) or _id(parent.get("subscription"))
    charge = obj.get("charge")
    intent = _id(obj.get("payment_intent")) or (
        _id(charge.get("payment_intent")) if isinstance(charge, dict) else ""
    )
    charge_id = _id(charge)
    if not intent and not charge_id:
        intent, charge_id = _invoice_paid_payment(obj)
    period_start, period_end = _invoice_period(obj)
    status = obj.get("status") or ""
    return InvoiceData(
        id=obj["id"],
        status=status,
        paid=bool(obj.get("paid")) or status == "paid",
        amount_paid=int(obj.get("amount_paid") or 0),
        currency=(obj.get("currency") or "").lower(),
        customer_id=_id(obj.get("customer")),
        subscription_id=subscription_id,
        payment_intent_id=intent,
        charge_id=charge_id,
        billing_reason=obj.get("billing_reason") or "",
        period_start=period_start,
        period_end=period_end,
    )


@dataclass(frozen=True)
class InvoicePaymentData:
    """One payment of an invoice (an InvoicePayment, at the pinned API version)."""

    id: str
    invoice_id: str
    status: str
    amount_paid: int
    currency: str
    payment_intent_id: str
    charge_id: str


def invoice_payment_from_payload(obj: dict[str, Any]) -> InvoicePaymentData:
    payment = obj.get("payment") or {}
    charge = payment.get("charge") if payment.get("type") == "charge" else None
    intent = _id(payment.get("payment_intent")) if payment.get("type") == "payment_intent" else ""
    if not intent and isinstance(charge, dict):
        intent = _id(charge.get("payment_intent"))
    return InvoicePaymentData(
        id=obj["id"],
        invoice_id=_id(obj.get("invoice")),
        status=obj.get("status") or "",
        amount_paid=int(obj.get("amount_paid") or 0),
        currency=(obj.get("currency") or "").lower(),
        payment_intent_id=intent,
        charge_id=_id(charge),
    )


@dataclass(frozen=True)
class DisputeData:
    id: str
    amount: int
    currency: str
    reason: str
    status: str
    charge_id: str
    payment_intent_id: str
    evidence_due_by: int | None
    created: int | None


def dispute_from_payload(obj: dict[str, Any]) -> DisputeData:
    """Every shape: `payment_intent` on the dispute (current API versions), or only the
    `charge` (older ones, and payments made without a PaymentIntent), id or expanded; the
    evidence deadline under `evidence_details.due_by` or, in the oldest, `evidence_due_by`."""
    charge = obj.get("charge")
    intent = _id(obj.get("payment_intent")) or (
        _id(charge.get("payment_intent")) if isinstance(charge, dict) else ""
    )
    details = obj.get("evidence_details") or {}
    due_by = details.get("due_by") or obj.get("evidence_due_by")
    created = obj.get("created")
    return DisputeData(
        id=obj["id"],
        amount=int(obj.get("amount") or 0),
        currency=(obj.get("currency") or "").lower(),
        reason=str(obj.get("reason") or ""),
        status=str(obj.get("status") or ""),
        charge_id=_id(charge),
        payment_intent_id=intent,
        evidence_due_by=due_by if isinstance(due_by, int) else None,
        created=created if isinstance(created, int) else None,
    )
