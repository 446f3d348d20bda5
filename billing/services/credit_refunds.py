"""Refunds in credits: of orders paid with credits, and of card payments, as credits.

Three ways a refund reaches the buyer (`Refund.method`): to the card at Stripe
(`refunds.refund_create`); the credits the order was paid with, given back to
the spend they came from (`credits`); card money refunded as new paid credits
instead of to the card (`as_credits`, staff only). A refund in credits has no
Stripe side: its row is stored `succeeded` and applied in the same transaction
(`refunds.refund_apply`), which gives the credits through the ledger hook, keyed
on the refund, and runs the plugin's refund hook as for any refund.

A refund of an order paid partly with credits splits between the card and the
credits in proportion to what each paid, unless the request names the parts.

The rule: every refund row's `amount` is the part of the order's price it
refunds, so all of an order's refunds together never exceed its price; the
credits side is capped by the credits the order took, the card side by what the
card paid.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from billing.models import Order, Refund
from billing.services.refunds import (
    LIVE,
    REFUNDABLE_STATUSES,
    RefundExceedsCapturedError,
    card_refundable,
    refund_apply,
    refund_create,
)
from kernel.errors import ConflictError, InvalidInputError, NotFoundError
from kernel.money import currency_get, from_minor, to_minor


def _credits_back_so_far(order: Order) -> tuple[int, int]:
    """Credits (and their value) that refunds of the order gave, or are giving, back."""
    rows = order.refunds.filter(method=Refund.Method.CREDITS).filter(
        Q(status__in=LIVE) | Q(applied_at__isnull=False)
    )
    sums = rows.aggregate(c=Sum("credits"), v=Sum("amount"))
    return sums["c"] or 0, sums["v"] or 0


def _value_of(order: Order, before: int, credits: int) -> int:
    """The part of the price `credits` more credits stand for, after `before` came back:
    the values of all of them add up to exactly `credits_value`."""
    total, value = order.credits, order.credits_value
    return value * (before + credits) // total - value * before // total


def _locked(order_id: int) -> Order:
    order = Order.objects.select_for_update().filter(pk=order_id).first()
    if order is None:
        raise NotFoundError("No such order.", order_id=order_id)
    if order.status not in REFUNDABLE_STATUSES:
        raise ConflictError(
            f"Only a paid order can be refunded; this one is {order.status}.",
            order_id=order.pk,
            status=order.status,
        )
    return order


def _credits_back_apply(
    order: Order, credits: int, *, source: str, reason: str, initiated_by_id: int | None
) -> Refund:
    """Store and apply a refund giving back `credits` of what the row-locked order took."""
    before, _ = _credits_back_so_far(order)
    refund = Refund.objects.create(
        order=order,
        payment=None,
        method=Refund.Method.CREDITS,
        amount=_value_of(order, before, credits),
        credits=credits,
        currency=order.currency,
        status=Refund.Status.SUCCEEDED,
        source=source,
        reason=reason[:500],
        initiated_by_id=initiated_by_id,
    )
    refund_apply(refund_id=refund.pk)
    refund.refresh_from_db()
    return refund


def _parts(
    order: Order, amount: Decimal | int | str | None, credits: int | None
) -> tuple[int, int]:
    """The card part (minor units) and the credits a refund request stands for."""
    _, card_left = card_refundable(order)
    credits_before, _ = _credits_back_so_far(order)
    credits_left = order.credits - credits_before
    if credits is not None:  # the request names both parts
        card = 0 if amount is None else to_minor(amount, order.currency)
        card_part, credits_part = card, credits
    elif amount is None:  # all that is left of both
        card_part, credits_part = card_left, credits_left
    else:  # this much of the price, split as the order was paid
        wanted = to_minor(amount, order.currency)
        step = currency_get(order.currency).step
        card_part = wanted * order.card_amount // order.amount // step * step
        to_credits = wanted - card_part
        credits_part = min(credits_left, order.credits * to_credits // order.credits_value)
    if (
        card_part < 0
        or credits_part < 0
        or card_part > card_left
        or credits_part > credits_left
        or card_part + credits_part == 0
    ):
        raise RefundExceedsCapturedError(
            "The refund is more than what is left to refund on this order.",
            order_id=order.pk,
            refundable=card_left,
            credits_refundable=credits_left,
            requested=card_part,
            credits_requested=credits_part,
        )
    return card_part, credits_part


def refund_order(
    *,
    order_id: int,
    amount: Decimal | int | str | None,
    credits: int | None = None,
    reason: str = "",
    initiated_by_id: int | None = None,
    source: str = Refund.Source.STAFF,
) -> Refund:
    """Refund a paid order, whatever paid it (staff).

    An order paid only by card is refunded at Stripe (`refund_create`). One paid
    with credits, in full or in part: `amount` (major units) of its price, split
    between the card and the credits as they paid it, or all that is left when
    None; with `credits`, the request names the parts: `credits` credits back and
    `amount` (or nothing) to the card. Answers the card refund, or the credits one
    when there is no card part.
    """
    order = Order.objects.filter(pk=order_id).first()
    if order is None:
        raise NotFoundError("No such order.", order_id=order_id)
    if not order.credits:
        if credits is not None:
            raise InvalidInputError(
                "This order was not paid with credits; refund `amount` to the card, "
                "or refund it as credits with `to_credits`.",
                field="credits",
            )
        return refund_create(
            order_id=order_id,
            amount=amount,
            reason=reason,
            initiated_by_id=initiated_by_id,
            source=source,
        )
    with transaction.atomic():
        card_part, credits_part = _parts(_locked(order_id), amount, credits)
    card_refund = None
    if card_part:
        card_refund = refund_create(
            order_id=order_id,
            amount=from_minor(card_part, order.currency),
            reason=reason,
            initiated_by_id=initiated_by_id,
            source=source,
        )
    if not credits_part:
        assert card_refund is not None
        return card_refund
    with transaction.atomic():
        locked = _locked(order_id)
        credits_before, _ = _credits_back_so_far(locked)
        if credits_part > locked.credits - credits_before:
            raise RefundExceedsCapturedError(
                "The credits were given back meanwhile.",
                order_id=order_id,
                credits_refundable=locked.credits - credits_before,
            )
        credits_refund = _credits_back_apply(
            locked, credits_part, source=source, reason=reason, initiated_by_id=initiated_by_id
        )
    return card_refund or credits_refund


def refund_as_credits(
    *,
    order_id: int,
    amount: Decimal | int | str | None,
    reason: str = "",
    initiated_by_id: int | None = None,
) -> Refund:
    """Refund `amount` (major units; None for all that is left) of a paid order's card
    payment as credits instead of to the card: no Stripe refund; the buyer gets new
    paid credits tied to the order and the plugin reverses delivery as for any refund.

    The credits: the order's credit price in proportion, or, for an order with no
    credit price, the money at the credit rate (`CREDITS_UNIT_AMOUNT` per credit,
    in `CREDITS_CURRENCY`). A credit-pack order is refunded to the card only.
    Stored and applied in one transaction: exactly once.
    """
    with transaction.atomic():
        order = _locked(order_id)
        if order.order_type == Order.OrderType.CREDIT:
            raise InvalidInputError(
                "Credits bought are refunded to the card, not as credits.",
                order_id=order.pk,
                field="to_credits",
            )
        payment, card_left = card_refundable(order)
        money = card_left if amount is None else to_minor(amount, order.currency)
        if payment is None or money <= 0 or money > card_left:
            raise RefundExceedsCapturedError(
                "The refund is more than what is left to refund on this order.",
                order_id=order.pk,
                refundable=card_left,
                requested=money,
            )
        credits = _credits_for_money(order, money)
        refund = Refund.objects.create(
            order=order,
            payment=payment,
            method=Refund.Method.AS_CREDITS,
            amount=money,
            credits=credits,
            currency=order.currency,
            status=Refund.Status.SUCCEEDED,
            source=Refund.Source.STAFF,
            reason=reason[:500],
            initiated_by_id=initiated_by_id,
        )
        refund_apply(refund_id=refund.pk)
        refund.refresh_from_db()
        return refund


def _credits_for_money(order: Order, money: int) -> int:
    before = (
        order.refunds.filter(method=Refund.Method.AS_CREDITS).aggregate(s=Sum("amount"))["s"] or 0
    )
    if order.credit_price:
        price = order.credit_price
        credits = price * (before + money) // order.amount - price * before // order.amount
    else:
        conf = settings.TOLLGATE
        if order.currency != str(conf["CREDITS_CURRENCY"]).lower():
            raise InvalidInputError(
                f"Credits are sold in {conf['CREDITS_CURRENCY']}; an order in "
                f"{order.currency} with no credit price is refunded to the card.",
                order_id=order.pk,
                field="to_credits",
            )
        unit = int(conf["CREDITS_UNIT_AMOUNT"])
        credits = (before + money) // unit - before // unit
    if credits <= 0:
        raise InvalidInputError(
            "That refund is worth less than one credit.", order_id=order.pk, field="amount"
        )
    return credits


def order_cancel_paid_with_credits(*, order_id: int, user_id: int) -> Order:
    """The buyer cancels their order paid with credits, before its `cancellable_until`:
    all its credits go back and the plugin reverses delivery (cancels the booking),
    in one transaction, once (a second cancel finds it refunded: 409)."""
    with transaction.atomic():
        order = Order.objects.select_for_update().filter(pk=order_id, user_id=user_id).first()
        if order is None:
            raise NotFoundError("No such order.", order_id=order_id)
        if order.status != Order.Status.PAID:
            raise ConflictError(
                f"Only a paid order can be cancelled for its credits; this one is {order.status}.",
                order_id=order.pk,
                status=order.status,
            )
        until = order.cancellable_until
        if until is None or timezone.now() >= until:
            raise ConflictError(
                "This order can no longer be cancelled by its buyer"
                + (f" (it could be until {until.isoformat()})." if until else "."),
                order_id=order.pk,
                status=order.status,
                cancellable_until=until.isoformat() if until else None,
            )
        credits_before, _ = _credits_back_so_far(order)
        _credits_back_apply(
            order,
            order.credits - credits_before,
            source=Refund.Source.CUSTOMER,
            reason="Cancelled by the buyer",
            initiated_by_id=user_id,
        )
    order.refresh_from_db()
    return order
