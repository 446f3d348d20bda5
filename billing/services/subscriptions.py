"""Subscriptions: start, cancel at period end, and turn every paid cycle into an order.

The rule: each paid Stripe invoice that pays a whole cycle is one order (unique
on the invoice id), created paid and fulfilled by the owning plugin in one
transaction, so an invoice reported twice (`invoice.paid` and
`invoice.payment_succeeded`, or by the start request and its event) grants
once; any other paid invoice grants nothing. A user has one live record per
plan, inserted before Stripe is asked (a partial unique index), and nothing is
left live at Stripe for a record that ends. Subscription records move only
forward in Stripe's time: an older event never overwrites a newer state.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import gateway
from billing.metadata import metadata_build, metadata_marker
from billing.models import (
    Order,
    Payment,
    SavedPaymentMethod,
    StripeCustomer,
    StripeEvent,
    Subscription,
)
from billing.services.cards import card_get_for_user, stripe_customer_get_or_create
from billing.services.checkout import redirect_urls_check
from billing.services.payments import order_transition
from billing.stripe_objects import (
    InvoiceData,
    InvoicePaymentData,
    SubscriptionData,
    invoice_payment_from_payload,
)
from kernel.errors import ConflictError, DomainError, ErrorCode, InvalidInputError, NotFoundError
from purchasables.registry import registry
from purchasables.types import PurchaseRequest, Quote

log = logging.getLogger(__name__)

SUBSCRIPTION_PURCHASE_TYPE = "subscription"
# Where a subscription order keeps its invoice's facts (`OrderInfo.invoice`).
INVOICE_DATA_KEY = "invoice"

# A record still `incomplete` after this long belongs to no request in progress:
# the longest a start request talks to Stripe, or a Checkout Session stays open
# (Stripe expires them after 24 hours). A new start for the plan gives it up first.
INCOMPLETE_GRACE = timedelta(hours=24, minutes=5)


def _ts(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=UTC) if value else None


def _quote(*, user_id: int, purchase_type: str, plan_id: int, renewal: bool = False):
    registry.purchase_type_sold_as(purchase_type, "subscription")
    quote = registry.quote(
        PurchaseRequest(
            user_id=user_id, purchase_type=purchase_type, service_id=plan_id, renewal=renewal
        )
    )
    if quote.recurring is None:
        raise TypeError(f"The plugin for {purchase_type!r} quoted no recurring price.")
    return quote


_STRIPE_ENDED = ("canceled", "incomplete_expired")


class SubscriptionExistsError(DomainError):
    code = ErrorCode.SUBSCRIPTION_EXISTS
    status = 409


def _claim(*, user_id: int, purchase_type: str, plan_id: int, quote: Quote) -> Subscription:
    """Insert the user's one live record for this plan, before Stripe is asked.

    The partial unique index `subscription_one_live_per_plan` is the lock: of
    simultaneous starts one insert wins and the others are refused here, so they
    never reach Stripe. A record left `incomplete` by a request that died is
    given up first once it is older than `INCOMPLETE_GRACE`.
    """
    stale = Subscription.objects.filter(
        user_id=user_id,
        purchase_type=purchase_type,
        plan_ref=str(plan_id),
        status=Subscription.Status.INCOMPLETE,
        created_at__lt=timezone.now() - INCOMPLETE_GRACE,
    )
    for local in stale:
        _give_up(local, adopt_live=True)
    try:
        with transaction.atomic():
            return Subscription.objects.create(
                user_id=user_id,
                purchase_type=purchase_type,
                plan_ref=str(plan_id),
                # One name for the plan everywhere: the catalog's, not the order's wording.
                plan_name=(quote.recurring.plan_name or quote.description)[:255],
                stripe_price_id=quote.recurring.stripe_price_id,
            )
    except IntegrityError:
        live = Subscription.objects.filter(
            user_id=user_id,
            purchase_type=purchase_type,
            plan_ref=str(plan_id),
            status__in=Subscription.LIVE_STATUSES,
        ).first()
        raise SubscriptionExistsError(
            "You already have this plan, or are subscribing to it in another request.",
            plan_id=plan_id,
            subscription_id=live.pk if live else None,
            status=live.status if live else None,
        ) from None


def _give_up(
    local: Subscription, customer_id: str | None = None, *, adopt_live: bool = False
) -> None:
    """End a record that will not become a subscription, and whatever Stripe made for it.

    Stripe is asked for the customer's subscriptions carrying this record's id,
    so one made by a request whose answer was lost is cancelled too. If Stripe
    cannot be asked, the record stays `incomplete` (and the plan blocked) rather
    than risk a second live subscription. With `adopt_live` (an old record), a
    subscription Stripe holds as paid for it (a Checkout completed whose events
    were not processed) is recorded instead of cancelled.
    """
    if customer_id is None:
        customer = StripeCustomer.objects.filter(user_id=local.user_id).first()
        customer_id = customer.stripe_customer_id if customer else None
    made = []
    if customer_id:
        made = [
            s
            for s in gateway.subscriptions_for_customer(customer_id=customer_id)
            if s.status not in _STRIPE_ENDED
            and (
                s.id == local.stripe_subscription_id
                or s.metadata.get("subscription_id") == str(local.pk)
            )
        ]
    for found in made:
        if adopt_live and found.status in ("active", "trialing", "past_due"):
            subscription_record(data=found)
            return
    for found in made:
        gateway.subscription_cancel_now(subscription_id=found.id)
    ended = {"status": Subscription.Status.INCOMPLETE_EXPIRED, "updated_at": timezone.now()}
    if (
        len(made) == 1
        and not local.stripe_subscription_id
        and not Subscription.objects.filter(stripe_subscription_id=made[0].id).exists()
    ):
        ended["stripe_subscription_id"] = made[0].id  # for staff: what was cancelled
    Subscription.objects.filter(pk=local.pk, status=Subscription.Status.INCOMPLETE).update(**ended)
    log.warning(
        "subscription record %s given up; nothing of it is live at Stripe",
        local.pk,
        extra={"user_id": local.user_id},
    )


def _give_up_quietly(local: Subscription, customer_id: str | None) -> None:
    try:
        _give_up(local, customer_id)
    except Exception:
        log.exception("subscription record %s could not be given up; it stays incomplete", local.pk)


def subscription_start(
    *,
    user_id: int,
    plan_id: int,
    purchase_type: str = SUBSCRIPTION_PURCHASE_TYPE,
    payment_method_id: str | int | None = None,
    payment_type: str = "intent",
    success_url: str | None = None,
    cancel_url: str | None = None,
) -> tuple[Subscription, str | None]:
    """Subscribe the user; answers the record and, for Checkout, the page to send them to.

    The local record is inserted first (409 `subscription_exists` when the user
    has this plan live, or another request is starting it); every Stripe write
    carries a key made from its id; and if the first payment is refused or the
    record cannot be kept, what Stripe made is cancelled and the record ends, so
    the user can try again.
    """
    quote = _quote(user_id=user_id, purchase_type=purchase_type, plan_id=plan_id)
    if payment_type == "checkout":
        success_url, cancel_url = redirect_urls_check(
            success_url=success_url, cancel_url=cancel_url
        )
    elif (
        payment_method_id is None
        and not SavedPaymentMethod.objects.filter(user_id=user_id, is_default=True).exists()
    ):
        raise InvalidInputError(
            "Add a card first (POST /api/v1/payments/methods/setup/), name one with "
            "`payment_method_id`, or use `payment_type: checkout`.",
            field="payment_method_id",
        )
    card = (
        card_get_for_user(user_id=user_id, card=payment_method_id)
        if payment_method_id is not None
        else SavedPaymentMethod.objects.filter(user_id=user_id, is_default=True).first()
    )
    local = _claim(user_id=user_id, purchase_type=purchase_type, plan_id=plan_id, quote=quote)
    customer_id = None
    try:
        customer_id = stripe_customer_get_or_create(user_id=user_id)
        metadata = {
            "user_id": str(user_id),
            "subscription_id": str(local.pk),
            "purchase_type": purchase_type,
            "plan_id": str(plan_id),
            "order_type": "subscription",
            **metadata_marker(),
        }
        if payment_type == "checkout":
            session = gateway.checkout_session_create(
                mode="subscription",
                amount=quote.amount,
                currency=quote.currency,
                name=quote.description,
                metadata=metadata,
                client_reference_id=f"subscription-{local.pk}",
                success_url=success_url,
                cancel_url=cancel_url,
                customer_id=customer_id,
                recurring_price=quote.recurring.stripe_price_id,
                idempotency_key=f"subscription-{local.pk}-checkout",
            )
            return local, session.url
        if card is not None:
            # Stripe bills each cycle to the customer's default card: make it this one.
            gateway.customer_default_payment_method_set(
                customer_id=customer_id, payment_method_id=card.stripe_payment_method_id
            )
        data = gateway.subscription_create(
            customer_id=customer_id,
            price_id=quote.recurring.stripe_price_id,
            metadata=metadata,
            idempotency_key=f"subscription-{local.pk}",
            default_payment_method=card.stripe_payment_method_id if card is not None else None,
        )
        if data.status in ("active", "trialing"):
            subscription_record(data=data)
    except Exception:
        _give_up_quietly(local, customer_id)
        raise
    if data.status not in ("active", "trialing"):
        # The first invoice was not paid (declined, or it needs the customer's
        # authentication, which this request cannot ask for): end it now rather
        # than leave an `incomplete` subscription holding the plan.
        _give_up_quietly(local, customer_id)
        raise gateway.CardDeclinedError(
            "The card was not charged, so the subscription was not started; try another card.",
            subscription_id=local.pk,
            stripe_status=data.status,
        )
    # Stripe charged the first invoice with the subscription: record it now
    # rather than wait for its event (the event then changes nothing).
    try:
        for invoice in gateway.invoices_for_subscription(subscription_id=data.id):
            invoice_record(invoice=invoice)
    except Exception:
        log.exception("subscription %s: recording its first invoice failed", local.pk)
    local.refresh_from_db()
    return local, None


_ENDED = (Subscription.Status.CANCELED, Subscription.Status.INCOMPLETE_EXPIRED)


def _local_for(data: SubscriptionData) -> Subscription | None:
    found = Subscription.objects.select_for_update().filter(stripe_subscription_id=data.id).first()
    if found is not None:
        return found
    ours = data.metadata.get("subscription_id", "")
    if ours.isdigit():
        found = (
            Subscription.objects.select_for_update()
            .filter(pk=int(ours), stripe_subscription_id__isnull=True)
            .first()
        )
        if found is not None:
            return found
    customer = StripeCustomer.objects.filter(stripe_customer_id=data.customer_id).first()
    if customer is None:
        return None
    # Started outside Tollgate (the portal, the dashboard): keep a record of it.
    return Subscription(
        user_id=customer.user_id,
        purchase_type=data.metadata.get("purchase_type", SUBSCRIPTION_PURCHASE_TYPE),
        plan_ref=data.metadata.get("plan_id", ""),
    )


def subscription_record(*, data: SubscriptionData, as_of: int | None = None) -> str:
    """Apply Stripe's view of a subscription, unless a newer one was applied already."""
    with transaction.atomic():
        local = _local_for(data)
        if local is None:
            return "no customer of ours for this subscription"
        when = _ts(as_of)
        if when and local.stripe_updated_at and when < local.stripe_updated_at:
            return "older than the state already recorded"
        if local.status in _ENDED and data.status not in _ENDED:
            return f"already {local.status}; an ended subscription does not come back"
        local.stripe_subscription_id = data.id
        local.status = data.status or local.status
        local.stripe_price_id = data.price_id or local.stripe_price_id
        local.current_period_end = _ts(data.current_period_end) or local.current_period_end
        local.cancel_at_period_end = data.cancel_at_period_end
        local.canceled_at = _ts(data.canceled_at)
        if when:
            local.stripe_updated_at = when
        try:
            with transaction.atomic():
                local.save()
        except IntegrityError:  # the same Stripe subscription recorded concurrently
            raise ConflictError("Subscription recorded concurrently; retry.") from None
        return f"subscription is {local.status}"


# Invoices that bill a whole cycle of the plan. "" is an API version that does
# not state a reason (older ones, localstripe): the amount check still applies.
CYCLE_BILLING_REASONS = frozenset({"subscription_create", "subscription_cycle", ""})


def _not_a_whole_cycle(invoice: InvoiceData, *, amount: int, currency: str) -> str:
    """Why this paid invoice does not buy a cycle of the plan, or "" when it does."""
    if invoice.billing_reason not in CYCLE_BILLING_REASONS:
        if invoice.billing_reason == "subscription_update":
            return "a proration for a change of plan or quantity, not a cycle"
        return f"billing_reason {invoice.billing_reason!r} is not a billing cycle"
    if invoice.currency != currency.lower():
        return f"paid in {invoice.currency}; the plan is priced in {currency.lower()}"
    if invoice.amount_paid < amount:
        return f"{invoice.amount_paid} paid; a cycle of the plan is {amount} {currency.lower()}"
    return ""


def invoice_record(*, invoice: InvoiceData) -> str:
    """Make the order for a paid subscription invoice and fulfil it, once per invoice.

    Only a whole cycle is an order: `billing_reason` `subscription_create` or
    `subscription_cycle` (or not stated, from older API versions), paid in the
    plan's currency, at least the plan's price (tax on top is fine). Any other
    paid invoice (a proration, a manual or threshold invoice, a discounted,
    short or foreign-currency payment) grants nothing and makes no order: the
    answer, stored on the event, which ends processed (never retried), says
    what was paid and why it was not granted, and a warning is logged, for
    staff to settle (a refund, or a grant).
    """
    if not invoice.subscription_id:
        return "not a subscription invoice"
    if not invoice.paid or invoice.amount_paid <= 0:
        return f"invoice is {invoice.status}; nothing was paid"
    with transaction.atomic():
        local = Subscription.objects.filter(stripe_subscription_id=invoice.subscription_id).first()
        if local is None:
            # The invoice arrived before its subscription: read it from Stripe.
            subscription_record(
                data=gateway.subscription_retrieve(subscription_id=invoice.subscription_id)
            )
            local = Subscription.objects.filter(
                stripe_subscription_id=invoice.subscription_id
            ).first()
            if local is None:
                return "no subscription of ours for this invoice"
        existing = Order.objects.select_for_update().filter(stripe_invoice_id=invoice.id).first()
        if existing is not None:
            return f"invoice already recorded as order {existing.pk}"
        quote = _quote(
            user_id=local.user_id,
            purchase_type=local.purchase_type,
            plan_id=int(local.plan_ref),
            renewal=True,
        )
        refusal = _not_a_whole_cycle(invoice, amount=quote.amount, currency=quote.currency)
        if refusal:
            log.warning(
                "subscription invoice %s not granted: %s",
                invoice.id,
                refusal,
                extra={"user_id": local.user_id, "subscription_id": local.pk},
            )
            return (
                f"not granted: {refusal}; invoice {invoice.id} of subscription {local.pk} "
                f"(user {local.user_id}), {invoice.amount_paid} {invoice.currency} paid, "
                f"billing_reason {invoice.billing_reason or 'not stated'}"
            )
        order = Order.objects.create(
            user_id=local.user_id,
            purchase_type=local.purchase_type,
            order_type=Order.OrderType.SUBSCRIPTION,
            amount=invoice.amount_paid,
            currency=invoice.currency,
            description=quote.description[:255],
            data={
                **quote.data,
                "invoice_id": invoice.id,
                INVOICE_DATA_KEY: {
                    "stripe_invoice_id": invoice.id,
                    "billing_reason": invoice.billing_reason,
                    "amount_paid": invoice.amount_paid,
                    "currency": invoice.currency,
                    "period_start": invoice.period_start,
                    "period_end": invoice.period_end,
                },
            },
            stripe_invoice_id=invoice.id,
            subscription=local,
        )
        order.metadata = metadata_build(
            order_id=order.pk,
            user_id=local.user_id,
            order_type=Order.OrderType.SUBSCRIPTION,
            purchase_type=local.purchase_type,
            plugin_metadata={
                **quote.metadata,
                "subscription_id": str(local.pk),
                "invoice_id": invoice.id,
            },
            scheduling_data=None,
        )
        order.save(update_fields=["metadata"])
        intent_id, charge_id = invoice.payment_intent_id, invoice.charge_id
        if not intent_id:  # the pinned API version: its InvoicePayment may have come first
            intent_id, charge_id = _stored_invoice_payment(invoice.id)
        if intent_id:
            _payment_attach(order, intent_id=intent_id, charge_id=charge_id)
        order_transition(order, Order.Status.PAID)
        return f"invoice {invoice.id} is order {order.pk}, fulfilled"


def _payment_attach(order: Order, *, intent_id: str, charge_id: str) -> None:
    """The renewal order's payment row, so refunds of that payment find the order."""
    Payment.objects.get_or_create(
        stripe_payment_intent_id=intent_id,
        defaults={
            "order": order,
            "status": "succeeded",
            "amount": order.amount,
            "currency": order.currency,
            "amount_received": order.amount,
            "stripe_charge_id": charge_id,
        },
    )


def _stored_invoice_payment(invoice_id: str) -> tuple[str, str]:
    """The PaymentIntent of an `invoice_payment.paid` event already stored for this
    invoice (read from our own journal: no Stripe call on the webhook path)."""
    stored = (
        StripeEvent.objects.filter(
            type="invoice_payment.paid", payload__data__object__invoice=invoice_id
        )
        .order_by("id")
        .values_list("payload", flat=True)
    )
    for payload in stored:
        data = invoice_payment_from_payload(payload["data"]["object"])
        if data.payment_intent_id:
            return data.payment_intent_id, data.charge_id
    return "", ""


def invoice_payment_record(*, data: InvoicePaymentData) -> str:
    """Attach a paid invoice payment (the pinned API version's `invoice_payment.paid`)
    to its invoice's order. Without an order yet, `invoice_record` finds this event
    in the journal when the invoice is recorded; a non-granted invoice has none."""
    if data.status != "paid" or not data.payment_intent_id:
        return "nothing to attach: not a paid PaymentIntent"
    with transaction.atomic():
        order = Order.objects.select_for_update().filter(stripe_invoice_id=data.invoice_id).first()
        if order is None:
            return f"no order for invoice {data.invoice_id} (yet, or it was not granted)"
        _payment_attach(order, intent_id=data.payment_intent_id, charge_id=data.charge_id)
        return f"payment {data.payment_intent_id} is order {order.pk}'s"


def invoice_payment_failed(*, invoice: InvoiceData) -> str:
    """A cycle's payment failed: the subscription is past due and nothing is granted."""
    updated = Subscription.objects.filter(
        stripe_subscription_id=invoice.subscription_id,
        status__in=[Subscription.Status.ACTIVE, Subscription.Status.TRIALING],
    ).update(status=Subscription.Status.PAST_DUE)
    return "subscription is past due" if updated else "no live subscription to mark"


def subscription_cancel(*, user_id: int, subscription_id: int) -> Subscription:
    """Cancel at the end of the paid period (the user keeps what they paid for)."""
    local = Subscription.objects.filter(pk=subscription_id, user_id=user_id).first()
    if local is None:
        raise NotFoundError("No such subscription.", subscription_id=subscription_id)
    if local.status not in Subscription.LIVE_STATUSES or not local.stripe_subscription_id:
        raise ConflictError(
            f"This subscription is {local.status}; there is nothing to cancel.",
            status=local.status,
        )
    data = gateway.subscription_cancel_at_period_end(subscription_id=local.stripe_subscription_id)
    # Stripe stamps the request's time as `canceled_at`, on its own clock: recording
    # the cancel as of then keeps a late event from before it from undoing it.
    subscription_record(data=data, as_of=data.canceled_at)
    local.refresh_from_db()
    return local


def portal_url(*, user_id: int) -> str:
    customer_id = stripe_customer_get_or_create(user_id=user_id)
    return gateway.billing_portal_session_create(
        customer_id=customer_id, return_url=settings.FRONTEND_URL
    )
