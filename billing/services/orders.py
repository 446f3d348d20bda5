"""Creating and cancelling orders.

The rule: the server prices every order through its plugin, the order row is
committed before Stripe is called (so no PaymentIntent exists without an order
to find it by), and every Stripe write carries a key derived from the order id,
so a retried request never creates a second charge.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import gateway, sql
from billing.metadata import metadata_build
from billing.models import UNPAID_STATUSES, Order, Payment
from billing.selectors import order_get_for_user
from billing.services.cards import (
    ChargeSource,
    card_get_for_user,
    charge_source_for,
    charge_source_ready,
)
from billing.services.checkout import (
    checkout_session_record,
    checkout_start,
    redirect_urls_check,
)
from billing.services.credit_payments import credits_request_check, order_credits_take
from billing.services.credit_refunds import order_cancel_paid_with_credits
from billing.services.payments import (
    order_info,
    order_target_status,
    order_transition,
    payment_record,
    payment_row_for,
)
from billing.stripe_objects import PaymentIntentData
from kernel.errors import ConflictError, DomainError, ErrorCode, InvalidInputError
from kernel.money import MAX_MINOR, currency_get, to_minor
from purchasables.registry import registry
from purchasables.types import PurchaseRequest, Quote

log = logging.getLogger(__name__)

# How long a new order's first request may still be talking to Stripe (three
# attempts of STRIPE_TIMEOUT and back-off): a replay of its Idempotency-Key, or
# a cancel, waits this long before it may act on an order without a payment.
IN_FLIGHT_GRACE = timedelta(minutes=2)


class QuoteMismatchError(DomainError):
    code = ErrorCode.QUOTE_MISMATCH
    status = 409


class IdempotencyConflictError(DomainError):
    code = ErrorCode.IDEMPOTENCY_CONFLICT
    status = 409


@dataclass(frozen=True)
class OrderCreateResult:
    order: Order
    payment: Payment | None
    replayed: bool


def _fingerprint(purchase: PurchaseRequest, **more: Any) -> str:
    body = json.dumps(
        {**purchase.__dict__, **more}, sort_keys=True, default=str, separators=(",", ":")
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _quote_check(quote: Quote, client_amount: Decimal | int | str | None) -> None:
    step = currency_get(quote.currency).step
    if (
        not isinstance(quote.amount, int)
        or not 0 < quote.amount <= MAX_MINOR
        or quote.amount % step
    ):
        raise TypeError(
            f"A plugin quoted {quote.amount!r} {quote.currency}; a quote is 1..{MAX_MINOR} "
            f"minor units, in whole steps of {step}."
        )
    if client_amount is None:
        return
    if to_minor(client_amount, quote.currency) != quote.amount:
        raise QuoteMismatchError(
            "The amount differs from the price; refresh the catalog and try again.",
            quoted_amount=quote.amount,
            currency=quote.currency,
        )


def order_create(
    *,
    purchase: PurchaseRequest,
    amount: Decimal | int | str | None,
    payment_method_id: str | None = None,
    save_payment_method: bool = False,
    idempotency_key: str | None = None,
    payment_type: str = Order.PaymentType.INTENT,
    success_url: str | None = None,
    cancel_url: str | None = None,
    apply_credits: bool = False,
) -> OrderCreateResult:
    """Price `purchase`, store the order, and create (and maybe confirm) its PaymentIntent.

    With `payment_method_id` the payment is confirmed server-side and the order
    moves at once to what Stripe answered (a decline raises `CardDeclinedError`
    after the order is marked failed). With `payment_type` credits the order is
    paid from the buyer's credits in its own transaction, or not created at all
    (409 with the credits `missing`); with `apply_credits` the buyer's credits
    pay first and the PaymentIntent is for the rest (`credit_payments`).
    """
    spec = registry.purchase_type_sold_as(purchase.purchase_type, "order")
    # A blank header is no key: stored, it would make every later blank key a conflict.
    idempotency_key = (idempotency_key or "").strip() or None
    if idempotency_key and "\x00" in idempotency_key:  # PostgreSQL's text cannot hold it
        raise InvalidInputError(
            "The Idempotency-Key may not contain the character U+0000.", field="Idempotency-Key"
        )
    credits_request_check(
        payment_type=payment_type, apply_credits=apply_credits, payment_method_id=payment_method_id
    )
    fingerprint = _fingerprint(
        purchase,
        amount=amount,
        payment_method_id=payment_method_id,
        save=save_payment_method,
        payment_type=payment_type,
        # Only when asked, so the fingerprints of earlier requests stay as they were.
        **({"apply_credits": True} if apply_credits else {}),
    )
    checkout = payment_type == Order.PaymentType.CHECKOUT
    if checkout:
        success_url, cancel_url = redirect_urls_check(
            success_url=success_url, cancel_url=cancel_url
        )
        if payment_method_id:
            raise InvalidInputError(
                "Checkout collects the card on Stripe's page; leave out `payment_method_id`.",
                field="payment_method_id",
            )
    if save_payment_method and not payment_method_id:
        raise InvalidInputError(
            "`save_payment_method` needs a `payment_method_id`; to add a card on its own, "
            "use POST /api/v1/payments/methods/setup/.",
            field="save_payment_method",
        )
    if idempotency_key:
        existing = Order.objects.filter(
            user_id=purchase.user_id, idempotency_key=idempotency_key
        ).first()
        if existing is not None:
            return _replay(existing, fingerprint, payment_method_id, save_payment_method)
    with_credits = payment_type == Order.PaymentType.CREDITS or apply_credits
    source = (
        None
        if payment_type == Order.PaymentType.CREDITS
        else charge_source_for(
            user_id=purchase.user_id,
            payment_method_id=payment_method_id,
            save=save_payment_method,
        )
    )
    try:
        with transaction.atomic():
            quote = registry.quote(purchase)
            _quote_check(quote, amount)
            order = Order.objects.create(
                user_id=purchase.user_id,
                purchase_type=spec.name,
                order_type=spec.order_type,
                amount=quote.amount,
                currency=quote.currency.lower(),
                description=quote.description[:255],
                data=quote.data,
                idempotency_key=idempotency_key,
                request_fingerprint=fingerprint,
                payment_type=payment_type,
                credit_price=quote.credits,
                cancellable_until=quote.cancellable_until,
            )
            order.metadata = metadata_build(
                order_id=order.pk,
                user_id=purchase.user_id,
                order_type=spec.order_type,
                purchase_type=spec.name,
                plugin_metadata=quote.metadata,
                scheduling_data=purchase.scheduling_data,
            )
            order.save(update_fields=["metadata"])
            registry.reserve(order_info(order))
            if with_credits:
                order_credits_take(order=order, quote=quote, apply_credits=apply_credits)
    except IntegrityError:
        if not idempotency_key:
            raise
        # A concurrent request with the same key committed first, unless the
        # conflict was something else (a plugin's own constraint).
        first = Order.objects.filter(
            user_id=purchase.user_id, idempotency_key=idempotency_key
        ).first()
        if first is None:
            raise
        return _replay(first, fingerprint, payment_method_id, save_payment_method)
    if order.payment_type == Order.PaymentType.CREDITS:
        return OrderCreateResult(order=order, payment=None, replayed=False)
    if checkout:
        order = checkout_start(order=order, success_url=success_url, cancel_url=cancel_url)
        return OrderCreateResult(order=order, payment=None, replayed=False)
    assert source is not None  # only an order paid with credits has none
    payment = _payment_start(order, source)
    if source.payment_method_id:  # confirmed: the order moved
        order.refresh_from_db()
    return OrderCreateResult(order=order, payment=payment, replayed=False)


def _replay(
    order: Order, fingerprint: str, payment_method_id: str | None, save: bool
) -> OrderCreateResult:
    """The first order made with this key, finishing its payment if the first request died
    (saving the card, as the request asks, if the first request did not get to)."""
    if order.request_fingerprint != fingerprint:
        raise IdempotencyConflictError(
            "This Idempotency-Key was used for a different request.", order_id=order.pk
        )
    payment = order.payments.order_by("id").first()
    if order.payment_type == Order.PaymentType.CREDITS:
        return OrderCreateResult(order=order, payment=None, replayed=True)
    if order.payment_type == Order.PaymentType.CHECKOUT:
        if not order.stripe_checkout_session_id:
            raise IdempotencyConflictError(
                "The first request with this Idempotency-Key did not open a Checkout "
                "Session; start a new order.",
                order_id=order.pk,
            )
        return OrderCreateResult(order=order, payment=payment, replayed=True)
    if payment is None and order.status == Order.Status.PENDING:
        first_failed = bool(order.gateway_error)
        if not first_failed and timezone.now() - order.created_at < IN_FLIGHT_GRACE:
            raise IdempotencyConflictError(
                "The first request with this Idempotency-Key is still in progress; retry shortly.",
                order_id=order.pk,
            )
        source = charge_source_for(
            user_id=order.user_id, payment_method_id=payment_method_id, save=save
        )
        # The first request may have made the PaymentIntent and lost Stripe's answer.
        payment = _payment_start(order, source, resume=True)
        order.refresh_from_db()
    return OrderCreateResult(order=order, payment=payment, replayed=True)


# --- paying an order again -----------------------------------------------------------

# What a customer may pay again: not yet paid, and not with the bank right now.
PAYABLE_STATUSES = frozenset(
    {Order.Status.PENDING, Order.Status.REQUIRES_ACTION, Order.Status.FAILED}
)
# A PaymentIntent in one of these takes another payment method and is confirmed again.
_INTENT_REUSABLE = frozenset(
    {"requires_payment_method", "requires_confirmation", "requires_action"}
)


@dataclass(frozen=True)
class OrderPayResult:
    order: Order
    payment: Payment


def _payable_check(order: Order) -> None:
    if order.status in PAYABLE_STATUSES:
        return
    why = {
        Order.Status.PROCESSING: "its payment is being processed by the bank",
        Order.Status.CANCELED: "it was cancelled; start a new order",
    }.get(order.status, "it is paid already")
    raise ConflictError(
        f"This order cannot be paid again: {why}.", order_id=order.pk, status=order.status
    )


def order_pay(*, order_id: int, user_id: int, payment_method_id: str | int) -> OrderPayResult:
    """Pay the customer's unpaid order (pending, waiting for 3-D Secure, or failed) with
    a card: one of their saved cards (our id or its `pm_…`) or any Stripe payment method.

    The same order, never a new one: its PaymentIntent is given the card and confirmed
    again when Stripe allows it, else a new PaymentIntent is made under a key of the
    order and attempt. What the order holds (seats) is kept if still held, or taken
    again as a new order would take it, under the plugin's checks (409 when gone); a
    hold is never extended. A failed order goes back to `pending` for the attempt.
    Like `order_create`, it moves the order at once to what Stripe answered (a
    decline fails it again and raises `CardDeclinedError`, 402). Should two payments
    of one order both succeed, the second is refunded by `payment_record`.
    """
    order = order_get_for_user(order_id=order_id, user_id=user_id)
    if isinstance(payment_method_id, int):
        payment_method_id = card_get_for_user(
            user_id=user_id, card=payment_method_id
        ).stripe_payment_method_id
    source = charge_source_for(user_id=user_id, payment_method_id=payment_method_id, save=False)
    _payable_check(order)
    if order.payment_type == Order.PaymentType.CHECKOUT and order.status != Order.Status.FAILED:
        raise ConflictError(
            "This order is paid on Stripe's Checkout page: finish there, or cancel it.",
            order_id=order.pk,
            status=order.status,
        )
    current = order.payments.order_by("-id").first()
    if (
        current is None
        and not order.gateway_error
        and (timezone.now() - order.created_at < IN_FLIGHT_GRACE)
    ):
        raise ConflictError(
            "The payment for this order is still being set up; try again in a minute.",
            order_id=order.pk,
            status=order.status,
        )
    intent = None
    if current is not None and current.status not in ("succeeded", "canceled"):
        # What Stripe says now comes first: a 3-D Secure check that failed, or a
        # success whose webhook has not arrived, must not be paid over.
        intent = gateway.payment_intent_retrieve(payment_intent_id=current.stripe_payment_intent_id)
        target = order_target_status(intent)
        if target is not None:
            payment_record(intent=intent, target=target)
    reuse = intent is not None and intent.status in _INTENT_REUSABLE
    with transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        _payable_check(locked)
        if locked.status == Order.Status.FAILED:
            order_transition(locked, Order.Status.PENDING)
        locked.pay_attempts += 1
        locked.failure_code = locked.failure_message = ""
        locked.save(update_fields=["pay_attempts", "failure_code", "failure_message", "updated_at"])
        registry.reserve(order_info(locked))
        if reuse:
            # News of the earlier attempt that arrives from now on is older than this one.
            Payment.objects.filter(pk=current.pk).update(
                stripe_event_at=int(timezone.now().timestamp())
            )
    attempt = locked.pay_attempts
    try:
        if reuse:
            intent = gateway.payment_intent_payment_method_set(
                payment_intent_id=intent.id,
                payment_method=source.payment_method_id,
                customer=source.customer_id,
                idempotency_key=f"order-{order.pk}-pay-{attempt}-method",
            )
            payment = current
        else:
            intent = gateway.payment_intent_create(
                amount=locked.card_amount,
                currency=locked.currency,
                metadata=locked.metadata,
                idempotency_key=f"order-{order.pk}-pi-{attempt}",
                payment_method=source.payment_method_id,
                customer=source.customer_id,
            )
            payment = payment_row_for(order=locked, intent=intent, locked=False)
    except gateway.PaymentGatewayError as exc:
        _gateway_error_note(locked, exc)
        raise
    except gateway.InvalidPaymentMethodError as exc:
        exc.extra["order_id"] = order.pk
        raise
    if Order.objects.filter(pk=order.pk, status=Order.Status.CANCELED).exists():
        # Cancelled while the card was being set: nothing is charged. (The cancel may
        # have cancelled this PaymentIntent already.)
        with contextlib.suppress(gateway.PaymentGatewayError):
            gateway.payment_intent_cancel(
                payment_intent_id=intent.id,
                idempotency_key=f"order-{order.pk}-pay-{attempt}-cancel",
            )
        raise ConflictError("The order was cancelled meanwhile.", order_id=order.pk)
    if intent.status == "requires_confirmation":
        intent = _payment_confirm(locked, intent, key=f"order-{order.pk}-pay-{attempt}-confirm")
    target = order_target_status(intent)
    if target is not None:
        payment_record(intent=intent, target=target)
    order.refresh_from_db()
    payment.refresh_from_db()
    return OrderPayResult(order=order, payment=payment)


def _order_fail(order: Order, *, code: str, message: str) -> None:
    with transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        order_transition(locked, Order.Status.FAILED, failure_code=code, failure_message=message)


def _gateway_error_note(order: Order, exc: DomainError) -> None:
    Order.objects.filter(pk=order.pk).update(gateway_error=exc.message[:500])
    exc.extra["order_id"] = order.pk


def _payment_start(order: Order, source: ChargeSource, *, resume: bool = False) -> Payment:
    """Create (or, when `resume`, first look for) the order's PaymentIntent, and confirm it
    when a payment method was given."""
    try:
        source = charge_source_ready(user_id=order.user_id, source=source)
    except gateway.InvalidPaymentMethodError as exc:
        _order_fail(order, code="invalid_payment_method", message=exc.message)
        exc.extra["order_id"] = order.pk
        raise
    except gateway.PaymentGatewayError as exc:
        _gateway_error_note(order, exc)
        raise
    payment_method_id = source.payment_method_id
    try:
        intent = gateway.payment_intent_create(
            amount=order.card_amount,
            currency=order.currency,
            metadata=order.metadata,
            description=order.description,
            idempotency_key=f"order-{order.pk}-pi",
            payment_method=payment_method_id,
            customer=source.customer_id,
            created_after=(
                int(order.created_at.timestamp()) - gateway.LOOKUP_CLOCK_SLACK if resume else None
            ),
        )
    except gateway.InvalidPaymentMethodError as exc:
        _order_fail(order, code="invalid_payment_method", message=exc.message)
        exc.extra["order_id"] = order.pk
        raise
    except gateway.PaymentGatewayError as exc:
        _gateway_error_note(order, exc)
        raise
    payment = payment_row_for(order=order, intent=intent, locked=False)
    if not payment_method_id:
        return payment
    if intent.status == "requires_confirmation":  # not when resuming a confirmed one
        intent = _payment_confirm(order, intent)
    target = order_target_status(intent)
    if target is not None:
        try:
            payment_record(intent=intent, target=target)
        except Exception:
            # The webhook carries the same news; its worker retries this.
            log.exception("order %s: applying the confirmed payment failed", order.pk)
    payment.refresh_from_db()
    return payment


def _payment_confirm(
    order: Order, intent: PaymentIntentData, *, key: str | None = None
) -> PaymentIntentData:
    """Confirm the order's PaymentIntent; a decline fails the order (402)."""
    try:
        intent = gateway.payment_intent_confirm(
            payment_intent_id=intent.id, idempotency_key=key or f"order-{order.pk}-pi-confirm"
        )
    except gateway.CardDeclinedError as exc:
        declined = replace(
            intent,
            status="requires_payment_method",
            last_error_code=str(exc.extra.get("decline_code") or "card_declined"),
            last_error_message=exc.message,
        )
        payment_record(intent=declined, target=Order.Status.FAILED)
        exc.extra["order_id"] = order.pk
        exc.extra["payment_intent_id"] = intent.id
        raise
    except gateway.PaymentGatewayError as exc:
        _gateway_error_note(order, exc)
        raise
    return intent


def order_cancel(*, order_id: int, user_id: int) -> Order:
    """Cancel an unpaid order, its Checkout Session and its PaymentIntents; a paid order
    is refunded instead. Credits an unpaid order took go back to the buyer. An order
    paid with credits may be cancelled by its buyer until its `cancellable_until`:
    it is refunded in credits (`order_cancel_paid_with_credits`).

    An open Checkout Session is expired at Stripe before the order is canceled, so
    nobody can pay a canceled order; one that completed first pays the order,
    which then is not canceled (409).
    """
    order = order_get_for_user(order_id=order_id, user_id=user_id)  # 404 before any lock
    with sql.order_cancel_lock(order_id=order.pk):
        return _order_cancel(order_get_for_user(order_id=order_id, user_id=user_id))


def _order_cancel(order: Order) -> Order:
    user_id = order.user_id
    if order.payment_type == Order.PaymentType.CREDITS and order.status not in UNPAID_STATUSES:
        return order_cancel_paid_with_credits(order_id=order.pk, user_id=user_id)
    if order.status not in UNPAID_STATUSES:
        raise ConflictError(
            f"Only an unpaid order can be cancelled; this one is {order.status}.",
            order_id=order.pk,
            status=order.status,
        )
    if (
        order.status == Order.Status.PENDING
        and not order.payments.exists()
        and not order.stripe_checkout_session_id
        and not order.gateway_error
        and timezone.now() - order.created_at < IN_FLIGHT_GRACE
    ):
        raise ConflictError(
            "The payment for this order is still being set up; try again in a minute.",
            order_id=order.pk,
            status=order.status,
        )
    if order.status == Order.Status.PROCESSING:
        raise ConflictError(
            "The payment is being processed by the bank and cannot be cancelled now.",
            order_id=order.pk,
            status=order.status,
        )
    if order.stripe_checkout_session_id:
        session = gateway.checkout_session_expire(
            session_id=order.stripe_checkout_session_id,
            idempotency_key=f"order-{order.pk}-checkout-expire",
        )
        if session.status == "complete":
            checkout_session_record(session=session, event_type="checkout.session.completed")
            order.refresh_from_db()
            raise ConflictError(
                f"The customer completed checkout before the order could be cancelled; "
                f"it is {order.status}.",
                order_id=order.pk,
                status=order.status,
            )
    for payment in order.payments.exclude(status__in=["succeeded", "canceled"]):
        try:
            intent = gateway.payment_intent_cancel(
                payment_intent_id=payment.stripe_payment_intent_id,
                idempotency_key=f"order-{order.pk}-{payment.pk}-cancel",
            )
        except gateway.PaymentGatewayError as exc:
            # Stripe refuses to cancel a PaymentIntent that has just succeeded.
            current = gateway.payment_intent_retrieve(
                payment_intent_id=payment.stripe_payment_intent_id
            )
            target = order_target_status(current)
            if target is not None:
                payment_record(intent=current, target=target)
            if current.status != "canceled":
                raise ConflictError(
                    "The payment could not be cancelled; it may have just succeeded.",
                    order_id=order.pk,
                ) from exc
            intent = current
        payment_record(intent=intent, target=Order.Status.CANCELED)
    with transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        order_transition(locked, Order.Status.CANCELED)
    order.refresh_from_db()
    if order.status != Order.Status.CANCELED:
        raise ConflictError(
            f"The order could not be cancelled; it is {order.status}.",
            order_id=order.pk,
            status=order.status,
        )
    return order
