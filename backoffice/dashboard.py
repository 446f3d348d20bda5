"""The financial dashboard's figures for a period, each from one aggregate query.

The rule: figures come from the database's aggregates (SUM, COUNT, GROUP BY,
ORDER BY … OFFSET), never from a Python loop over orders, events or ledger
entries, so the page costs the same with a million rows as with ten. Money
stays in integer minor units per currency; currencies are never added up.

Definitions (a period is whole UTC days, `start` and `end` included):
- revenue: the amounts of orders paid in the period (by `paid_at`), minus the
  refunds applied in the period that reverse an order (by `applied_at`); a
  refund of a surplus payment (`reverses_order` false) gave back money no order
  counted, so it is listed under refunds but not taken from revenue;
- payment outcomes: orders created in the period, subscription cycles left out
  (Stripe makes an order only for a paid invoice, which would flatter the rate);
  success rate = paid / (paid + failed); refunded orders count as paid;
- credits: entries written in the period: issued (every positive entry but a
  spend given back), spent (spend entries less what was given back of them),
  reversed (refund debits and negative adjustments), expired (the expiry
  sweep's entries); outstanding is the sum of the whole ledger up to the end of
  the period. Now, whatever the period: what is left of the lots per category,
  and deferred revenue, the cost basis of the paid credits not yet used (per
  lot, its price times the share of it left, rounded down);
- subscriptions: active now, and MRR from their plans, normalised to a month
  (a year is /12, a week ×52/12, a day ×365/12, divided by the interval count);
- webhook lag: `processed_at − received_at` of events received in the period,
  p50 and p95 by the nearest-rank method;
- disputes (of our payments; another system's are left out), per currency: open
  now and the amount they dispute; opened in the period (by Stripe's time);
  won and lost in the period (by when they closed), with the amount lost. A lost
  dispute is applied as a refund of source `dispute`: it is taken from revenue,
  and listed here rather than under refunds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, QuerySet, Sum
from django.db.models.functions import TruncDate

from billing.models import Dispute, Order, Refund, StripeEvent, Subscription
from credits.models import CreditTransaction, Plan
from credits.selectors import credits_deferred_revenue, credits_outstanding_by_category
from kernel.errors import InvalidInputError
from kernel.money import currency_get, format_minor
from kernel.times import input_date_check

DEFAULT_DAYS = 30
MAX_DAYS = 366
PAID_STATUSES = (Order.Status.PAID, Order.Status.PARTIALLY_REFUNDED, Order.Status.REFUNDED)
OPEN_STATUSES = (Order.Status.PENDING, Order.Status.REQUIRES_ACTION, Order.Status.PROCESSING)
# Cycles of each interval in a month, as a fraction (numerator, denominator):
# a plan's monthly amount = amount × numerator / (denominator × interval_count).
CYCLES_PER_MONTH = {"day": (365, 12), "week": (52, 12), "month": (1, 1), "year": (1, 12)}


@dataclass(frozen=True)
class Period:
    start: date
    end: date  # included

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def since(self) -> datetime:
        return datetime.combine(self.start, time.min, tzinfo=UTC)

    @property
    def until(self) -> datetime:
        """The first instant after the period."""
        return datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=UTC)

    def dates(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range(self.days)]


def period_parse(*, start: str | date | None, end: str | date | None, today: date) -> Period:
    """The period asked for (`YYYY-MM-DD`), by default the last 30 days up to today."""

    def parsed(value: str | date | None, name: str) -> date | None:
        if value in (None, ""):
            return None
        if not isinstance(value, date):
            try:
                value = date.fromisoformat(value)
            except ValueError:
                raise InvalidInputError(
                    f"`{name}` is a date such as 2025-01-31.", field=name
                ) from None
        return input_date_check(value, field=name)

    end_day = parsed(end, "end") or today
    start_day = parsed(start, "start")
    if start_day is None:
        try:
            start_day = end_day - timedelta(days=DEFAULT_DAYS - 1)
        except OverflowError:  # an `end` in the first days of year 1
            start_day = date.min
    if start_day > end_day:
        raise InvalidInputError("`start` is after `end`.", field="start")
    if (end_day - start_day).days + 1 > MAX_DAYS:
        raise InvalidInputError(f"A period is at most {MAX_DAYS} days.", field="start")
    return Period(start_day, end_day)


def money_display(minor: int, currency: str) -> str:
    """ "12.50 USD"; a sum that is not a whole step of the currency is shown unrounded."""
    try:
        return format_minor(minor, currency)
    except Exception:
        exponent = currency_get(currency).exponent
        return f"{Decimal(minor).scaleb(-exponent)} {currency.upper()}"


@dataclass(frozen=True)
class Money:
    currency: str
    amount: int

    @property
    def display(self) -> str:
        return money_display(self.amount, self.currency)


@dataclass(frozen=True)
class RevenueDay:
    day: date
    currency: str
    gross: int
    refunded: int

    @property
    def net(self) -> int:
        return self.gross - self.refunded


@dataclass(frozen=True)
class RevenueTotal:
    currency: str
    gross: int
    refunded: int
    orders: int

    @property
    def net(self) -> int:
        return self.gross - self.refunded


@dataclass(frozen=True)
class PaymentOutcomes:
    orders: int
    succeeded: int
    failed: int
    canceled: int
    open: int

    @property
    def success_rate(self) -> float | None:
        decided = self.succeeded + self.failed
        return round(self.succeeded / decided, 4) if decided else None

    @property
    def failure_rate(self) -> float | None:
        decided = self.succeeded + self.failed
        return round(self.failed / decided, 4) if decided else None


@dataclass(frozen=True)
class RefundTotal:
    currency: str
    count: int
    amount: int

    @property
    def display(self) -> str:
        return money_display(self.amount, self.currency)


@dataclass(frozen=True)
class CreditFigures:
    issued: int
    spent: int
    reversed: int
    outstanding: int
    expired: int
    outstanding_by_category: dict[str, int]
    deferred_revenue: list[Money]


@dataclass(frozen=True)
class SubscriptionFigures:
    active: int
    mrr: list[Money]
    # Active subscriptions whose price matches no plan (started outside Tollgate).
    unpriced: int


@dataclass(frozen=True)
class WebhookFigures:
    processed: int
    lag_p50_seconds: float | None
    lag_p95_seconds: float | None
    failed_in_period: int
    failed_total: int


@dataclass(frozen=True)
class DisputeTotal:
    currency: str
    open: int
    open_amount: int
    opened: int
    won: int
    lost: int
    lost_amount: int

    @property
    def open_display(self) -> str:
        return money_display(self.open_amount, self.currency)

    @property
    def lost_display(self) -> str:
        return money_display(self.lost_amount, self.currency)


@dataclass(frozen=True)
class Dashboard:
    period: Period
    revenue_days: list[RevenueDay]
    revenue: list[RevenueTotal]
    payments: PaymentOutcomes
    refunds: list[RefundTotal]
    credits: CreditFigures
    subscriptions: SubscriptionFigures
    webhooks: WebhookFigures
    currencies: list[str] = field(default_factory=list)
    disputes: list[DisputeTotal] = field(default_factory=list)


# --- revenue -----------------------------------------------------------------------


def _paid_in(period: Period) -> QuerySet[Order]:
    return Order.objects.filter(
        status__in=PAID_STATUSES, paid_at__gte=period.since, paid_at__lt=period.until
    )


def _refunds_applied_in(period: Period) -> QuerySet[Refund]:
    return Refund.objects.filter(applied_at__gte=period.since, applied_at__lt=period.until)


def revenue_by_day(period: Period) -> list[RevenueDay]:
    """Every day of the period for every currency that moved, zeros included."""
    gross = {
        (row["day"], row["currency"]): row["total"]
        for row in _paid_in(period)
        .annotate(day=TruncDate("paid_at"))
        .values("day", "currency")
        .annotate(total=Sum("amount"))
    }
    refunded = {
        (row["day"], row["currency"]): row["total"]
        for row in _refunds_applied_in(period)
        .filter(reverses_order=True)
        .annotate(day=TruncDate("applied_at"))
        .values("day", "currency")
        .annotate(total=Sum("amount"))
    }
    currencies = sorted({c for _, c in gross} | {c for _, c in refunded})
    return [
        RevenueDay(day, cur, gross.get((day, cur), 0), refunded.get((day, cur), 0))
        for cur in currencies
        for day in period.dates()
    ]


def revenue_totals(period: Period) -> list[RevenueTotal]:
    gross = {
        row["currency"]: (row["total"], row["n"])
        for row in _paid_in(period).values("currency").annotate(total=Sum("amount"), n=Count("id"))
    }
    refunded = dict(
        _refunds_applied_in(period)
        .filter(reverses_order=True)
        .values("currency")
        .annotate(total=Sum("amount"))
        .values_list("currency", "total")
    )
    return [
        RevenueTotal(
            cur, gross.get(cur, (0, 0))[0], refunded.get(cur, 0), gross.get(cur, (0, 0))[1]
        )
        for cur in sorted(set(gross) | set(refunded))
    ]


def refund_totals(period: Period) -> list[RefundTotal]:
    rows = (
        _refunds_applied_in(period)
        .exclude(source=Refund.Source.DISPUTE)
        .values("currency")
        .annotate(n=Count("id"), total=Sum("amount"))
        .order_by("currency")
    )
    return [RefundTotal(row["currency"], row["n"], row["total"]) for row in rows]


# --- payments, credits, subscriptions, webhooks -------------------------------------


def payment_outcomes(period: Period) -> PaymentOutcomes:
    figures = (
        Order.objects.filter(created_at__gte=period.since, created_at__lt=period.until)
        .exclude(order_type=Order.OrderType.SUBSCRIPTION)
        .aggregate(
            orders=Count("id"),
            succeeded=Count("id", filter=Q(status__in=PAID_STATUSES)),
            failed=Count("id", filter=Q(status=Order.Status.FAILED)),
            canceled=Count("id", filter=Q(status=Order.Status.CANCELED)),
            open=Count("id", filter=Q(status__in=OPEN_STATUSES)),
        )
    )
    return PaymentOutcomes(**figures)


def credit_figures(period: Period) -> CreditFigures:
    in_period = Q(created_at__gte=period.since, created_at__lt=period.until)
    kind = CreditTransaction.Kind
    spend = Q(kind__in=[kind.SPEND, kind.RETURN])
    expiry = Q(kind=kind.EXPIRY)
    sums = CreditTransaction.objects.aggregate(
        issued=Sum("amount", filter=in_period & Q(amount__gt=0) & ~spend),
        spent=Sum("amount", filter=in_period & spend),
        reversed=Sum("amount", filter=in_period & Q(amount__lt=0) & ~spend & ~expiry),
        expired=Sum("amount", filter=in_period & expiry),
        outstanding=Sum("amount", filter=Q(created_at__lt=period.until)),
    )
    return CreditFigures(
        issued=sums["issued"] or 0,
        spent=-(sums["spent"] or 0),
        reversed=-(sums["reversed"] or 0),
        outstanding=sums["outstanding"] or 0,
        expired=-(sums["expired"] or 0),
        outstanding_by_category=credits_outstanding_by_category(),
        deferred_revenue=[
            Money(currency, amount) for currency, amount in credits_deferred_revenue().items()
        ],
    )


def subscription_figures() -> SubscriptionFigures:
    active = Subscription.objects.filter(status=Subscription.Status.ACTIVE)
    per_price = dict(
        active.values("stripe_price_id").annotate(n=Count("id")).values_list("stripe_price_id", "n")
    )
    plans = {p.stripe_price_id: p for p in Plan.objects.filter(stripe_price_id__in=per_price)}
    mrr: dict[str, Decimal] = {}
    unpriced = 0
    for price_id, count in per_price.items():  # one row per price, not per subscription
        plan = plans.get(price_id)
        cycles = CYCLES_PER_MONTH.get(plan.interval) if plan else None
        if plan is None or cycles is None:
            unpriced += count
            continue
        monthly = Decimal(plan.amount * cycles[0] * count) / (cycles[1] * plan.interval_count)
        mrr[plan.currency] = mrr.get(plan.currency, Decimal(0)) + monthly
    return SubscriptionFigures(
        active=sum(per_price.values()),
        mrr=[
            Money(cur, int(total.quantize(Decimal(1), rounding=ROUND_HALF_UP)))
            for cur, total in sorted(mrr.items())
        ],
        unpriced=unpriced,
    )


def _percentile_seconds(lags: QuerySet, count: int, percent: int) -> float | None:
    """Nearest rank: the smallest lag with at least `percent`% of lags at or below it."""
    if not count:
        return None
    rank = max(1, math.ceil(percent * count / 100))
    lag = lags.order_by("lag", "id").values_list("lag", flat=True)[rank - 1]
    return round(lag.total_seconds(), 3)


def webhook_figures(period: Period) -> WebhookFigures:
    received = StripeEvent.objects.filter(
        received_at__gte=period.since, received_at__lt=period.until
    )
    lags = received.filter(processed_at__isnull=False).annotate(
        lag=ExpressionWrapper(F("processed_at") - F("received_at"), output_field=DurationField())
    )
    processed = lags.count()
    return WebhookFigures(
        processed=processed,
        lag_p50_seconds=_percentile_seconds(lags, processed, 50),
        lag_p95_seconds=_percentile_seconds(lags, processed, 95),
        failed_in_period=received.filter(status=StripeEvent.Status.FAILED).count(),
        failed_total=StripeEvent.objects.filter(status=StripeEvent.Status.FAILED).count(),
    )


def dispute_totals(period: Period) -> list[DisputeTotal]:
    outcome = Dispute.Outcome
    opened = Q(opened_at__gte=period.since, opened_at__lt=period.until)
    closed = Q(closed_at__gte=period.since, closed_at__lt=period.until)
    rows = (
        Dispute.objects.exclude(outcome=outcome.NOT_OURS)
        .filter(Q(outcome=outcome.OPEN) | opened | closed)
        .values("currency")
        .annotate(
            open=Count("id", filter=Q(outcome=outcome.OPEN)),
            open_amount=Sum("amount", filter=Q(outcome=outcome.OPEN)),
            opened=Count("id", filter=opened),
            won=Count("id", filter=closed & Q(outcome=outcome.WON)),
            lost=Count("id", filter=closed & Q(outcome=outcome.LOST)),
            lost_amount=Sum("amount", filter=closed & Q(outcome=outcome.LOST)),
        )
        .order_by("currency")
    )
    return [
        DisputeTotal(
            currency=row["currency"],
            open=row["open"],
            open_amount=row["open_amount"] or 0,
            opened=row["opened"],
            won=row["won"],
            lost=row["lost"],
            lost_amount=row["lost_amount"] or 0,
        )
        for row in rows
    ]


def dashboard_get(*, period: Period) -> Dashboard:
    revenue = revenue_totals(period)
    refunds = refund_totals(period)
    return Dashboard(
        period=period,
        revenue_days=revenue_by_day(period),
        revenue=revenue,
        payments=payment_outcomes(period),
        refunds=refunds,
        credits=credit_figures(period),
        subscriptions=subscription_figures(),
        webhooks=webhook_figures(period),
        currencies=sorted({r.currency for r in revenue} | {r.currency for r in refunds}),
        disputes=dispute_totals(period),
    )
