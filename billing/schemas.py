"""Request and response bodies of the payments and catalog API."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from ninja import Schema
from pydantic import Field, StrictBool, StrictInt, StrictStr

from billing.models import UNPAID_STATUSES, Fulfilment, Order, Payment, Refund
from kernel.money import format_minor
from kernel.storable_json import JsonObject


class OrderCreateIn(Schema):
    """The create body. `amount` is in major units ("10.50"); the server's quote wins."""

    model_config = {
        "extra": "forbid",
        # Shown in the API docs, and where schemathesis starts from valid requests.
        "json_schema_extra": {
            "examples": [
                {"is_credit_purchase": True, "credit_amount": 100, "amount": "10.00"},
                {
                    "is_credit_purchase": True,
                    "credit_amount": 100,
                    "payment_method_id": "pm_card_visa",
                },
            ]
        },
    }

    purchase_type: Annotated[str, Field(max_length=50)] | None = None
    is_credit_purchase: StrictBool = False
    credit_amount: Annotated[StrictInt, Field(ge=1)] | None = None
    pack_id: Annotated[StrictInt, Field(ge=1)] | None = None
    service_id: Annotated[StrictInt, Field(ge=1)] | None = None
    amount: Decimal | StrictInt | StrictStr | None = Field(
        default=None,
        description='What the client expects to pay, in major units ("10.50"); '
        "409 if it differs from the server's price.",
    )
    payment_type: Literal["intent", "checkout", "credits"] = Field(
        default="intent",
        description="`intent`: a PaymentIntent; `checkout`: Stripe's Checkout page; "
        "`credits`: paid at once from my credits, at the purchase's credit price (422 "
        "when it has none, 409 with `extra.missing` when I have too few; then nothing "
        "is created).",
    )
    apply_credits: StrictBool = Field(
        default=False,
        description="With `intent`: my credits pay first, up to the credit price, and "
        "the card pays the rest of the price in proportion (all of it, and no card, when "
        "my credits cover it). The credits come back if the order is cancelled or left "
        "unpaid.",
    )
    success_url: Annotated[str, Field(max_length=2000)] | None = Field(
        default=None, description="Checkout only; on FRONTEND_URL's origin."
    )
    cancel_url: Annotated[str, Field(max_length=2000)] | None = Field(
        default=None, description="Checkout only; on FRONTEND_URL's origin."
    )
    scheduling_data: JsonObject | None = None
    service_data: JsonObject | None = None
    # Shaped like a Stripe id (`pm_…`), so a card number pasted here is refused
    # before it reaches Stripe or a log line.
    payment_method_id: (
        Annotated[str, Field(min_length=3, max_length=255, pattern=r"^[a-z]+_[A-Za-z0-9_]+$")]
        | None
    ) = Field(
        default=None,
        description="A saved card's `pm_…` id, or any Stripe payment method (such as "
        "pm_card_visa), to confirm with at once.",
    )
    save_payment_method: StrictBool = Field(
        default=False, description="Save the `payment_method_id` card for later payments."
    )


class OrderPayIn(Schema):
    """Pay an unpaid order again, on the same order, with another (or the same) card."""

    model_config = {
        "extra": "forbid",
        "json_schema_extra": {"examples": [{"payment_method_id": "pm_card_visa"}]},
    }

    payment_method_id: (
        Annotated[StrictInt, Field(ge=1, le=2**63 - 1)]
        | Annotated[str, Field(min_length=3, max_length=255, pattern=r"^[a-z]+_[A-Za-z0-9_]+$")]
    ) = Field(
        description="One of my saved cards (its id or `pm_…` id), or any Stripe payment "
        "method (such as pm_card_visa)."
    )


class PaymentOut(Schema):
    stripe_payment_intent_id: str
    status: str
    amount: int
    currency: str
    amount_received: int
    created_at: datetime


class RefundOut(Schema):
    id: int
    stripe_refund_id: str | None
    amount: int
    amount_display: str
    currency: str
    status: str
    source: str
    reason: str
    failure_reason: str
    applied: bool
    method: str = Field(
        description="`card`: to the card at Stripe; `credits`: the credits the order "
        "was paid with, given back; `as_credits`: card money refunded as credits."
    )
    credits: int = Field(description="Credits this refund gives (0 for `card`).")
    created_at: datetime

    @staticmethod
    def resolve_amount_display(refund: Refund) -> str:
        return format_minor(refund.amount, refund.currency)

    @staticmethod
    def resolve_applied(refund: Refund) -> bool:
        return refund.applied_at is not None


class RefundCreateIn(Schema):
    """A staff refund: `amount` in major units ("5.00"), or none to refund all that is left.

    An order paid with credits (in full or in part) is refunded in proportion to
    what paid it: the card part at Stripe, the credits part back to the buyer's
    credits; with `credits` the request names the parts (`credits` back, `amount`
    to the card). With `to_credits` the card payment is refunded as credits instead.
    """

    model_config = {"extra": "forbid"}

    amount: Decimal | StrictInt | StrictStr | None = None
    reason: Annotated[str, Field(max_length=500)] = ""
    credits: Annotated[StrictInt, Field(ge=1, le=10**9)] | None = Field(
        default=None,
        description="Orders paid with credits: give back this many credits, and `amount` "
        "(if any) to the card.",
    )
    to_credits: StrictBool = Field(
        default=False,
        description="Refund the card payment as credits (no Stripe refund): the buyer "
        "gets credits at the order's credit price, or at the credit rate.",
    )


class DeliveryOut(Schema):
    """One thing an order delivered, as its buyer sees it."""

    label: str
    value: str


class OrderOut(Schema):
    """An order, rendered from the model (with `is_fulfilled` annotated when listing)."""

    # What the caller already holds is not read again: `is_fulfilled` (the order
    # list annotates it), and `known_payments` / `known_refunds`, which an
    # order's create sets for the order it has just made.

    id: int
    purchase_type: str
    order_type: str
    status: str
    amount: int = Field(description="In the currency's minor unit.")
    amount_display: str
    currency: str
    payment_type: str = Field(description="`intent`, `checkout` or `credits`.")
    credit_price: int | None = Field(
        description="The price in credits when it was ordered; null: not sold for credits."
    )
    credits: int = Field(description="Credits my credits paid of it (0: none).")
    credits_value: int = Field(description="The part of `amount` those credits paid.")
    card_amount: int = Field(description="The part of `amount` a card pays.")
    cancellable_until: datetime | None = Field(
        description="Paid with credits: until when I may cancel it for my credits back."
    )
    description: str
    metadata: dict[str, str]
    failure_code: str
    failure_message: str
    fulfilled: bool
    created_at: datetime
    paid_at: datetime | None
    payments: list[PaymentOut]
    refunds: list[RefundOut]
    delivered: list[DeliveryOut] | None = Field(
        None,
        description="What the order delivered, shown by its plugin (a gift card's code, a "
        "booking); on one order's page only, null in lists.",
    )

    @staticmethod
    def resolve_amount_display(order: Order) -> str:
        return format_minor(order.amount, order.currency)

    @staticmethod
    def resolve_delivered(order: Order) -> list | None:
        lines = getattr(order, "delivered", None)
        return None if lines is None else [{"label": x.label, "value": x.value} for x in lines]

    @staticmethod
    def resolve_fulfilled(order: Order) -> bool:
        annotated = getattr(order, "is_fulfilled", None)
        if annotated is not None:
            return annotated
        if order.status in UNPAID_STATUSES:
            # An order is fulfilled in its move to paid, and never moves back.
            return False
        return Fulfilment.objects.filter(order_id=order.pk).exists()

    @staticmethod
    def resolve_payments(order: Order) -> list[Payment]:
        known = getattr(order, "known_payments", None)
        return list(order.payments.all()) if known is None else known

    @staticmethod
    def resolve_refunds(order: Order) -> list[Refund]:
        known = getattr(order, "known_refunds", None)
        return list(order.refunds.all()) if known is None else known


class OrderCreateOut(Schema):
    order_id: int
    status: str
    payment_status: str | None = Field(description="The PaymentIntent's own status.")
    amount: int
    amount_display: str
    currency: str
    payment_type: str
    payment_intent_id: str | None
    client_secret: str | None
    checkout_url: str | None = Field(description="Checkout only: send the customer here.")
    publishable_key: str
    order: OrderOut


class PurchaseTypeOut(Schema):
    name: str
    order_type: str
    label: str
    description: str
    # How it may be bought: `order` (POST /payments/create/), `subscription`.
    sold_as: list[str]
    catalog: dict[str, Any]


class CatalogOut(Schema):
    purchase_types: list[PurchaseTypeOut]


class PaymentMethodOut(Schema):
    id: int
    stripe_payment_method_id: str
    card_brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None
    is_default: bool


class PaymentMethodsOut(Schema):
    payment_methods: list[PaymentMethodOut]


class CardSetupOut(Schema):
    setup_intent_id: str
    client_secret: str
    publishable_key: str


class DefaultCardIn(Schema):
    model_config = {"extra": "forbid"}

    payment_method_id: StrictInt | Annotated[str, Field(min_length=3, max_length=255)] = Field(
        description="The saved card's id, or its `pm_…` id."
    )


class SubscriptionCreateIn(Schema):
    model_config = {"extra": "forbid"}

    plan_id: Annotated[StrictInt, Field(ge=1)]
    purchase_type: Annotated[str, Field(max_length=50)] = "subscription"
    payment_method_id: StrictInt | Annotated[str, Field(min_length=3, max_length=255)] | None = (
        Field(default=None, description="A saved card (its id or `pm_…` id); else the default.")
    )
    # Stripe bills every cycle to a card: credits cannot pay for a subscription.
    payment_type: Literal["intent", "checkout"] = Field(
        default="intent",
        description="`intent`: charge the saved card now; `checkout`: Stripe's Checkout page.",
    )
    success_url: Annotated[str, Field(max_length=2000)] | None = None
    cancel_url: Annotated[str, Field(max_length=2000)] | None = None


class SubscriptionOut(Schema):
    id: int
    plan_id: str = Field(alias="plan_ref")
    plan_name: str
    purchase_type: str
    status: str
    stripe_subscription_id: str | None
    current_period_end: datetime | None
    cancel_at_period_end: bool
    created_at: datetime


class SubscriptionStartOut(Schema):
    subscription: SubscriptionOut
    checkout_url: str | None


class SubscriptionSummaryOut(Schema):
    """The subscription summary: the live plan, if any, and when it renews or ends."""

    has_active_subscription: bool
    plan_name: str | None
    status: str | None
    current_period_end: datetime | None
    cancel_at_period_end: bool


class SubscriptionListOut(Schema):
    subscriptions: list[SubscriptionOut]
    summary: SubscriptionSummaryOut


class PortalOut(Schema):
    url: str
