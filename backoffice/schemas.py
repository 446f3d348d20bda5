"""Output schemas of the operations API: the dashboard and a user's data export."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from ninja import Field, Schema


class PeriodOut(Schema):
    start: date
    end: date = Field(description="Included.")
    days: int


class MoneyOut(Schema):
    currency: str
    amount: int = Field(description="In the currency's minor unit.")
    display: str


class RevenueOut(Schema):
    currency: str
    orders: int = Field(description="Orders paid in the period.")
    gross: int
    refunded: int = Field(description="Refunds applied in the period that reverse an order.")
    net: int
    gross_display: str
    refunded_display: str
    net_display: str


class RevenueDayOut(Schema):
    date: date
    currency: str
    gross: int
    refunded: int
    net: int


class PaymentsOut(Schema):
    orders: int = Field(description="Orders created in the period (subscription cycles aside).")
    succeeded: int
    failed: int
    canceled: int
    open: int
    success_rate: float | None = Field(description="paid / (paid + failed); null if neither.")
    failure_rate: float | None


class RefundsOut(Schema):
    currency: str
    count: int
    amount: int
    display: str


class CreditsOut(Schema):
    issued: int
    spent: int
    reversed: int = Field(description="Refund debits and negative adjustments.")
    outstanding: int = Field(description="The whole ledger's sum at the end of the period.")
    expired: int = Field(description="Credits the expiry sweep took in the period.")
    outstanding_by_category: dict[str, int] = Field(
        description="Now: what is left of the lots, per category (paid, promotional)."
    )
    deferred_revenue: list[MoneyOut] = Field(
        description="Now: per currency, what was paid for the paid credits not yet used."
    )


class SubscriptionsOut(Schema):
    active: int
    mrr: list[MoneyOut]
    unpriced: int = Field(description="Active subscriptions whose price matches no plan.")


class WebhooksOut(Schema):
    processed: int
    lag_p50_seconds: float | None
    lag_p95_seconds: float | None
    failed_in_period: int
    failed_total: int


class DisputesOut(Schema):
    currency: str
    open: int = Field(description="Disputes open now.")
    open_amount: int = Field(description="What the open disputes claim, in minor units.")
    open_display: str
    opened: int = Field(description="Disputes Stripe opened in the period.")
    won: int = Field(description="Disputes closed in the period in our favour.")
    lost: int = Field(description="Disputes closed in the period against us.")
    lost_amount: int = Field(description="What the lost ones took back, in minor units.")
    lost_display: str


class DashboardOut(Schema):
    period: PeriodOut
    revenue: list[RevenueOut]
    revenue_days: list[RevenueDayOut]
    payments: PaymentsOut
    refunds: list[RefundsOut]
    credits: CreditsOut
    subscriptions: SubscriptionsOut
    webhooks: WebhooksOut
    disputes: list[DisputesOut] = Field(
        description="Disputes of our payments, per currency (another system's left out)."
    )


# --- the data export ---------------------------------------------------------------


class ProfileOut(Schema):
    id: int
    username: str
    email: str
    first_name: str
    last_name: str
    is_active: bool
    date_joined: datetime
    last_login: datetime | None


class ExportPaymentOut(Schema):
    stripe_payment_intent_id: str
    status: str
    amount: int
    amount_received: int
    currency: str
    created_at: datetime


class ExportRefundOut(Schema):
    id: int
    amount: int
    currency: str
    status: str
    reason: str
    created_at: datetime


class ExportOrderOut(Schema):
    id: int
    purchase_type: str
    order_type: str
    status: str
    amount: int
    currency: str
    amount_display: str
    description: str
    payment_type: str
    metadata: dict[str, Any]
    created_at: datetime
    paid_at: datetime | None
    payments: list[ExportPaymentOut]
    refunds: list[ExportRefundOut]


class ExportLedgerEntryOut(Schema):
    id: int
    amount: int
    kind: str
    reference: str
    balance_after: int
    memo: str
    created_at: datetime


class ExportCreditsOut(Schema):
    balance: int
    entries: list[ExportLedgerEntryOut]


class ExportBookingOut(Schema):
    id: int
    service: str
    status: str
    start: datetime | None
    end: datetime | None
    order_id: int
    parent_id: int | None
    created_at: datetime


class ExportCardOut(Schema):
    card_brand: str
    last4: str
    is_default: bool
    created_at: datetime


class ExportSubscriptionOut(Schema):
    id: int
    plan_name: str
    status: str
    current_period_end: datetime | None
    cancel_at_period_end: bool
    canceled_at: datetime | None
    created_at: datetime


class ExportTokenOut(Schema):
    prefix: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class UserExportOut(Schema):
    exported_at: datetime
    profile: ProfileOut
    orders: list[ExportOrderOut]
    credits: ExportCreditsOut
    bookings: list[ExportBookingOut]
    saved_cards: list[ExportCardOut]
    stripe_customer_id: str | None
    subscriptions: list[ExportSubscriptionOut]
    api_tokens: list[ExportTokenOut]
