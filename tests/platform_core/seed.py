"""A row of every model the admin shows, made the way the services would leave them."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from billing.models import (
    CardSetup,
    Dispute,
    Fulfilment,
    Order,
    Refund,
    SavedPaymentMethod,
    StripeCustomer,
    StripeEvent,
    Subscription,
)
from bookings.models import Booking, SeatHold, Service
from credits.models import CreditPack, Plan
from credits.services import credits_freeze, credits_grant
from platform_core.ops.audit import audit_record
from tests.billing.factories import PaymentFactory
from tests.bookings.factories import (
    AvailabilityWindowFactory,
    PackageItemFactory,
    ServiceSessionFactory,
)
from tests.factories import UserFactory


def seed_every_model() -> dict:
    user = UserFactory()
    payment = PaymentFactory(
        order__user=user, status="succeeded", amount_received=1000, stripe_charge_id="ch_seed1"
    )
    order = payment.order
    Order.objects.filter(pk=order.pk).update(status=Order.Status.PAID, paid_at=timezone.now())
    Fulfilment.objects.create(order=order, result={"credits": 100})
    credits_grant(user_id=user.pk, amount=100, reference=f"order-{order.pk}", kind="purchase")
    refund = Refund.objects.create(
        order=order,
        payment=payment,
        stripe_refund_id="re_seed1",
        amount=300,
        currency="usd",
        status=Refund.Status.SUCCEEDED,
        source=Refund.Source.STRIPE,
    )
    dispute = Dispute.objects.create(
        stripe_dispute_id="dp_seed1",
        order=order,
        payment=payment,
        stripe_charge_id="ch_seed1",
        stripe_payment_intent_id=payment.stripe_payment_intent_id,
        amount=100,
        currency="usd",
        reason="fraudulent",
        status="needs_response",
        opened_at=timezone.now(),
        frozen_at=timezone.now(),
    )
    credits_freeze(user_id=user.pk, amount=10, reference=f"dispute-{dispute.pk}")
    event = StripeEvent.objects.create(
        stripe_id="evt_seed1",
        type="payment_intent.succeeded",
        object_id=payment.stripe_payment_intent_id,
        payload={"id": "evt_seed1", "data": {"object": {"id": payment.stripe_payment_intent_id}}},
        status=StripeEvent.Status.FAILED,
        attempts=8,
        last_error="Traceback (most recent call last):\nValueError: seeded failure",
    )
    StripeCustomer.objects.create(user=user, stripe_customer_id="cus_seed1")
    SavedPaymentMethod.objects.create(
        user=user,
        stripe_payment_method_id="pm_seed1",
        card_brand="visa",
        last4="4242",
        exp_month=12,
        exp_year=2040,
        is_default=True,
    )
    CardSetup.objects.create(user=user, stripe_setup_intent_id="seti_seed1", status="succeeded")
    plan = Plan.objects.create(
        name="Seed monthly",
        stripe_price_id="plan_seed_monthly",
        amount=1900,
        credits_per_cycle=100,
    )
    Subscription.objects.create(
        user=user,
        purchase_type="subscription",
        plan_ref=str(plan.pk),
        plan_name=plan.name,
        stripe_subscription_id="sub_seed1",
        stripe_price_id=plan.stripe_price_id,
        status=Subscription.Status.ACTIVE,
    )
    CreditPack.objects.create(name="Seed pack", credits=100, price=1000)
    session = ServiceSessionFactory()
    AvailabilityWindowFactory()
    PackageItemFactory()
    booking = Booking.objects.create(
        user=user,
        service=session.service,
        session=session,
        start=session.start,
        end=session.end,
        order_id=order.pk,
    )
    SeatHold.objects.create(
        service=session.service,
        session=session,
        user=user,
        order_id=order.pk,
        expires_at=timezone.now() + timedelta(minutes=10),
    )
    Service.objects.filter(pk=session.service_id).update(name="Seed workshop")
    audit_record(actor_id=None, action="seed", obj=order, reason="seeded")
    return {"user": user, "order": order, "refund": refund, "event": event, "booking": booking}
