"""Billing factories: orders as order_create would leave them before Stripe answers."""

import factory

from billing.metadata import metadata_marker
from billing.models import Order, Payment
from tests.factories import UserFactory


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order
        skip_postgeneration_save = True

    user = factory.SubFactory(UserFactory)
    purchase_type = "credits"
    order_type = Order.OrderType.CREDIT
    amount = 1000
    currency = "usd"
    description = "100 credits"
    data = factory.LazyFunction(lambda: {"credits": 100, "pack_id": None})
    metadata = factory.LazyAttribute(
        lambda o: {
            "user_id": str(o.user.pk),
            "order_type": "credit",
            "purchase_type": "credits",
            **metadata_marker(),
        }
    )

    @factory.post_generation
    def _order_id_in_metadata(obj, create, extracted, **kwargs):
        obj.metadata["order_id"] = str(obj.pk)
        if create:
            obj.save(update_fields=["metadata"])


class PaymentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Payment

    order = factory.SubFactory(OrderFactory)
    stripe_payment_intent_id = factory.Sequence(lambda n: f"pi_test{n:08d}")
    status = "requires_payment_method"
    amount = factory.LazyAttribute(lambda p: p.order.amount)
    currency = factory.LazyAttribute(lambda p: p.order.currency)
