"""Paying an order with credits: all of it, or credits first and a card for the rest.

Credits are taken from the buyer's ledger inside the transaction that creates
the order, through the ledger hooks (billing never touches the ledger itself):
an order paid in full with credits is `paid` and fulfilled before that
transaction commits, with no Stripe call; not enough credits rolls all of it
back (no order, no seat held). With `apply_credits` the card pays the rest,
`card_amount`; the credits stay taken while the order waits for its card (a
declined card may be followed by another, on the same order), and go back to
the buyer exactly once when the order is cancelled, by the buyer or by
`orders_holding_credits_expire` when it stayed unpaid too long.

The rule: `amount` is always the order's whole price; `credits_value` is the
part the credits paid, so `card_amount = amount - credits_value` is what any
card payment of the order must be.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.models import Order
from billing.services.payments import order_transition
from kernel.errors import ConflictError, InvalidInputError
from kernel.money import currency_get
from purchasables.registry import NotSoldThisWayError, registry
from purchasables.types import Quote

log = logging.getLogger(__name__)

# An unpaid order holding credits is cancelled (the credits go back) after this
# long; `TOLLGATE["CREDITS_HOLD_MINUTES"]` overrides it.
CREDITS_HOLD = timedelta(minutes=30)


def credits_hold() -> timedelta:
    minutes = settings.TOLLGATE.get("CREDITS_HOLD_MINUTES")
    return CREDITS_HOLD if minutes is None else timedelta(minutes=int(minutes))


def credits_request_check(
    *, payment_type: str, apply_credits: bool, payment_method_id: str | None
) -> None:
    """Refuse (422) a request that asks for credits in a way that cannot work."""
    if payment_type == Order.PaymentType.CREDITS and payment_method_id:
        raise InvalidInputError(
            "An order paid with credits takes no card; leave out `payment_method_id`, "
            'or use `"apply_credits": true` to pay the rest by card.',
            field="payment_method_id",
        )
    if apply_credits and payment_type == Order.PaymentType.CHECKOUT:
        raise InvalidInputError(
            "Credits are applied to PaymentIntent orders only "
            '(`"payment_type": "intent"`), not to Checkout.',
            field="apply_credits",
        )


def card_rest(*, amount: int, credits: int, taken: int, currency: str) -> int:
    """What the card pays when `taken` of `credits` credits pay part of `amount`:
    `amount * (credits - taken) / credits`, rounded up to the currency's step."""
    step = currency_get(currency).step
    rest = -(-amount * (credits - taken) // credits)
    return min(amount, -(-rest // step) * step)


def _credit_price(order: Order, quote: Quote) -> int:
    price = quote.credits
    if price is None:
        raise NotSoldThisWayError(
            f"{order.purchase_type!r} has no price in credits here; pay it by card.",
            purchase_type=order.purchase_type,
        )
    if isinstance(price, bool) or not isinstance(price, int) or price <= 0:
        raise TypeError(
            f"A plugin quoted {price!r} credits; a credit price is a positive whole number."
        )
    return price


class _WorthNothing(Exception):
    """The credits a buyer has would pay less than one step of the currency."""


def order_credits_take(*, order: Order, quote: Quote, apply_credits: bool) -> None:
    """Pay the just-created `order` with credits, in the transaction that creates it.

    With `payment_type` credits: all of the quote's credit price, or a 409 saying
    how many are `missing`; the order is then paid and fulfilled here. With
    `apply_credits`: as many as the buyer has, at most the credit price; the card
    pays the rest (all of it when the buyer has none), and an order the credits
    pay in full is paid here as with `payment_type` credits.
    """
    price = _credit_price(order, quote)
    order.credits_reference = f"order-{order.pk}-{secrets.token_hex(8)}"
    memo = f"Order {order.pk}: {order.description}"[:200]
    if order.payment_type == Order.PaymentType.CREDITS:
        taken = registry.credits_take(
            user_id=order.user_id,
            credits=price,
            reference=order.credits_reference,
            memo=memo,
            partial=False,
        )
        _paid_with_credits(order, price, taken)
        return
    try:
        with transaction.atomic():
            taken = registry.credits_take(
                user_id=order.user_id,
                credits=price,
                reference=order.credits_reference,
                memo=memo,
                partial=True,
            )
            if taken >= price:
                order.payment_type = Order.PaymentType.CREDITS
                _paid_with_credits(order, price, taken)
                return
            if taken <= 0:
                raise _WorthNothing
            rest = card_rest(
                amount=order.amount, credits=price, taken=taken, currency=order.currency
            )
            if rest >= order.amount:
                raise _WorthNothing  # undone with the savepoint: the buyer keeps them
            order.credits, order.credits_value = taken, order.amount - rest
            order.save(
                update_fields=["credits", "credits_value", "credits_reference", "updated_at"]
            )
    except _WorthNothing:
        order.credits, order.credits_value, order.credits_reference = 0, 0, ""


def _paid_with_credits(order: Order, price: int, taken: int) -> None:
    if taken != price:
        # The reference is the order's own, never reused: this cannot happen.
        raise ConflictError(
            f"The ledger took {taken} credits for order {order.pk}, not {price}.",
            order_id=order.pk,
        )
    order.credits, order.credits_value = taken, order.amount
    order.save(
        update_fields=[
            "payment_type",
            "credits",
            "credits_value",
            "credits_reference",
            "updated_at",
        ]
    )
    order_transition(order, Order.Status.PAID)


def orders_holding_credits_expire(*, now=None) -> int:
    """The sweep: cancel unpaid orders that have held their buyer's credits longer than
    `credits_hold()`, which gives the credits back. Answers how many were cancelled.

    An order whose payment the bank is processing is left alone; one that was paid
    meanwhile refuses the cancel and is skipped.
    """
    from billing.services.orders import order_cancel  # it cancels through this module

    stale = (now or timezone.now()) - credits_hold()
    due = Order.objects.filter(
        credits__gt=0,
        status__in=[Order.Status.PENDING, Order.Status.REQUIRES_ACTION, Order.Status.FAILED],
        created_at__lt=stale,
    ).values_list("pk", "user_id")
    cancelled = 0
    for order_id, user_id in due:
        try:
            order_cancel(order_id=order_id, user_id=user_id)
            cancelled += 1
        except Exception:
            log.exception("order %s: cancelling it for the credits it held failed", order_id)
    return cancelled
