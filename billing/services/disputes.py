"""Disputes: a customer asks their bank to take a payment back.

While a dispute is open, the owning plugin freezes what the order delivered
(credits cannot be spent, bookings are marked disputed). When it closes, a won
dispute (or a closed inquiry) releases the freeze; a lost one ends it and
reverses the order through a refund row of source `dispute`, applied as any
refund is (`refund_apply`: the plugin's refund hook, the order's move to
`refunded` or `partially_refunded`).

The rules:
- Every write takes the order's row lock first, then the dispute's.
- A dispute's status moves only forward in Stripe's time (the event's
  `created`), and never leaves a closed status, so late, repeated and
  reordered events change nothing more.
- Each effect happens once, marked on the dispute row in the same transaction
  as the plugin's writes: the freeze (`frozen_at`), its release
  (`released_at`), the reversal (`reversed_at`).
- A dispute finds its order through its payment: the PaymentIntent or the
  charge. Another system's payment is recorded as `not_ours` and never retried;
  a payment of ours not recorded yet waits (the event is retried with back-off).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from billing import gateway
from billing.metadata import metadata_is_ours
from billing.models import UNPAID_STATUSES, Dispute, Order, Payment, Refund
from billing.services.payments import order_info
from billing.services.refunds import refund_apply
from billing.stripe_objects import DisputeData, PaymentIntentData
from kernel.errors import DomainError, ErrorCode
from kernel.log_context import log_ids
from purchasables.registry import registry
from purchasables.types import DisputeInfo

log = logging.getLogger(__name__)

Outcome = Dispute.Outcome
# Stripe's statuses, open ones in the order a dispute goes through them.
_OPEN_RANK = {
    "warning_needs_response": 0,
    "warning_under_review": 1,
    "needs_response": 2,
    "under_review": 3,
    "appeal_needs_response": 4,
    "appeal_under_review": 5,
}
# Closed statuses and what each means for the order. `charge_refunded` is the
# oldest API versions' close of a dispute whose charge was refunded: the
# refund itself reverses the order.
_CLOSED = {
    "won": Outcome.WON,
    "lost": Outcome.LOST,
    "warning_closed": Outcome.CLOSED,
    "prevented": Outcome.CLOSED,
    "charge_refunded": Outcome.CLOSED,
}
_FINAL_RANK = len(_OPEN_RANK)


class DisputeBeforePaymentError(DomainError):
    """A dispute of a payment of ours that is not recorded yet; retried later."""

    code = ErrorCode.ORDER_STATE_CONFLICT
    status = 409


def _rank(status: str) -> int:
    return _FINAL_RANK if status in _CLOSED else _OPEN_RANK.get(status, 0)


def _outcome(status: str) -> str:
    return _CLOSED.get(status, Outcome.OPEN)


def _when(ts: int | None) -> datetime | None:
    return datetime.fromtimestamp(ts, tz=UTC) if ts else None


def _payment_for(data: DisputeData) -> Payment | None:
    match = Q(pk__in=[])
    if data.payment_intent_id:
        match |= Q(stripe_payment_intent_id=data.payment_intent_id)
    if data.charge_id:
        match |= Q(stripe_charge_id=data.charge_id)
    return Payment.objects.filter(match).order_by("id").first()


def _intent_is_ours(intent: PaymentIntentData) -> bool:
    """Whether a PaymentIntent was made for one of our orders: it carries this
    deployment's marker and names an order of ours with the same amount and currency."""
    order_id = intent.metadata.get("order_id", "")
    return (
        metadata_is_ours(intent.metadata)
        and order_id.isdigit()
        and Order.objects.filter(
            pk=int(order_id), amount=intent.amount, currency=intent.currency
        ).exists()
    )


def dispute_record(*, data: DisputeData, as_of: int | None = None) -> str:
    """Record what Stripe says about a dispute and apply its effect on the order, once.

    `as_of` is when Stripe produced this news (an event's `created`). Called by the
    event worker; may ask Stripe whose payment an unknown dispute is about.
    """
    with log_ids(stripe_dispute_id=data.id):
        payment = _payment_for(data)
        if payment is None:
            return _dispute_unmatched(data, as_of)
        with transaction.atomic():
            order = Order.objects.select_for_update().get(pk=payment.order_id)
            with log_ids(order_id=order.pk, user_id=order.user_id):
                return _dispute_apply(order, payment, data, as_of)


def _dispute_unmatched(data: DisputeData, as_of: int | None) -> str:
    """A dispute whose payment we have no row for: another system's, or ours too early."""
    intent_id = data.payment_intent_id
    if not intent_id and data.charge_id:
        intent_id = gateway.charge_payment_intent_id(charge_id=data.charge_id)
    if intent_id and _intent_is_ours(gateway.payment_intent_retrieve(payment_intent_id=intent_id)):
        raise DisputeBeforePaymentError(
            f"Dispute {data.id} is of PaymentIntent {intent_id}, made for an order of ours "
            "whose payment is not recorded yet.",
            dispute=data.id,
            payment_intent=intent_id,
        )
    with transaction.atomic():
        dispute = Dispute.objects.select_for_update().filter(stripe_dispute_id=data.id).first()
        if dispute is None:
            dispute = Dispute(stripe_dispute_id=data.id, outcome=Outcome.NOT_OURS)
        _dispute_update(dispute, data, as_of, intent_id=intent_id)
        dispute.outcome = Outcome.NOT_OURS
        dispute.save()
    return f"dispute {data.id} is of a payment that is not ours; recorded"


def _dispute_update(
    dispute: Dispute, data: DisputeData, as_of: int | None, *, intent_id: str
) -> bool:
    """Take Stripe's news into the (locked or new) row if it is not older than what it
    holds; answers whether the status was taken."""
    new = dispute.pk is None
    if new:
        dispute.opened_at = _when(data.created)
    recorded = dispute.stripe_event_at
    older = bool(as_of and recorded) and (
        as_of < recorded or (as_of == recorded and _rank(data.status) < _rank(dispute.status))
    )
    closed = not new and dispute.status in _CLOSED
    dispute.stripe_charge_id = data.charge_id or dispute.stripe_charge_id
    dispute.stripe_payment_intent_id = intent_id or dispute.stripe_payment_intent_id
    if new or not (older or closed):
        dispute.status = data.status
        dispute.amount = data.amount
        dispute.currency = data.currency or dispute.currency
        dispute.reason = data.reason
        dispute.evidence_due_by = _when(data.evidence_due_by) or dispute.evidence_due_by
        if as_of:
            dispute.stripe_event_at = max(as_of, recorded or 0)
        if data.status in _CLOSED and dispute.closed_at is None:
            dispute.closed_at = timezone.now()
        return True
    return False


def _at_stake(order: Order, dispute: Dispute) -> int:
    """The part of the disputed amount the order still delivers: what refunds (and
    reversals) applied so far have not taken back, at most the dispute's amount."""
    captured = order.payments.aggregate(s=Sum("amount_received"))["s"] or 0
    reversed_ = (
        order.refunds.filter(applied_at__isnull=False, reverses_order=True)
        .exclude(method=Refund.Method.CREDITS)  # the credits part is not the card's
        .aggregate(s=Sum("amount"))["s"]
        or 0
    )
    return max(0, min(dispute.amount, captured - reversed_, order.amount - reversed_))


def _info(dispute: Dispute, state: str, at_stake: int) -> DisputeInfo:
    return DisputeInfo(
        dispute_id=dispute.pk,
        stripe_dispute_id=dispute.stripe_dispute_id,
        state=state,  # type: ignore[arg-type]
        status=dispute.status,
        amount=dispute.amount,
        at_stake=at_stake,
        currency=dispute.currency,
        reason=dispute.reason,
    )


def _dispute_apply(order: Order, payment: Payment, data: DisputeData, as_of: int | None) -> str:
    """`dispute_record` with the order found and row-locked."""
    if order.status in UNPAID_STATUSES:
        raise DisputeBeforePaymentError(
            f"Order {order.pk} is {order.status}; its payment must be recorded before "
            f"dispute {data.id} can be applied.",
            order_id=order.pk,
            dispute=data.id,
        )
    dispute = Dispute.objects.select_for_update().filter(stripe_dispute_id=data.id).first()
    if dispute is None:
        dispute = Dispute(stripe_dispute_id=data.id, order=order, payment=payment)
    taken = _dispute_update(dispute, data, as_of, intent_id=payment.stripe_payment_intent_id)
    dispute.order, dispute.payment = order, payment
    dispute.outcome = _outcome(dispute.status)
    dispute.save()
    if order.status == Order.Status.CANCELED:
        # The order never delivered anything (its payment is refunded automatically).
        return f"dispute {data.id} is {dispute.status}; order {order.pk} delivered nothing"

    now = timezone.now()
    notes = [f"dispute {data.id} is {dispute.status}" + ("" if taken else " (older news)")]
    stake = _at_stake(order, dispute)
    if dispute.is_open and dispute.frozen_at is None and stake > 0:
        answer = registry.dispute(order_info(order), _info(dispute, "open", stake))
        dispute.result = {**dispute.result, "open": answer}
        dispute.frozen_at = now
        notes.append("what the order delivered is frozen")
    elif not dispute.is_open and dispute.frozen_at is not None and dispute.released_at is None:
        state = "lost" if dispute.outcome == Outcome.LOST else "won"
        answer = registry.dispute(order_info(order), _info(dispute, state, stake))
        dispute.result = {**dispute.result, state: answer}
        dispute.released_at = now
        notes.append("the freeze is released")
    if dispute.outcome == Outcome.LOST and dispute.reversed_at is None:
        dispute.reversed_at = now
        if stake > 0:
            dispute.refund = Refund.objects.create(
                order=order,
                payment=payment,
                amount=stake,
                currency=order.currency,
                status=Refund.Status.SUCCEEDED,
                source=Refund.Source.DISPUTE,
                reason=f"Dispute {data.id} lost ({dispute.reason or 'no reason given'})"[:500],
            )
            dispute.save()
            notes.append(refund_apply(refund_id=dispute.refund.pk))
        else:
            notes.append("nothing was left to reverse")
        log.warning(
            "dispute %s of order %s lost: %s reversed",
            data.id,
            order.pk,
            stake,
            extra={"order_id": order.pk, "stripe_dispute_id": data.id},
        )
    dispute.save()
    return "; ".join(notes)
