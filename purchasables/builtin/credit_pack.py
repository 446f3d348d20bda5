"""The `credits` purchase type: credit packs and custom amounts at a configured rate.

Fulfilment appends one `purchase` entry to the buyer's ledger with the order as
its reference, so even a second call could not count the credits twice; the
credits are a paid lot that remembers the order and what was paid for it. A
refund debits credits in proportion to the money returned, from what is left of
the order's own lot first, and the debits of all an order's refunds add up to
exactly the credits it bought. While the
order's payment is disputed, its share of the credits is frozen (unspendable);
a lost dispute debits them as a refund does.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from credits.models import CreditLot, CreditPack, CreditTransaction
from credits.selectors import credit_packs_active
from credits.services import (
    credits_debit_refund,
    credits_freeze,
    credits_grant,
    credits_unfreeze,
)
from kernel.errors import InvalidInputError
from purchasables import hookimpl
from purchasables.types import (
    DeliveryLine,
    DisputeInfo,
    OrderInfo,
    PurchaseRequest,
    PurchaseType,
    Quote,
    RefundInfo,
)

PURCHASE_TYPE = "credits"


def _rate() -> dict[str, Any]:
    conf = settings.TOLLGATE
    return {
        "currency": conf["CREDITS_CURRENCY"],
        "unit_amount": conf["CREDITS_UNIT_AMOUNT"],
        "min_credits": conf["CREDITS_MIN"],
        "max_credits": conf["CREDITS_MAX"],
    }


@hookimpl
def tollgate_purchase_types() -> list[PurchaseType]:
    return [
        PurchaseType(
            name=PURCHASE_TYPE,
            order_type="credit",
            label="Credits",
            description="Credit packs, or a custom number of credits at the per-credit rate.",
        )
    ]


@hookimpl
def tollgate_catalog(purchase_type: str) -> dict[str, Any]:
    packs = [
        {
            "id": pack.pk,
            "name": pack.name,
            "credits": pack.credits,
            "price": pack.price,
            "currency": pack.currency,
        }
        for pack in credit_packs_active()
    ]
    return {"packs": packs, "rate": _rate()}


@hookimpl
def tollgate_quote(request: PurchaseRequest) -> Quote:
    if request.pack_id is not None:
        pack = CreditPack.objects.filter(pk=request.pack_id, active=True).first()
        if pack is None:
            raise InvalidInputError(
                f"No active credit pack with id {request.pack_id}.", pack_id=request.pack_id
            )
        credits, amount, currency = pack.credits, pack.price, pack.currency
        description = f"{pack.name}: {credits} credits"
    else:
        rate = _rate()
        credits = request.credit_amount
        if credits is None:
            raise InvalidInputError(
                "A credit purchase names a `pack_id` or a `credit_amount`.",
                field="credit_amount",
            )
        if not rate["min_credits"] <= credits <= rate["max_credits"]:
            raise InvalidInputError(
                f"A custom credit purchase is between {rate['min_credits']} and "
                f"{rate['max_credits']} credits.",
                field="credit_amount",
                min_credits=rate["min_credits"],
                max_credits=rate["max_credits"],
            )
        amount, currency = credits * rate["unit_amount"], rate["currency"]
        description = f"{credits} credits"
    return Quote(
        amount=amount,
        currency=currency,
        description=description,
        metadata={"credit_amount": str(credits)},
        data={"credits": credits, "pack_id": request.pack_id},
    )


@hookimpl
def tollgate_fulfil(order: OrderInfo) -> dict[str, Any]:
    entry = credits_grant(
        user_id=order.user_id,
        amount=int(order.data["credits"]),
        kind=CreditTransaction.Kind.PURCHASE,
        reference=f"order-{order.order_id}",
        memo=f"Order {order.order_id}",
        category=CreditLot.Category.PAID,
        source_order_id=order.order_id,
        cost_basis=order.amount,
        currency=order.currency,
    )
    return {"ledger_entry_id": entry.pk, "credits": entry.amount}


@hookimpl
def tollgate_delivered(order: OrderInfo, fulfilment: dict[str, Any] | None) -> list[DeliveryLine]:
    return credits_delivered(fulfilment, label="Credits added")


def credits_delivered(fulfilment: dict[str, Any] | None, *, label: str) -> list[DeliveryLine]:
    """The credits a fulfilment granted, as a line for the buyer."""
    if not fulfilment or "credits" not in fulfilment:
        return []
    return [DeliveryLine(label, str(fulfilment["credits"]))]


def refund_debit(
    *, credits: int, order_amount: int, refunded_before: int, refunded_now: int
) -> int:
    """Credits to take back for `refunded_now` of `order_amount`, given earlier refunds.

    Each refund takes the difference between the proportional debits after and
    before it, rounded down, so partial refunds never add up to more than the
    credits bought and a final full refund takes the rest.
    """
    after = credits * (refunded_before + refunded_now) // order_amount
    before = credits * refunded_before // order_amount
    return after - before


def credits_refund_reverse(
    *, order: OrderInfo, refund: RefundInfo, credits: int, memo: str
) -> dict[str, Any]:
    """Take back the credits a refund stands for: its proportional share of `credits`."""
    debit = refund_debit(
        credits=credits,
        order_amount=order.amount,
        refunded_before=refund.refunded_total - refund.amount,
        refunded_now=refund.amount,
    )
    if debit <= 0:
        return {"credits": 0}
    entry = credits_debit_refund(
        user_id=order.user_id,
        amount=debit,
        reference=f"refund-{refund.refund_id}",
        memo=memo,
        source_order_id=order.order_id,
    )
    return {"ledger_entry_id": entry.pk, "credits": entry.amount}


def credits_dispute_hold(*, order: OrderInfo, dispute: DisputeInfo, credits: int) -> dict[str, Any]:
    """Freeze the disputed share of `credits` while the dispute is open; release it after.

    What was spent before the dispute opened cannot be frozen; a lost dispute's
    debit (through the refund hook) then records it as a debt.
    """
    reference = f"dispute-{dispute.dispute_id}"
    if dispute.state != "open":
        return {"credits_released": credits_unfreeze(user_id=order.user_id, reference=reference)}
    share = credits * dispute.at_stake // order.amount
    if share <= 0:
        return {"credits_frozen": 0}
    freeze = credits_freeze(
        user_id=order.user_id,
        amount=share,
        reference=reference,
        memo=f"Dispute {dispute.stripe_dispute_id} of order {order.order_id}",
    )
    return {"credits_frozen": freeze.amount, "credits_disputed": share}


def _refund_memo(order: OrderInfo, refund: RefundInfo, what: str) -> str:
    if refund.stripe_dispute_id:
        return f"Dispute {refund.stripe_dispute_id} lost: {what} {order.order_id}"
    return f"Refund {refund.stripe_refund_id or refund.refund_id} of {what} {order.order_id}"


@hookimpl
def tollgate_refund(order: OrderInfo, refund: RefundInfo) -> dict[str, Any]:
    return credits_refund_reverse(
        order=order,
        refund=refund,
        credits=int(order.data["credits"]),
        memo=_refund_memo(order, refund, "order"),
    )


@hookimpl
def tollgate_dispute(order: OrderInfo, dispute: DisputeInfo) -> dict[str, Any]:
    return credits_dispute_hold(order=order, dispute=dispute, credits=int(order.data["credits"]))
