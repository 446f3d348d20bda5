"""Subscriptions: start, cancel at period end, and turn every paid invoice into an order.

The rule: each paid Stripe invoice is one order (unique on the invoice id),
created paid and fulfilled by the owning plugin in one transaction, so an
invoice reported twice (`invoice.paid` and `invoice.payment_succeeded`, or by
the start request and its event) grants once. Subscription records move only
forward in Stripe's time: an older event never overwrites a newer state.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.conf import settings
from django.db import IntegrityError, transaction

from billing import gateway
from billing.metadata import metadata_build
from billing.models import Order, Payment, SavedPaymentMethod, StripeCustomer, Subscription
from billing.services.cards import card_get_for_user, stripe_customer_get_or_create
from billing.services.checkout import redirect_urls_check
from billing.services.payments import order_transition
from billing.stripe_objects import InvoiceData, SubscriptionData
from kernel.errors import ConflictError, InvalidInputError, NotFoundError
from purchasables.registry import registry
from purchasables.types import PurchaseRequest

log = logging.getLogger(__name__)

SUBSCRIPTION_PURCHASE_TYPE = "subscription"


def _ts(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=UTC) if value else None


def _quote(*, user_id: int, purchase_type: str, plan_id: int):
    spec = registry.purchase_type(purchase_type)
    if spec.order_type != "subscription":
        raise InvalidInputError(
            f"{purchase_type!r} is not a subscription purchase type.", field="purchase_type"
        )
    quote = registry.quote(
        PurchaseRequest(user_id=user_id, purchase_type=purchase_type, service_id=plan_id)
    )
    if quote.recurring is None:
        raise TypeError(f"The plugin for {purchase_type!r} quoted no recurring price.")
    return quote


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
    """Subscribe the user; answers the record and, for Checkout, the page to send them to."""
    quote = _quote(user_id=user_id, purchase_type=purchase_type, plan_id=plan_id)
    if Subscription.objects.filter(
        user_id=user_id, plan_ref=str(plan_id), status__in=Subscription.LIVE_STATUSES
    ).exists():
        raise ConflictError("You already have this plan.", plan_id=plan_id)
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
    customer_id = stripe_customer_get_or_create(user_id=user_id)
    local = Subscription.objects.create(
        user_id=user_id,
        purchase_type=purchase_type,
        plan_ref=str(plan_id),
        plan_name=quote.description[:255],
        stripe_price_id=quote.recurring.stripe_price_id,
    )
    metadata = {
        "user_id": str(user_id),
        "subscription_id": str(local.pk),
        "purchase_type": purchase_type,
        "plan_id": str(plan_id),
        "order_type": "subscription",
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
    subscription_record(data=data)
    # Stripe charged the first invoice with the subscription: record it now
    # rather than wait for its event (the event then changes nothing).
    for invoice in gateway.invoices_for_subscription(subscription_id=data.id):
        invoice_record(invoice=invoice)
    local.refresh_from_db()
    return local, None


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
        if local.status == Subscription.Status.CANCELED and data.status != "canceled":
            return "already canceled; a canceled subscription does not come back"
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


def invoice_record(*, invoice: InvoiceData) -> str:
    """Make the order for a paid subscription invoice and fulfil it, once per invoice."""
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
            user_id=local.user_id, purchase_type=local.purchase_type, plan_id=int(local.plan_ref)
        )
        order = Order.objects.create(
            user_id=local.user_id,
            purchase_type=local.purchase_type,
            order_type=Order.OrderType.SUBSCRIPTION,
            amount=invoice.amount_paid,
            currency=invoice.currency,
            description=quote.description[:255],
            data={**quote.data, "invoice_id": invoice.id},
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
        if invoice.payment_intent_id:
            Payment.objects.get_or_create(
                stripe_payment_intent_id=invoice.payment_intent_id,
                defaults={
                    "order": order,
                    "status": "succeeded",
                    "amount": invoice.amount_paid,
                    "currency": invoice.currency,
                    "amount_received": invoice.amount_paid,
                    "stripe_charge_id": invoice.charge_id,
                },
            )
        order_transition(order, Order.Status.PAID)
        return f"invoice {invoice.id} is order {order.pk}, fulfilled"


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
    subscription_record(data=data)
    local.refresh_from_db()
    return local


def portal_url(*, user_id: int) -> str:
    customer_id = stripe_customer_get_or_create(user_id=user_id)
    return gateway.billing_portal_session_create(
        customer_id=customer_id, return_url=settings.FRONTEND_URL
    )
