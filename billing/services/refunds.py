"""Refunds: started by staff or automatically, or made in Stripe's dashboard.

The rule: every refund write takes the order's row lock first; one Stripe refund
is one `Refund` row (found by its `re_…` id, or, before Stripe has answered, by
our id in its metadata); and its effect reaches the plugin once, when Stripe
says it succeeded, in the transaction that sets `applied_at`. Refunds are never
derived from a charge's cumulative `amount_refunded`.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from billing import gateway
from billing.models import Order, Payment, Refund
from billing.money import to_minor
from billing.services.payments import order_info, order_transition
from billing.stripe_objects import RefundData
from kernel.errors import ConflictError, DomainError, ErrorCode, NotFoundError
from purchasables.registry import registry
from purchasables.types import RefundInfo

log = logging.getLogger(__name__)

REFUNDABLE_STATUSES = (Order.Status.PAID, Order.Status.PARTIALLY_REFUNDED)
LIVE_REFUND_STATUSES = (
    Refund.Status.PENDING,
    Refund.Status.REQUIRES_ACTION,
    Refund.Status.SUCCEEDED,
)
_STRIPE_STATUS = {
    "succeeded": Refund.Status.SUCCEEDED,
    "pending": Refund.Status.PENDING,
    "requires_action": Refund.Status.REQUIRES_ACTION,
    "failed": Refund.Status.FAILED,
    "canceled": Refund.Status.CANCELED,
}
# A refund row still without a Stripe id this long after it was made is
# submitted again by the sweep (its first request died or Stripe was down).
RESUBMIT_AFTER = timedelta(minutes=1)


class RefundExceedsCapturedError(DomainError):
    code = ErrorCode.REFUND_EXCEEDS_CAPTURED
    status = 409
    retryable = False


class RefundBeforePaymentError(DomainError):
    """A refund event arrived before the payment it refunds was recorded; retried later."""

    code = ErrorCode.ORDER_STATE_CONFLICT
    status = 409


def _captured(order: Order) -> int:
    total = order.payments.filter(status="succeeded").aggregate(s=Sum("amount_received"))["s"]
    return total or 0


def _committed(order: Order) -> int:
    live = order.refunds.filter(status__in=LIVE_REFUND_STATUSES)
    return live.aggregate(s=Sum("amount"))["s"] or 0


def refund_create(
    *,
    order_id: int,
    amount: Decimal | int | str | None,
    reason: str = "",
    initiated_by_id: int | None = None,
    source: str = Refund.Source.STAFF,
) -> Refund:
    """Refund `amount` (major units; None for all that is left) of a paid order at Stripe."""
    with transaction.atomic():
        order = Order.objects.select_for_update().filter(pk=order_id).first()
        if order is None:
            raise NotFoundError("No such order.", order_id=order_id)
        if order.status not in REFUNDABLE_STATUSES:
            raise ConflictError(
                f"Only a paid order can be refunded; this one is {order.status}.",
                order_id=order.pk,
                status=order.status,
            )
        payment = order.payments.filter(status="succeeded").order_by("id").first()
        refundable = _captured(order) - _committed(order)
        minor = refundable if amount is None else to_minor(amount, order.currency)
        if payment is None or minor <= 0 or minor > refundable:
            raise RefundExceedsCapturedError(
                "The refund is more than what is left to refund on this order.",
                order_id=order.pk,
                refundable=refundable,
                requested=minor,
            )
        refund = Refund.objects.create(
            order=order,
            payment=payment,
            amount=minor,
            currency=order.currency,
            source=source,
            reason=reason[:500],
            initiated_by_id=initiated_by_id,
        )
    return refund_submit(refund_id=refund.pk)


def refund_submit(*, refund_id: int) -> Refund:
    """Ask Stripe for a stored refund (idempotent on our id) and record the answer."""
    refund = Refund.objects.select_related("payment").get(pk=refund_id)
    if refund.stripe_refund_id or refund.status != Refund.Status.PENDING:
        return refund
    try:
        data = gateway.refund_create(
            payment_intent_id=refund.payment.stripe_payment_intent_id,
            amount=refund.amount,
            metadata={
                "order_id": str(refund.order_id),
                "refund_id": str(refund.pk),
                "source": refund.source,
            },
            idempotency_key=f"refund-{refund.pk}",
        )
    except gateway.PaymentGatewayError as exc:
        status = exc.extra.get("provider_status")
        if isinstance(status, int) and 400 <= status < 500:
            # Stripe refused it for good (already refunded, disputed, …).
            Refund.objects.filter(pk=refund.pk).update(
                status=Refund.Status.FAILED, failure_reason=exc.message[:500]
            )
        else:  # Stripe unreachable: stays pending, the sweep submits it again
            Refund.objects.filter(pk=refund.pk).update(failure_reason=exc.message[:500])
        raise
    refund_record(data=data)
    refund.refresh_from_db()
    return refund


def refunds_submit_pending() -> int:
    """Submit refunds whose first request never reached Stripe. Answers how many were sent."""
    due = Refund.objects.filter(
        stripe_refund_id__isnull=True,
        status=Refund.Status.PENDING,
        updated_at__lt=timezone.now() - RESUBMIT_AFTER,
    ).values_list("pk", flat=True)
    sent = 0
    for refund_id in due:
        try:
            refund_submit(refund_id=refund_id)
            sent += 1
        except gateway.PaymentGatewayError as exc:
            log.warning("refund %s: submit failed again: %s", refund_id, exc.message)
    return sent


def _payment_for(data: RefundData) -> Payment | None:
    match = Q(pk__in=[])
    if data.payment_intent_id:
        match |= Q(stripe_payment_intent_id=data.payment_intent_id)
    if data.charge_id:
        match |= Q(stripe_charge_id=data.charge_id)
    payment = Payment.objects.filter(match).first()
    if payment is None and data.metadata.get("order_id", "").isdigit():
        payment = Payment.objects.filter(
            order_id=int(data.metadata["order_id"]), status="succeeded"
        ).first()
    return payment


def refund_record(*, data: RefundData) -> str:
    """Store what Stripe says about one refund, and apply it once it has succeeded."""
    with transaction.atomic():
        payment = _payment_for(data)
        if payment is None:
            return "no payment of ours for this refund"
        order = Order.objects.select_for_update().get(pk=payment.order_id)
        refund = Refund.objects.select_for_update().filter(stripe_refund_id=data.id).first()
        ours = data.metadata.get("refund_id", "")
        if refund is None and ours.isdigit():
            refund = (
                Refund.objects.select_for_update()
                .filter(pk=int(ours), order=order, stripe_refund_id__isnull=True)
                .first()
            )
        if refund is None:
            refund = Refund(
                order=order,
                payment=payment,
                source=Refund.Source.STRIPE,
                reason="Refunded in Stripe",
            )
        refund.stripe_refund_id = data.id
        refund.amount = data.amount
        refund.currency = data.currency or order.currency
        refund.status = _STRIPE_STATUS.get(data.status, Refund.Status.PENDING)
        if refund.status == Refund.Status.FAILED:
            refund.failure_reason = (data.failure_reason or "failed at Stripe")[:500]
        refund.save()
        if refund.status == Refund.Status.SUCCEEDED and refund.applied_at is None:
            _refund_apply(order, refund)
            return f"refund {data.id} applied; order is {order.status}"
        if refund.status == Refund.Status.FAILED and refund.applied_at is not None:
            log.error("refund %s failed at Stripe after it was applied", data.id)
            return f"refund {data.id} failed after it was applied: needs staff"
        return f"refund {data.id} is {refund.status}"


def _refund_apply(order: Order, refund: Refund) -> None:
    if order.status not in REFUNDABLE_STATUSES:
        raise RefundBeforePaymentError(
            f"Order {order.pk} is {order.status}; its payment must be recorded before "
            "a refund of it can be applied.",
            order_id=order.pk,
        )
    applied = order.refunds.filter(applied_at__isnull=False).exclude(pk=refund.pk)
    refunded_total = (applied.aggregate(s=Sum("amount"))["s"] or 0) + refund.amount
    if refunded_total > _captured(order):
        raise RefundExceedsCapturedError(
            f"Refunds of order {order.pk} would reach {refunded_total}, more than the "
            f"{_captured(order)} captured.",
            order_id=order.pk,
        )
    info = RefundInfo(
        refund_id=refund.pk,
        stripe_refund_id=refund.stripe_refund_id or "",
        amount=refund.amount,
        currency=refund.currency,
        refunded_total=refunded_total,
        reason=refund.reason,
    )
    refund.result = registry.refund(order_info(order), info)
    refund.applied_at = timezone.now()
    refund.save(update_fields=["result", "applied_at", "updated_at"])
    full = refunded_total >= order.amount
    order_transition(order, Order.Status.REFUNDED if full else Order.Status.PARTIALLY_REFUNDED)
