"""The values that cross the plugin boundary.

Billing builds these from its own models and hands them to the hooks; plugins
never see a billing model, so they cannot reach past the contract. All amounts
are integers in the currency's Stripe minor unit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

OrderType = Literal["credit", "direct", "subscription"]
# How a purchase type may be bought: `order`, one payment through
# `POST /api/v1/payments/create/`; `subscription`, billed every cycle through
# `POST /api/v1/payments/subscriptions/`.
SaleMode = Literal["order", "subscription"]


@dataclass(frozen=True)
class PurchaseType:
    """A purchase type a plugin owns. `name` is what clients send as `purchase_type`.

    :param sold_as: the ways it may be bought (`SaleMode`s); billing refuses the
        others with 422 `not_sold_this_way`. Left empty, it follows `order_type`:
        `("subscription",)` for a subscription type, `("order",)` for the rest.
        A type that is both sold once and by subscription names both; its quote
        must then carry a `recurring` price.
    """

    name: str
    order_type: OrderType
    label: str
    description: str = ""
    sold_as: tuple[SaleMode, ...] = ()

    def __post_init__(self) -> None:
        if not self.sold_as:
            default = ("subscription",) if self.order_type == "subscription" else ("order",)
            object.__setattr__(self, "sold_as", default)
        else:
            object.__setattr__(self, "sold_as", tuple(dict.fromkeys(self.sold_as)))
        unknown = [m for m in self.sold_as if m not in ("order", "subscription")]
        if unknown:
            raise ValueError(
                f"Purchase type {self.name!r}: sold_as may hold 'order' and "
                f"'subscription', not {unknown!r}."
            )


@dataclass(frozen=True)
class PurchaseRequest:
    """What a client asked to buy, already authenticated and schema-checked.

    :param renewal: True when billing quotes a paid cycle of a subscription the
        user already holds (a renewal invoice), not a new sale: price what the
        subscriber holds even if it is no longer for sale (a plan withdrawn
        from the catalog keeps serving those who hold it until they cancel).
    """

    user_id: int
    purchase_type: str
    credit_amount: int | None = None
    pack_id: int | None = None
    service_id: int | None = None
    scheduling_data: dict[str, Any] = field(default_factory=dict)
    service_data: dict[str, Any] = field(default_factory=dict)
    renewal: bool = False


@dataclass(frozen=True)
class RecurringPrice:
    """The Stripe price (or legacy plan) a subscription purchase type bills every cycle.

    :param plan_name: the plan's name as the buyer sees it in the catalog (and as
        Stripe's pages show its product); the subscription is listed under it.
        Empty: the quote's `description` stands in.
    """

    stripe_price_id: str
    interval: str
    interval_count: int = 1
    plan_name: str = ""


@dataclass(frozen=True)
class Quote:
    """The server's price for a request.

    :param amount: the price in the currency's Stripe minor unit.
    :param metadata: extra unified-metadata keys (`service_id`, …) for the order
        and every Stripe object; string values only, within Stripe's limits.
    :param data: what the plugin needs again at fulfilment, stored on the order
        (JSON-serialisable).
    :param recurring: for a subscription purchase type, what Stripe bills each
        cycle; every paid invoice then becomes an order fulfilled by the plugin.
    :param credits: the price in credits, for the same purchase: `credits`
        credits buy what `amount` buys. None (the default) when it is not sold
        for credits; then `payment_type: "credits"` and `apply_credits` are
        refused with 422 `not_sold_this_way`. With `apply_credits` a buyer who
        has fewer credits pays part in credits and the rest by card: `k` of the
        `credits` stand for `k/credits` of `amount`, and the card pays
        `amount * (credits - k) / credits`, rounded up to the currency's step.
    :param cancellable_until: until when the buyer may cancel the order
        themselves once it is paid with credits (the credits go back to them);
        None (the default) for never.
    """

    amount: int
    currency: str
    description: str
    metadata: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    recurring: RecurringPrice | None = None
    credits: int | None = None
    cancellable_until: datetime | None = None


@dataclass(frozen=True)
class InvoiceInfo:
    """The paid Stripe invoice a subscription order stands for.

    Billing makes an order of a subscription invoice, and fulfils it, only when
    the invoice is a whole cycle: `billing_reason` is `subscription_create` or
    `subscription_cycle` (or, from API versions older than the field, not
    stated) and at least the plan's price was paid in the plan's currency.
    Other paid invoices (prorations, manual or threshold invoices, short or
    foreign-currency payments) make no order and reach no plugin.

    :param stripe_invoice_id: Stripe's `in_…` id.
    :param billing_reason: Stripe's reason, as sent (`""` when not stated).
    :param amount_paid: what the customer paid, in the currency's minor unit.
    :param currency: lower-case ISO code; the plan's.
    :param period_start: Unix time the billed service period starts (the
        subscription line's period, else the invoice's), or None if unknown.
    :param period_end: Unix time it ends, or None.
    """

    stripe_invoice_id: str
    billing_reason: str
    amount_paid: int
    currency: str
    period_start: int | None = None
    period_end: int | None = None


@dataclass(frozen=True)
class OrderInfo:
    """An order as a plugin sees it: what was bought, by whom, for how much.

    :param invoice: for an order made from a paid subscription invoice, that
        invoice; None for every other order.
    :param credits: how many credits the buyer paid with (all of it with
        `payment_type: "credits"`, part of it with `apply_credits`); 0 when the
        order was paid only by card. `amount` is always the whole price in
        money, whatever paid it.
    """

    order_id: int
    user_id: int
    purchase_type: str
    order_type: OrderType
    amount: int
    currency: str
    metadata: dict[str, str]
    data: dict[str, Any]
    invoice: InvoiceInfo | None = None
    credits: int = 0


@dataclass(frozen=True)
class RefundInfo:
    """One refund being applied to an order, exactly once.

    A refund goes back to the card at Stripe, or as credits: the credits the
    order was paid with, or card money refunded as credits by staff. Whichever
    way, `amount` is the part of the order's price it refunds, so a plugin
    reverses delivery the same way for all of them.

    :param amount: this refund, in minor units (the money value of the credits
        for a refund in credits; may be 0 for a few credits worth less than one
        minor unit).
    :param refunded_total: all refunds of the order so far, this one included;
        `refunded_total == order.amount` on the refund that completes it.
    :param credits: the credits this refund gives the buyer; 0 for a refund to
        the card.
    """

    refund_id: int
    stripe_refund_id: str
    amount: int
    currency: str
    refunded_total: int
    reason: str
    # Set when the money went back through a lost dispute (a chargeback), not a refund.
    stripe_dispute_id: str = ""
    credits: int = 0

    def is_full(self, order: OrderInfo) -> bool:
        return self.refunded_total >= order.amount


@dataclass(frozen=True)
class DeliveryLine:
    """One thing an order delivered, as its buyer sees it: `Gift card code: ABCD-…`.

    :param label: what it is, short ("Credits added", "Booking").
    :param value: the detail, as text ("100", "Tue 12 Jan 10:00, seat confirmed").
    """

    label: str
    value: str


DisputeState = Literal["open", "won", "lost"]


@dataclass(frozen=True)
class DisputeInfo:
    """A dispute (chargeback or inquiry) of an order's payment, as its plugin is told of it.

    :param dispute_id: billing's id for it; stable, so a plugin can key what it
        holds on it (`dispute-<dispute_id>`).
    :param state: `open` while the customer's bank decides; `won` when it closed
        with the money kept (won, an inquiry closed, or prevented); `lost` when
        the bank took the money back.
    :param status: Stripe's own status (`needs_response`, `under_review`, `won`, …).
    :param amount: what the customer disputes, in minor units.
    :param at_stake: the part of `amount` the order still delivers (its amount
        less what refunds already reversed): what to freeze while open.
    :param reason: Stripe's reason (`fraudulent`, `product_not_received`, …).
    """

    dispute_id: int
    stripe_dispute_id: str
    state: DisputeState
    status: str
    amount: int
    at_stake: int
    currency: str
    reason: str
