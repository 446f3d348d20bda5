"""The `subscription` purchase type: plans that grant credits every billing cycle.

Billing turns every paid Stripe invoice of a subscription into an order of this
type; fulfilment grants that cycle's credits with the order as the ledger
reference, so an invoice reported twice (`invoice.paid` and
`invoice.payment_succeeded`) grants once. A disputed cycle's credits are
frozen while the dispute is open, as a credit pack's are.

A cycle's credits are a paid lot of the plan. What is left of it when the
cycle's period ends follows the plan: it expires then (`expire`), or it rolls
over (`rollover`), and when the plan caps the roll-over, a new cycle's start
expires what the earlier cycles left above the cap.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from credits.models import CreditLot, CreditTransaction, Plan
from credits.services import credits_grant, credits_rollover_cap
from kernel.errors import InvalidInputError
from purchasables import hookimpl
from purchasables.builtin.credit_pack import (
    credits_delivered,
    credits_dispute_hold,
    credits_refund_reverse,
)
from purchasables.types import (
    DeliveryLine,
    DisputeInfo,
    OrderInfo,
    PurchaseRequest,
    PurchaseType,
    Quote,
    RecurringPrice,
    RefundInfo,
)

PURCHASE_TYPE = "subscription"


@hookimpl
def tollgate_purchase_types() -> list[PurchaseType]:
    return [
        PurchaseType(
            name=PURCHASE_TYPE,
            order_type="subscription",
            label="Subscriptions",
            description="Plans billed every cycle, each paid cycle granting credits.",
        )
    ]


@hookimpl
def tollgate_catalog(purchase_type: str) -> dict[str, Any]:
    return {
        "plans": [
            {
                "id": plan.pk,
                "name": plan.name,
                "price": plan.amount,
                "currency": plan.currency,
                "interval": plan.interval,
                "interval_count": plan.interval_count,
                "credits_per_cycle": plan.credits_per_cycle,
                "unused_credits": plan.unused_credits,
                "rollover_cap": plan.rollover_cap,
            }
            for plan in Plan.objects.filter(active=True)
        ]
    }


def _plan_id(request: PurchaseRequest) -> int:
    plan_id = request.service_id or request.service_data.get("plan_id")
    if not isinstance(plan_id, int) or isinstance(plan_id, bool):
        raise InvalidInputError("A subscription names its `plan_id`.", field="plan_id")
    return plan_id


@hookimpl
def tollgate_quote(request: PurchaseRequest) -> Quote:
    plan_id = _plan_id(request)
    # A plan withdrawn from sale still serves its subscribers' paid cycles.
    plans = Plan.objects.all() if request.renewal else Plan.objects.filter(active=True)
    plan = plans.filter(pk=plan_id).first()
    if plan is None:
        raise InvalidInputError(f"No active plan with id {plan_id}.", field="plan_id")
    return Quote(
        amount=plan.amount,
        currency=plan.currency,
        description=f"{plan.name} subscription",
        metadata={"plan_id": str(plan.pk)},
        data={"plan_id": plan.pk, "credits": plan.credits_per_cycle},
        recurring=RecurringPrice(
            stripe_price_id=plan.stripe_price_id,
            interval=plan.interval,
            interval_count=plan.interval_count,
            plan_name=plan.name,
        ),
    )


@hookimpl
def tollgate_fulfil(order: OrderInfo) -> dict[str, Any]:
    # Billing hands over only whole, fully paid cycles; `order.invoice` says which.
    invoice = order.invoice
    plan = Plan.objects.filter(pk=order.data.get("plan_id")).first()
    expires_at = None
    if (
        plan is not None
        and plan.unused_credits == Plan.UnusedCredits.EXPIRE
        and invoice is not None
        and invoice.period_end
    ):
        expires_at = datetime.fromtimestamp(invoice.period_end, tz=UTC)
    entry = credits_grant(
        user_id=order.user_id,
        amount=int(order.data["credits"]),
        kind=CreditTransaction.Kind.SUBSCRIPTION,
        reference=f"order-{order.order_id}",
        memo=f"Subscription cycle, order {order.order_id}"
        + (f", invoice {invoice.stripe_invoice_id}" if invoice else ""),
        category=CreditLot.Category.PAID,
        source_order_id=order.order_id,
        cost_basis=order.amount,
        currency=order.currency,
        expires_at=expires_at,
        plan_id=plan.pk if plan is not None else None,
    )
    result: dict[str, Any] = {"ledger_entry_id": entry.pk, "credits": entry.amount}
    if (
        plan is not None
        and plan.unused_credits == Plan.UnusedCredits.ROLLOVER
        and plan.rollover_cap is not None
    ):
        capped = credits_rollover_cap(
            user_id=order.user_id,
            plan_id=plan.pk,
            cap=plan.rollover_cap,
            reference=f"rollover-order-{order.order_id}",
            keep_lot_id=CreditLot.objects.get(entry_id=entry.pk).pk,
        )
        if capped is not None:
            result["credits_expired_over_cap"] = -capped.amount
    if invoice is not None:
        result.update(
            billing_reason=invoice.billing_reason,
            period_start=invoice.period_start,
            period_end=invoice.period_end,
        )
    return result


@hookimpl
def tollgate_delivered(order: OrderInfo, fulfilment: dict[str, Any] | None) -> list[DeliveryLine]:
    return credits_delivered(fulfilment, label="Credits for this cycle")


@hookimpl
def tollgate_refund(order: OrderInfo, refund: RefundInfo) -> dict[str, Any]:
    return credits_refund_reverse(
        order=order,
        refund=refund,
        credits=int(order.data["credits"]),
        memo=(
            f"Dispute {refund.stripe_dispute_id} lost: subscription order {order.order_id}"
            if refund.stripe_dispute_id
            else f"Refund of subscription order {order.order_id}"
        ),
    )


@hookimpl
def tollgate_dispute(order: OrderInfo, dispute: DisputeInfo) -> dict[str, Any]:
    return credits_dispute_hold(order=order, dispute=dispute, credits=int(order.data["credits"]))
