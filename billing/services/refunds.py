"""Refunds: started by staff or automatically, or made in Stripe's dashboard.

The rules:
- Every refund write takes the order's row lock first.
- One Stripe refund is one `Refund` row, found by its `re_…` id or, before
  Stripe has answered, by our id in its metadata.
- What Stripe answered is stored and committed first; applying it to the plugin
  is a second, retryable step, so a failure there never sends the refund again.
- A row that may have reached Stripe is looked up there before it is resent.
- Statuses only move forward; refunds are never derived from a charge's
  cumulative `amount_refunded`.
- A refund is matched to a payment by the payment's own ids, or by our
  metadata only with this deployment's marker; sums never mix currencies, and
  no refund asks Stripe for more than its one payment has left.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal
from typing import NoReturn

from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from billing import gateway
from billing.metadata import NotOursError, metadata_is_ours, metadata_marker
from billing.models import Dispute, Order, Payment, Refund
from billing.services.payments import order_info, order_transition, stripe_customer_known
from billing.stripe_objects import RefundData
from kernel.errors import ConflictError, DomainError, ErrorCode, NotFoundError
from kernel.money import to_minor
from purchasables.registry import registry
from purchasables.types import RefundInfo

log = logging.getLogger(__name__)

REFUNDABLE_STATUSES = (Order.Status.PAID, Order.Status.PARTIALLY_REFUNDED)
S = Refund.Status
LIVE = (S.PENDING, S.REQUIRES_ACTION, S.SUCCEEDED)
_STRIPE_STATUS = {
    "succeeded": S.SUCCEEDED,
    "pending": S.PENDING,
    "requires_action": S.REQUIRES_ACTION,
    "failed": S.FAILED,
    "canceled": S.CANCELED,
}
# Where a refund's status may go next; anything else is an older report.
# `succeeded → failed` is Stripe's: a bank can return a refund days later.
_FORWARD = {
    S.PENDING: {S.REQUIRES_ACTION, S.SUCCEEDED, S.FAILED, S.CANCELED},
    S.REQUIRES_ACTION: {S.SUCCEEDED, S.FAILED, S.CANCELED},
    S.SUCCEEDED: {S.FAILED},
    S.FAILED: set(),
    S.CANCELED: set(),
}
# A refund row still without a Stripe id this long after it was made or sent
# is taken up by the sweep (its request died, or Stripe was down).
RESUME_AFTER = timedelta(minutes=1)


class RefundExceedsCapturedError(DomainError):
    code = ErrorCode.REFUND_EXCEEDS_CAPTURED
    status = 409
    retryable = False


class RefundBeforePaymentError(ConflictError):
    """A refund event arrived before the payment it refunds was recorded; retried later."""


class RefundFailedAfterApplyError(ConflictError):
    """Stripe failed a refund whose effect was already reversed: staff must look."""

    retryable = False


def _captured(order: Order) -> int:
    """What the order's payments captured, in the order's currency (sums never mix
    currencies)."""
    rows = order.payments.filter(currency=order.currency)
    return rows.aggregate(s=Sum("amount_received"))["s"] or 0


def _holding(refunds) -> int:
    """Of these refunds, what holds part of the captured money: live ones, and any
    already applied."""
    rows = refunds.filter(Q(status__in=LIVE) | Q(applied_at__isnull=False))
    return rows.aggregate(s=Sum("amount"))["s"] or 0


def _counted(order: Order) -> int:
    """What refunds hold of the card payments: to the card, or refunded as credits."""
    card_side = order.refunds.filter(currency=order.currency).exclude(method=Refund.Method.CREDITS)
    return _holding(card_side)


def card_refundable(order: Order) -> tuple[Payment | None, int]:
    """The order's card payment a refund goes to, and what is left to refund of it."""
    payment = (
        order.payments.filter(amount_received__gt=0, currency=order.currency).order_by("id").first()
    )
    refundable = _captured(order) - _counted(order)
    if payment is not None:
        refundable = min(refundable, _payment_refundable(payment))
    return payment, max(0, refundable)


def _payment_refundable(payment: Payment) -> int:
    """What is left to refund of one payment: Stripe refunds a payment, never more."""
    return payment.amount_received - _holding(payment.refunds.all())


def refund_create(
    *,
    order_id: int,
    amount: Decimal | int | str | None,
    reason: str = "",
    initiated_by_id: int | None = None,
    source: str = Refund.Source.STAFF,
) -> Refund:
    """Refund `amount` (major units; None for all that is left) of a paid order's card
    payment at Stripe. (`credit_refunds.refund_order` refunds orders paid with credits.)"""
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
        payment, refundable = card_refundable(order)
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
    """Ask Stripe for a stored refund, once: a row that may have reached Stripe is looked
    up there first. Then record the answer and apply it."""
    with transaction.atomic():
        refund = (
            Refund.objects.select_for_update(of=("self",))
            .select_related("payment")
            .get(pk=refund_id)
        )
        if refund.stripe_refund_id or refund.status != S.PENDING:
            return refund
        sent_before = refund.submitted_at is not None
        refund.submitted_at = timezone.now()
        refund.save(update_fields=["submitted_at", "updated_at"])
    intent_id = refund.payment.stripe_payment_intent_id
    try:
        data = None
        if sent_before:
            data = next(
                (
                    r
                    for r in gateway.refunds_for_payment_intent(payment_intent_id=intent_id)
                    if r.metadata.get("refund_id") == str(refund.pk)
                ),
                None,
            )
        if data is None:
            data = gateway.refund_create(
                payment_intent_id=intent_id,
                amount=refund.amount,
                metadata={
                    "order_id": str(refund.order_id),
                    "refund_id": str(refund.pk),
                    "source": refund.source,
                    **metadata_marker(),
                    **({"reason": refund.reason[:500]} if refund.reason else {}),
                },
                idempotency_key=f"refund-{refund.pk}",
                # Money the platform must not keep was paid twice or not for an order;
                # any other refund is asked for by the buyer through staff.
                reason=(
                    "duplicate"
                    if refund.source == Refund.Source.AUTOMATIC
                    else "requested_by_customer"
                ),
            )
    except gateway.PaymentGatewayError as exc:
        if exc.retryable:
            Refund.objects.filter(pk=refund.pk).update(failure_reason=exc.message[:500])
        else:  # Stripe refused it for good (already refunded, disputed, …)
            Refund.objects.filter(pk=refund.pk, stripe_refund_id__isnull=True).update(
                status=S.FAILED, failure_reason=exc.message[:500]
            )
        raise
    stored = _refund_store(data)
    if stored is not None and stored.status == S.SUCCEEDED and stored.applied_at is None:
        try:
            refund_apply(refund_id=stored.pk)
        except Exception:
            # Stripe has the refund and we have its id: the sweep applies it later.
            log.exception(
                "refund %s: applying it failed; the sweep will retry",
                refund.pk,
                extra={"refund_id": refund.pk, "order_id": refund.order_id},
            )
    refund.refresh_from_db()
    return refund


def _payment_for(data: RefundData) -> Payment | None:
    match = Q(pk__in=[])
    if data.payment_intent_id:
        match |= Q(stripe_payment_intent_id=data.payment_intent_id)
    if data.charge_id:
        match |= Q(stripe_charge_id=data.charge_id)
    payment = Payment.objects.filter(match).first()
    # By our metadata only when Stripe names no payment: a refund of a PaymentIntent
    # or charge we have not recorded is never pinned on another payment of the order.
    if (
        payment is None
        and not data.payment_intent_id
        and not data.charge_id
        and metadata_is_ours(data.metadata)
        and data.metadata.get("order_id", "").isdigit()
    ):
        payment = (
            Payment.objects.filter(order_id=int(data.metadata["order_id"]), amount_received__gt=0)
            .order_by("id")
            .first()
        )
    return payment


def _refund_store(data: RefundData) -> Refund | None:
    """Store Stripe's report of a refund (committed on its own); None if not ours."""
    with transaction.atomic():
        payment = _payment_for(data)
        if payment is None:
            return None
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
                amount=data.amount,
                currency=data.currency or order.currency,
                # A payment the order did not take is being given back by its automatic
                # refund: refunded in the dashboard instead, it reverses nothing either.
                reverses_order=not payment.refunds.filter(reverses_order=False).exists(),
            )
        reported = _STRIPE_STATUS.get(data.status, S.PENDING)
        refund.stripe_refund_id = data.id
        if refund.pk is None or reported in _FORWARD[refund.status]:
            refund.status = reported
            refund.amount = data.amount
            if reported == S.FAILED:
                refund.failure_reason = (data.failure_reason or "failed at Stripe")[:500]
        refund.save()
        return refund


def refund_record(*, data: RefundData) -> str:
    """Store what Stripe says about one refund, then apply it if it has succeeded."""
    refund = _refund_store(data)
    if refund is None:
        _refund_unmatched(data)
    if refund.status == S.SUCCEEDED and refund.applied_at is None:
        return refund_apply(refund_id=refund.pk)
    if refund.status == S.FAILED and refund.applied_at is not None:
        raise RefundFailedAfterApplyError(
            f"Stripe failed refund {data.id} after its effect was reversed; the customer "
            "has not been paid back. Refund them another way or restore what was taken.",
            refund_id=refund.pk,
            order_id=refund.order_id,
        )
    return f"refund {data.id} is {refund.status}"


def _refund_unmatched(data: RefundData) -> NoReturn:
    """A refund of no payment recorded here: another system's, or ours too early.

    Ours before the event that records its payment (a refund of a subscription
    cycle can overtake `invoice.paid`) is retried with back-off and, if its
    payment never appears, ends `failed` and visible. Its PaymentIntent, read
    from Stripe, tells which: ours carries this deployment's marker or one of
    our customers; one Stripe cannot show is not proven foreign and waits too.
    Tollgate charges only through PaymentIntents, so a refund of a bare charge
    without our marker is another system's.
    """
    ours = metadata_is_ours(data.metadata)
    if not ours and data.payment_intent_id:
        try:
            intent = gateway.payment_intent_retrieve(payment_intent_id=data.payment_intent_id)
        except gateway.PaymentGatewayError:
            # Unreadable, it cannot be proven another system's: it waits as ours would.
            intent = None
        ours = intent is None or (
            metadata_is_ours(intent.metadata)
            or bool(intent.customer_id and stripe_customer_known(customer_id=intent.customer_id))
        )
    if not ours:
        raise NotOursError(
            f"Refund {data.id} is of a payment with no marker of this deployment and no "
            "customer of ours: another system's on this Stripe account."
        )
    raise RefundBeforePaymentError(
        f"No payment of ours has refund {data.id}'s PaymentIntent or charge yet.",
        refund=data.id,
    )


def refund_apply(*, refund_id: int) -> str:
    """Reverse a succeeded refund's effect through the owning plugin, exactly once."""
    with transaction.atomic():
        order_id = Refund.objects.values_list("order_id", flat=True).get(pk=refund_id)
        order = Order.objects.select_for_update().get(pk=order_id)
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        if refund.applied_at is not None or refund.status != S.SUCCEEDED:
            return f"refund {refund.stripe_refund_id} needs nothing more"
        if refund.reverses_order and order.status not in REFUNDABLE_STATUSES:
            raise RefundBeforePaymentError(
                f"Order {order.pk} is {order.status}; its payment must be recorded "
                "before a refund of it can be applied.",
                order_id=order.pk,
            )
        applied = order.refunds.filter(applied_at__isnull=False, currency=order.currency)
        given_back = (applied.aggregate(s=Sum("amount"))["s"] or 0) + refund.amount
        paid = _captured(order) + order.credits_value
        if given_back > paid:
            raise RefundExceedsCapturedError(
                f"Refunds of order {order.pk} would reach {given_back}, more than the {paid} paid.",
                order_id=order.pk,
            )
        # Of the order's price: a refund of a payment the order did not need (a second
        # payment) gives money back but refunds none of what the order delivered.
        reversed_before = applied.filter(reverses_order=True).aggregate(s=Sum("amount"))["s"]
        refunded_total = (reversed_before or 0) + refund.amount
        if refund.credits:
            credits_refund_give(order=order, refund=refund)
        if refund.reverses_order:
            info = RefundInfo(
                refund_id=refund.pk,
                stripe_refund_id=refund.stripe_refund_id or "",
                amount=refund.amount,
                currency=refund.currency,
                refunded_total=refunded_total,
                reason=refund.reason,
                stripe_dispute_id=_dispute_of(refund),
                credits=refund.credits,
            )
            refund.result = registry.refund(order_info(order), info)
        else:
            refund.result = {"payment_only": True}
        refund.applied_at = timezone.now()
        refund.save(update_fields=["result", "applied_at", "updated_at"])
        if refund.reverses_order:
            full = refunded_total >= order.amount
            order_transition(
                order, Order.Status.REFUNDED if full else Order.Status.PARTIALLY_REFUNDED
            )
        return f"refund {refund.stripe_refund_id} applied; order is {order.status}"


def credits_refund_give(*, order: Order, refund: Refund) -> int:
    """Give the buyer a refund's credits through the ledger hook, once (keyed on the
    refund): back to the spend that paid the order, or as new paid credits for card
    money refunded as credits.

    The key is billing's own (`refund-<id>-credits`): `refund-<id>` is what a plugin's
    refund hook uses to take back what the order delivered, in the same transaction.
    """
    back = refund.method == Refund.Method.CREDITS
    return registry.credits_give_back(
        user_id=order.user_id,
        spend_reference=order.credits_reference if back else None,
        credits=refund.credits,
        reference=f"refund-{refund.pk}-credits",
        memo=(
            f"Refund of order {order.pk}: credits given back"
            if back
            else f"Refund of order {order.pk} as credits"
        ),
        order_id=order.pk,
    )


def _dispute_of(refund: Refund) -> str:
    """The Stripe id of the lost dispute a refund row stands for, or ""."""
    if refund.source != Refund.Source.DISPUTE:
        return ""
    found = Dispute.objects.filter(refund=refund).values_list("stripe_dispute_id", flat=True)
    return found.first() or ""


def refunds_resume() -> int:
    """The sweep: send refunds whose request never finished, apply stored ones that
    succeeded. One refund's failure never stops the others. Answers how many moved."""
    stale = timezone.now() - RESUME_AFTER
    unsent = Refund.objects.filter(stripe_refund_id__isnull=True, status=S.PENDING).filter(
        Q(submitted_at__lt=stale) | Q(submitted_at__isnull=True, created_at__lt=stale)
    )
    unapplied = Refund.objects.filter(status=S.SUCCEEDED, applied_at__isnull=True)
    moved = 0
    for refund_id in unsent.values_list("pk", flat=True):
        try:
            refund_submit(refund_id=refund_id)
            moved += 1
        except Exception:
            log.exception("refund %s: sending it again failed", refund_id)
    for refund_id in unapplied.values_list("pk", flat=True):
        try:
            refund_apply(refund_id=refund_id)
            moved += 1
        except Exception:
            log.exception("refund %s: applying it failed", refund_id)
    return moved
