"""What each Stripe event type does: one table from type to handler.

The rule: a handler moves money state only through the services
(`payment_record`, `refund_record`, `invoice_record`, …), which lock what they
change; a type not in `HANDLERS` is stored and ignored. Handlers run in the
worker only, so they may call Stripe. A type in `HANDLED_IN_EVENT_TRANSACTION`
runs inside the transaction that marks its event processed (its service is one
transaction anyway); the others own their transactions, because they commit
what Stripe said before a second, retryable step (a refund is stored, then
applied).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from billing import gateway
from billing.metadata import NotOursError, metadata_is_ours
from billing.models import Order
from billing.services import cards, disputes, subscriptions
from billing.services.checkout import checkout_session_record
from billing.services.payments import payment_apply, stripe_customer_known
from billing.services.refunds import refund_record
from billing.stripe_objects import (
    checkout_session_from_payload,
    customer_from_payload,
    dispute_from_payload,
    invoice_from_payload,
    invoice_payment_from_payload,
    payment_intent_from_payload,
    payment_method_from_payload,
    refund_from_payload,
    refunds_from_charge_payload,
    setup_intent_from_payload,
    subscription_from_payload,
)

Handler = Callable[[dict[str, Any]], str]


def _payment_intent_handler(target: str) -> Handler:
    def handle(event: dict[str, Any]) -> str:
        intent = payment_intent_from_payload(event["data"]["object"])
        created = event.get("created")
        as_of = created if isinstance(created, int) else None
        return payment_apply(intent=intent, target=target, as_of=as_of).reason

    return handle


def _refund_event(event: dict[str, Any]) -> str:
    return refund_record(data=refund_from_payload(event["data"]["object"]))


def _charge_refunded(event: dict[str, Any]) -> str:
    """Apply each refund of the charge by its own id (never the cumulative amount)."""
    charge = event["data"]["object"]
    refunds = refunds_from_charge_payload(charge)
    if refunds is None:  # this API version does not embed them: ask Stripe (worker only)
        refunds = gateway.refunds_list_for_charge(charge_id=charge["id"])
    return "; ".join(refund_record(data=r) for r in refunds) or "no refunds on the charge"


def _card_event(event: dict[str, Any]) -> str:
    obj = event["data"]["object"]
    if event["type"] == "payment_method.detached":
        return f"forgot {cards.card_forget(payment_method_id=obj['id'])} card(s)"
    card = cards.card_refresh(method=payment_method_from_payload(obj))
    return "card saved" if card else "not a customer of ours"


def _setup_intent_succeeded(event: dict[str, Any]) -> str:
    card = cards.card_setup_complete(setup=setup_intent_from_payload(event["data"]["object"]))
    return "card saved" if card else "nothing to save"


def _customer_updated(event: dict[str, Any]) -> str:
    customer = customer_from_payload(event["data"]["object"])
    cards.customer_default_refresh(
        customer_id=customer.id, default_payment_method_id=customer.default_payment_method_id
    )
    return "default card in step"


def _checkout_event(event: dict[str, Any]) -> str:
    session = checkout_session_from_payload(event["data"]["object"])
    if session.mode == "subscription":
        return "subscription checkout: its invoices and subscription events carry it"
    return checkout_session_record(session=session, event_type=event["type"])


def _not_ours_unless_known(customer_id: str, metadata: dict[str, str], what: str) -> None:
    """Raise `NotOursError` for an object of a customer we do not know, without our marker."""
    if (
        customer_id
        and not metadata_is_ours(metadata)
        and not stripe_customer_known(customer_id=customer_id)
    ):
        raise NotOursError(
            f"{what} is of customer {customer_id}, not one of ours, and has no marker "
            "of this deployment: another system's on this Stripe account."
        )


def _subscription_event(event: dict[str, Any]) -> str:
    data = subscription_from_payload(event["data"]["object"])
    _not_ours_unless_known(data.customer_id, data.metadata, f"Subscription {data.id}")
    created = event.get("created")
    return subscriptions.subscription_record(
        data=data, as_of=created if isinstance(created, int) else None
    )


def _invoice_paid(event: dict[str, Any]) -> str:
    invoice = invoice_from_payload(event["data"]["object"])
    _not_ours_unless_known(invoice.customer_id, {}, f"Invoice {invoice.id}")
    return subscriptions.invoice_record(invoice=invoice)


def _invoice_payment_paid(event: dict[str, Any]) -> str:
    data = invoice_payment_from_payload(event["data"]["object"])
    return subscriptions.invoice_payment_record(data=data)


def _invoice_payment_failed(event: dict[str, Any]) -> str:
    invoice = invoice_from_payload(event["data"]["object"])
    return subscriptions.invoice_payment_failed(invoice=invoice)


def _dispute_event(event: dict[str, Any]) -> str:
    created = event.get("created")
    return disputes.dispute_record(
        data=dispute_from_payload(event["data"]["object"]),
        as_of=created if isinstance(created, int) else None,
    )


# One table from event type to handler; a type not listed is stored and ignored.
HANDLERS: dict[str, Handler] = {
    "payment_intent.succeeded": _payment_intent_handler(Order.Status.PAID),
    "payment_intent.payment_failed": _payment_intent_handler(Order.Status.FAILED),
    "payment_intent.canceled": _payment_intent_handler(Order.Status.CANCELED),
    "payment_intent.processing": _payment_intent_handler(Order.Status.PROCESSING),
    "payment_intent.requires_action": _payment_intent_handler(Order.Status.REQUIRES_ACTION),
    "charge.refunded": _charge_refunded,
    "refund.created": _refund_event,
    "refund.updated": _refund_event,
    "refund.failed": _refund_event,
    "charge.refund.updated": _refund_event,
    "payment_method.attached": _card_event,
    "payment_method.updated": _card_event,
    "payment_method.detached": _card_event,
    "setup_intent.succeeded": _setup_intent_succeeded,
    "customer.updated": _customer_updated,
    "checkout.session.completed": _checkout_event,
    "checkout.session.async_payment_succeeded": _checkout_event,
    "checkout.session.async_payment_failed": _checkout_event,
    "checkout.session.expired": _checkout_event,
    "customer.subscription.created": _subscription_event,
    "customer.subscription.updated": _subscription_event,
    "customer.subscription.deleted": _subscription_event,
    "invoice.paid": _invoice_paid,
    "invoice.payment_succeeded": _invoice_paid,
    "invoice.payment_failed": _invoice_payment_failed,
    "charge.dispute.created": _dispute_event,
    "charge.dispute.updated": _dispute_event,
    "charge.dispute.closed": _dispute_event,
    "charge.dispute.funds_withdrawn": _dispute_event,
    "charge.dispute.funds_reinstated": _dispute_event,
    "invoice_payment.paid": _invoice_payment_paid,
}

# `payment_record`'s work in the event's own transaction: the payment, the order
# and its fulfilment commit with the event's "processed", or none of it does.
HANDLED_IN_EVENT_TRANSACTION: frozenset[str] = frozenset(
    name for name in HANDLERS if name.startswith("payment_intent.")
)
