"""Apply what Stripe says about a PaymentIntent to its order, and fulfil paid orders.

The rule: `payment_record` is the one way an order's payment status changes,
from the event worker and from the order-create request alike. It locks the
order row, moves the status only forward (`ORDER_TRANSITIONS`), and on the move
to `paid` inserts the order's unique `Fulfilment` and runs the owning plugin's
fulfil hook in the same transaction: all of it commits, or none of it.
A PaymentIntent we have no row of joins an order only when it carries this
deployment's marker and fits the order (amount, currency, customer, user); a
succeeded payment no order can take is refunded automatically, once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from billing import sql
from billing.metadata import NotOursError, metadata_is_ours
from billing.models import ORDER_TRANSITIONS, Fulfilment, Order, Payment, Refund, StripeCustomer
from billing.stripe_objects import PaymentIntentData
from kernel.errors import DomainError, ErrorCode
from kernel.log_context import log_ids
from purchasables.errors import FulfilmentImpossibleError
from purchasables.registry import registry
from purchasables.types import InvoiceInfo, OrderInfo

log = logging.getLogger(__name__)

REFUND_SUBMIT_TASK = "billing.tasks.refund_submit"
REFUND_APPLY_TASK = "billing.tasks.refund_apply"


class PaymentMismatchError(DomainError):
    """Stripe reports a payment that does not match the order; needs a person."""

    code = ErrorCode.ORDER_STATE_CONFLICT
    status = 409
    retryable = False


@dataclass(frozen=True)
class PaymentOutcome:
    order_id: int | None
    applied: bool
    reason: str


def _order_locked(intent: PaymentIntentData) -> tuple[Order, Payment | None] | None:
    """The intent's order, row-locked, with its `Payment` row when there is one.

    A PaymentIntent seen for the first time has no row yet: its order is found
    by its metadata, and only when the intent is provably this order's
    (`order_for_first_seen_intent`).
    """
    payment = sql.payment_and_order_locked(intent_id=intent.id)
    if payment is not None:
        return payment.order, payment
    order = order_for_first_seen_intent(intent=intent)
    return None if order is None else (order, None)


def order_for_first_seen_intent(*, intent: PaymentIntentData) -> Order | None:
    """The row-locked order a PaymentIntent without a `Payment` row belongs to.

    Its metadata must carry this deployment's marker and name the order, and its
    amount, currency, customer and user must be the order's. Raises
    `NotOursError` for another system's PaymentIntent and `PaymentMismatchError`
    for one of ours that does not fit its order; answers None for one of ours
    that names no order (a subscription invoice's: its invoice event records it).
    """
    if not metadata_is_ours(intent.metadata):
        if intent.customer_id and stripe_customer_known(customer_id=intent.customer_id):
            return None
        raise NotOursError(
            f"PaymentIntent {intent.id} has no marker of this deployment and no customer "
            "of ours: another system's payment on this Stripe account."
        )
    order_id = intent.metadata.get("order_id", "")
    if not order_id.isdigit():
        return None
    order = Order.objects.select_for_update().filter(pk=int(order_id)).first()
    if order is None:
        raise PaymentMismatchError(
            f"PaymentIntent {intent.id} names order {order_id}, which does not exist.",
            order_id=order_id,
        )
    problem = order_mismatch(
        order=order,
        amount=intent.amount,
        currency=intent.currency,
        customer_id=intent.customer_id,
        metadata=intent.metadata,
    )
    if problem:
        raise PaymentMismatchError(
            f"PaymentIntent {intent.id} is not order {order.pk}'s: {problem}.",
            order_id=order.pk,
        )
    return order


def order_mismatch(
    *,
    order: Order,
    amount: int | None,
    currency: str | None,
    customer_id: str,
    metadata: dict[str, str],
) -> str:
    """What about a Stripe payment does not fit `order` ("" when all of it does).

    `amount` and `currency` None skip those checks (news that carries no charge).
    """
    if metadata.get("user_id", "") != str(order.user_id):
        return f"it is for user {metadata.get('user_id') or '(none)'}, the order {order.user_id}'s"
    if currency is not None and currency.lower() != order.currency:
        return f"it is in {currency}, the order in {order.currency}"
    if amount is not None and amount != order.card_amount:
        return f"it is for {amount}, the order's card part {order.card_amount}"
    if customer_id:
        ours = StripeCustomer.objects.filter(user_id=order.user_id).values_list(
            "stripe_customer_id", flat=True
        )
        if customer_id not in ours:
            return f"its customer {customer_id} is not the order's user's"
    return ""


def stripe_customer_known(*, customer_id: str) -> bool:
    """Whether a Stripe customer is one this deployment made for a user."""
    return StripeCustomer.objects.filter(stripe_customer_id=customer_id).exists()


def order_target_status(intent: PaymentIntentData) -> str | None:
    """The order status a PaymentIntent's own status implies, if any."""
    if intent.status == "succeeded":
        return Order.Status.PAID
    if intent.status == "processing":
        return Order.Status.PROCESSING
    if intent.status == "requires_action":
        return Order.Status.REQUIRES_ACTION
    if intent.status == "canceled":
        return Order.Status.CANCELED
    if intent.status == "requires_payment_method" and intent.last_error_code:
        return Order.Status.FAILED
    return None


def order_info(order: Order) -> OrderInfo:
    invoice = order.data.get("invoice") if order.stripe_invoice_id else None
    return OrderInfo(
        order_id=order.pk,
        user_id=order.user_id,
        purchase_type=order.purchase_type,
        order_type=order.order_type,
        amount=order.amount,
        currency=order.currency,
        metadata=dict(order.metadata),
        data=dict(order.data),
        credits=order.credits,
        # A subscription order: the paid invoice it stands for (recorded by
        # `invoice_record`; orders recorded before it kept only `invoice_id`).
        invoice=_invoice_info(invoice) if isinstance(invoice, dict) else None,
    )


def _invoice_info(stored: dict[str, Any]) -> InvoiceInfo:
    return InvoiceInfo(
        stripe_invoice_id=str(stored.get("stripe_invoice_id") or ""),
        billing_reason=str(stored.get("billing_reason") or ""),
        amount_paid=int(stored.get("amount_paid") or 0),
        currency=str(stored.get("currency") or ""),
        period_start=stored.get("period_start"),
        period_end=stored.get("period_end"),
    )


# A PaymentIntent that reached one of these never leaves it.
_PAYMENT_FINAL = frozenset({"succeeded", "canceled"})


def payment_record(
    *, intent: PaymentIntentData, target: str, as_of: int | None = None
) -> PaymentOutcome:
    """Move the intent's order to `target` if that is forward; fulfil it on `paid`.

    `as_of` is when Stripe produced this news (an event's `created`): news older
    than what was recorded for the payment moves nothing, except to `paid`, which
    is always the truth. A payment that succeeded for an order that can no
    longer take it (canceled, or paid by another payment) is refunded, never kept.
    """
    with transaction.atomic():
        return payment_apply(intent=intent, target=target, as_of=as_of)


def payment_apply(
    *, intent: PaymentIntentData, target: str, as_of: int | None = None
) -> PaymentOutcome:
    """`payment_record` inside the caller's transaction, which must be open.

    For the event worker, which marks the event processed in the same
    transaction; all of it commits, or none of it.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("payment_apply runs inside a transaction; use payment_record.")
    found = _order_locked(intent)
    if found is None:
        return PaymentOutcome(None, False, "no order of ours for this PaymentIntent")
    order, payment = found
    with log_ids(order_id=order.pk, user_id=order.user_id, payment_intent_id=intent.id):
        if payment is None:
            payment = payment_row_for(order=order, intent=intent, locked=True)
        return _payment_apply(order, payment, intent, target, as_of)


def payment_row_for(*, order: Order, intent: PaymentIntentData, locked: bool) -> Payment:
    """The `Payment` row of a PaymentIntent, made from it on first sight.

    One `INSERT … ON CONFLICT DO NOTHING`: the usual case, a new
    PaymentIntent, is one statement instead of `get_or_create`'s read, savepoint,
    insert and release. A row it inserted is its transaction's alone until commit.

    It stores Stripe's status but not `amount_received`: a success counts as
    recorded (`success_recorded`) only once `payment_apply` has applied it to the
    order, so a first-seen payment that no order can take is still refunded.
    """
    fields = {
        "order": order,
        "status": intent.status,
        "amount": intent.amount,
        "currency": intent.currency,
        "client_secret": intent.client_secret,
    }
    rows = Payment.objects.select_for_update() if locked else Payment.objects
    payment = Payment(stripe_payment_intent_id=intent.id, **fields)
    if sql.row_insert(payment, unless_exists="stripe_payment_intent_id") is not None:
        return payment
    return rows.get(stripe_payment_intent_id=intent.id)


def _payment_apply(
    order: Order, payment: Payment, intent: PaymentIntentData, target: str, as_of: int | None
) -> PaymentOutcome:
    """`payment_record` with the order and its payment found and locked."""
    if payment.order_id != order.pk:
        raise PaymentMismatchError(
            f"PaymentIntent {intent.id} belongs to order {payment.order_id}, not {order.pk}.",
        )
    was_succeeded = success_recorded(payment)
    older = bool(as_of and payment.stripe_event_at and as_of < payment.stripe_event_at)
    if payment.status not in _PAYMENT_FINAL and not older:
        payment.status = intent.status
    if as_of and not older:
        payment.stripe_event_at = as_of
    payment.amount_received = max(payment.amount_received, intent.amount_received)
    payment.stripe_charge_id = intent.latest_charge_id or payment.stripe_charge_id
    sql.row_update(
        payment,
        fields=["status", "amount_received", "stripe_charge_id", "stripe_event_at", "updated_at"],
    )

    if target == Order.Status.PAID and target not in ORDER_TRANSITIONS[order.status]:
        return payment_unwanted(
            order,
            payment,
            amount=payment.amount_received or intent.amount,
            was_succeeded=was_succeeded,
        )
    if target not in ORDER_TRANSITIONS[order.status] or (older and target != Order.Status.PAID):
        return PaymentOutcome(order.pk, False, f"order is {order.status}; {target} is stale")
    if intent.amount != order.card_amount or intent.currency != order.currency:
        # Changed at Stripe since it was made: it moves the order nowhere, as a
        # first-seen one that does not fit would not.
        raise PaymentMismatchError(
            f"PaymentIntent {intent.id} is for {intent.amount} {intent.currency}; "
            f"order {order.pk}'s card part is {order.card_amount} {order.currency}.",
            order_id=order.pk,
        )
    order_transition(
        order,
        target,
        failure_code=intent.last_error_code,
        failure_message=intent.last_error_message,
    )
    return PaymentOutcome(order.pk, True, f"order is now {target}")


def success_recorded(payment: Payment) -> bool:
    """Whether this payment's success was already applied to its order (which it then
    paid, or which refunded it): its row says succeeded and what was received."""
    return payment.status == "succeeded" and payment.amount_received > 0


def payment_unwanted(
    order: Order, payment: Payment, *, amount: int, was_succeeded: bool
) -> PaymentOutcome:
    """A success the row-locked order cannot take: the same news again, or money to
    give back.

    A payment whose success was recorded before either paid the order or is
    already being refunded; any other succeeded payment of an order that is
    canceled, paid (by another payment, or with credits) or refunded is refunded
    automatically, once.
    """
    if was_succeeded:
        return PaymentOutcome(order.pk, False, f"order is {order.status}; paid is stale")
    if payment.refunds.filter(source=Refund.Source.AUTOMATIC).exists():
        return PaymentOutcome(order.pk, False, "this payment is already being refunded")
    why = (
        "The payment arrived after the order was canceled."
        if order.status == Order.Status.CANCELED
        else "A second payment for an order that was already paid."
    )
    refund_automatic(order=order, payment=payment, amount=amount, reason=why, reverses_order=False)
    log.warning("order %s: %s Refunding %s.", order.pk, why, payment.stripe_payment_intent_id)
    return PaymentOutcome(order.pk, False, f"{why} Refunding it.")


def refund_automatic(
    *, order: Order, payment: Payment, amount: int, reason: str, reverses_order: bool
) -> Refund:
    """Store a refund of money the platform must not keep, and queue its submission.

    Enqueued inside the caller's transaction on purpose: the refund row and its
    task commit together (django-q2's database broker).
    """
    refund = Refund.objects.create(
        order=order,
        payment=payment,
        amount=amount,
        currency=payment.currency,
        source=Refund.Source.AUTOMATIC,
        reason=reason[:500],
        reverses_order=reverses_order,
    )
    async_task(REFUND_SUBMIT_TASK, refund.pk, task_name=f"refund-{refund.pk}")
    return refund


def credits_refund_automatic(*, order: Order, reason: str) -> Refund:
    """Give back all the credits a paid order took, as a refund applied when the
    order's card part is refunded (the plugin's refund hook then runs for the whole).

    Inside the caller's transaction, under the order's row lock. The row is
    applied by `refund_apply` (the sweep retries it), after the order is paid.
    """
    refund = Refund.objects.create(
        order=order,
        payment=None,
        method=Refund.Method.CREDITS,
        amount=order.credits_value,
        credits=order.credits,
        currency=order.currency,
        source=Refund.Source.AUTOMATIC,
        status=Refund.Status.SUCCEEDED,
        reason=reason[:500],
    )
    # Enqueued inside the caller's transaction on purpose, as `refund_automatic`'s.
    async_task(REFUND_APPLY_TASK, refund.pk, task_name=f"refund-apply-{refund.pk}")
    return refund


def order_transition(
    order: Order, target: str, *, failure_code: str = "", failure_message: str = ""
) -> bool:
    """Move a row-locked order to `target`, with what that move means for its plugin.

    To `failed` or `canceled`: the plugin releases what it held. To `paid`: the
    order is fulfilled. Answers False, changing nothing, for a stale move.
    """
    if target not in ORDER_TRANSITIONS[order.status]:
        return False
    order.status = target
    fields = ["status", "updated_at"]
    if target == Order.Status.FAILED:
        order.failure_code = failure_code[:100]
        order.failure_message = failure_message[:500]
        fields += ["failure_code", "failure_message"]
    if target == Order.Status.PAID:
        order.paid_at = timezone.now()
        order.failure_code = order.failure_message = ""
        fields += ["paid_at", "failure_code", "failure_message"]
    sql.row_update(order, fields=fields)
    if target in (Order.Status.FAILED, Order.Status.CANCELED):
        registry.release(order_info(order), reason=target)
    if target == Order.Status.CANCELED and order.credits:
        # The card never paid the rest: the credits taken at create go back, once
        # (canceled is final, and the give-back is keyed on the order).
        registry.credits_give_back(
            user_id=order.user_id,
            spend_reference=order.credits_reference,
            credits=order.credits,
            reference=f"order-{order.pk}-back",
            memo=f"Order {order.pk} cancelled: credits given back",
            order_id=order.pk,
        )
    if target == Order.Status.PAID:
        fulfilment_create(order=order)
    return True


def fulfilment_create(*, order: Order) -> Fulfilment:
    """Run the order's plugin and insert its one fulfilment; the caller holds the order lock.

    Both happen in the caller's transaction, so the unique `Fulfilment.order`
    makes a second fulfilment fail and roll back with the plugin's writes: even
    a caller that skipped the lock could not fulfil twice. The row is inserted
    after the plugin ran, with its result, in one statement. When the plugin says
    delivery is impossible, its writes roll back (a savepoint), the order keeps
    the reason, and a full refund is stored and queued in this same transaction.
    """
    try:
        with transaction.atomic():
            result = registry.fulfil(order_info(order))
    except FulfilmentImpossibleError as exc:
        if order.payment_type == Order.PaymentType.CREDITS:
            raise  # paid in the create's own transaction: nothing is taken or kept
        fulfilment = Fulfilment.objects.create(order=order, result={"impossible": exc.message})
        order.failure_code = exc.code
        order.failure_message = exc.message[:500]
        order.save(update_fields=["failure_code", "failure_message", "updated_at"])
        refund_automatic(
            order=order,
            payment=order.payments.filter(status="succeeded").order_by("id").first(),
            amount=order.card_amount,
            reason=exc.message,
            reverses_order=True,
        )
        if order.credits:
            credits_refund_automatic(order=order, reason=exc.message)
        log.warning(
            "order %s cannot be fulfilled (%s); refunding",
            order.pk,
            exc.message,
            extra={"order_id": order.pk, "user_id": order.user_id},
        )
        return fulfilment
    fulfilment = sql.row_insert(Fulfilment(order=order, result=result or {}))
    log.info(
        "order %s fulfilled by %s",
        order.pk,
        order.purchase_type,
        extra={"order_id": order.pk, "user_id": order.user_id},
    )
    return fulfilment
