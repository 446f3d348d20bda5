"""Stripe Checkout for orders: start a session, and apply what its events say.

The rule: a session's redirect URLs are on `FRONTEND_URL`'s origin (never an
open redirect), and a session moves its order only through `order_transition`,
under the order's row lock, so Checkout and the PaymentIntent events that
accompany it fulfil an order once between them. A session is an order's when
the order stored its id, or when it carries this deployment's marker and fits
the order; never by `order_id` alone.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction

from billing import gateway
from billing.metadata import NotOursError, metadata_is_ours
from billing.models import ORDER_TRANSITIONS, Order, Payment
from billing.services.payments import (
    PaymentMismatchError,
    order_mismatch,
    order_transition,
    payment_unwanted,
    stripe_customer_known,
    success_recorded,
)
from billing.stripe_objects import CheckoutSessionData
from kernel.errors import InvalidInputError


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.netloc or "").lower()


def redirect_urls_check(*, success_url: str | None, cancel_url: str | None) -> tuple[str, str]:
    """The Checkout redirect URLs, defaulted, and refused (422) off the frontend's origin."""
    frontend = settings.FRONTEND_URL.rstrip("/")
    # By default, back to the web client's orders page (its pages are hash routes).
    success = success_url or f"{frontend}/#/orders?checkout=success"
    cancel = cancel_url or f"{frontend}/#/orders?checkout=canceled"
    for field, url in (("success_url", success), ("cancel_url", cancel)):
        if _origin(url) != _origin(frontend) or not _origin(url)[0].startswith("http"):
            raise InvalidInputError(
                f"`{field}` must be on {frontend}.", field=field, allowed_origin=frontend
            )
    return success, cancel


def checkout_start(
    *, order: Order, success_url: str, cancel_url: str, customer_id: str | None = None
) -> Order:
    """Create the order's Checkout Session; where Checkout is unavailable, cancel the order."""
    try:
        session = gateway.checkout_session_create(
            mode="payment",
            amount=order.amount,
            currency=order.currency,
            name=order.description,
            metadata=order.metadata,
            client_reference_id=str(order.pk),
            success_url=success_url,
            cancel_url=cancel_url,
            customer_id=customer_id,
            idempotency_key=f"order-{order.pk}-checkout",
        )
    except gateway.FeatureUnavailableError as exc:
        with transaction.atomic():
            locked = Order.objects.select_for_update().get(pk=order.pk)
            order_transition(locked, Order.Status.CANCELED)
        exc.extra["order_id"] = order.pk
        raise
    except gateway.PaymentGatewayError as exc:
        Order.objects.filter(pk=order.pk).update(gateway_error=exc.message[:500])
        exc.extra["order_id"] = order.pk
        raise
    Order.objects.filter(pk=order.pk).update(
        stripe_checkout_session_id=session.id, checkout_url=session.url
    )
    order.refresh_from_db()
    return order


_TARGETS = {
    "checkout.session.async_payment_succeeded": Order.Status.PAID,
    "checkout.session.async_payment_failed": Order.Status.FAILED,
    "checkout.session.expired": Order.Status.CANCELED,
}


def checkout_session_record(*, session: CheckoutSessionData, event_type: str) -> str:
    """Move a Checkout order as its session's event says.

    A session that paid an order which can no longer take it (canceled, or paid
    already) has its payment refunded automatically, once.
    """
    if event_type == "checkout.session.completed":
        # `unpaid`: a delayed method (a bank debit) whose outcome comes later.
        paid = session.payment_status in ("paid", "no_payment_required")
        target = Order.Status.PAID if paid else Order.Status.PROCESSING
    else:
        target = _TARGETS[event_type]
    with transaction.atomic():
        order = _order_for_session(session)
        if order is None:
            return "no order of ours for this Checkout Session"
        if target == Order.Status.PAID and (
            session.amount_total != order.amount or session.currency != order.currency
        ):
            raise PaymentMismatchError(
                f"Checkout charged {session.amount_total} {session.currency} for order "
                f"{order.pk}, which costs {order.amount} {order.currency}.",
                order_id=order.pk,
            )
        payment = None
        if session.payment_intent_id:
            payment, _ = Payment.objects.select_for_update().get_or_create(
                stripe_payment_intent_id=session.payment_intent_id,
                defaults={"order": order, "amount": order.amount, "currency": order.currency},
            )
            if payment.order_id != order.pk:
                raise PaymentMismatchError(
                    f"PaymentIntent {session.payment_intent_id} of Checkout Session "
                    f"{session.id} belongs to order {payment.order_id}, not {order.pk}.",
                    order_id=order.pk,
                )
        if target == Order.Status.PAID and payment is not None:
            was_succeeded = success_recorded(payment)
            payment.status = "succeeded"
            payment.amount_received = max(payment.amount_received, session.amount_total)
            payment.save(update_fields=["status", "amount_received", "updated_at"])
            if target not in ORDER_TRANSITIONS[order.status]:
                return payment_unwanted(
                    order, payment, amount=payment.amount_received, was_succeeded=was_succeeded
                ).reason
        failure = "checkout_payment_failed" if target == Order.Status.FAILED else ""
        moved = order_transition(
            order,
            target,
            failure_code=failure,
            failure_message="The delayed payment failed." if failure else "",
        )
        return f"order is now {target}" if moved else f"order is {order.status}; {target} is stale"


def _order_for_session(session: CheckoutSessionData) -> Order | None:
    """The session's order, row-locked: the one that stored its id, or the one its
    metadata names when the session carries this deployment's marker and fits it."""
    found = Order.objects.select_for_update().filter(stripe_checkout_session_id=session.id).first()
    if found is not None:
        return found
    if not metadata_is_ours(session.metadata):
        if session.customer_id and stripe_customer_known(customer_id=session.customer_id):
            return None
        raise NotOursError(
            f"Checkout Session {session.id} has no marker of this deployment and no "
            "customer of ours: another system's on this Stripe account."
        )
    order_id = session.metadata.get("order_id") or session.client_reference_id
    if not order_id.isdigit():
        return None
    order = Order.objects.select_for_update().filter(pk=int(order_id)).first()
    if order is None:
        return None
    problem = order_mismatch(
        order=order,
        amount=None,
        currency=None,
        customer_id=session.customer_id,
        metadata=session.metadata,
    )
    if problem:
        raise PaymentMismatchError(
            f"Checkout Session {session.id} is not order {order.pk}'s: {problem}.",
            order_id=order.pk,
        )
    return order
