"""Billing's models, by subject."""

from billing.models.customers import CardSetup, SavedPaymentMethod, StripeCustomer
from billing.models.disputes import Dispute
from billing.models.events import QueuedDrain, StripeEvent
from billing.models.orders import (
    ORDER_TRANSITIONS,
    UNPAID_STATUSES,
    Fulfilment,
    Order,
    Payment,
    Refund,
)
from billing.models.subscriptions import Subscription

__all__ = [
    "ORDER_TRANSITIONS",
    "UNPAID_STATUSES",
    "CardSetup",
    "Dispute",
    "Fulfilment",
    "Order",
    "Payment",
    "QueuedDrain",
    "Refund",
    "SavedPaymentMethod",
    "StripeCustomer",
    "StripeEvent",
    "Subscription",
]
