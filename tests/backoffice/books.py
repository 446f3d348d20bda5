"""Books for the dashboard tests: orders, refunds, ledger entries, subscriptions and
events at known times, and the figures they must give, worked out in Python from
these specifications (never by asking the database what the dashboard asks)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

from billing.models import Order, Payment, Refund, StripeEvent, Subscription
from credits.models import CreditTransaction, Plan
from credits.services import credits_debit_refund, credits_grant, credits_spend
from tests.factories import UserFactory

START, END = date(2025, 1, 10), date(2025, 1, 12)


def at(day: int, hour: int = 12, second: int = 0) -> datetime:
    return datetime(2025, 1, day, hour, 0, second, tzinfo=UTC)


@dataclass
class OrderSpec:
    amount: int
    currency: str
    status: str
    created: datetime
    paid: datetime | None = None
    order_type: str = "credit"
    # (amount, applied at or None, reverses the order)
    refunds: tuple[tuple[int, datetime | None, bool], ...] = ()


ORDERS = [
    OrderSpec(1000, "usd", "paid", at(10, 9), at(10, 10)),
    OrderSpec(2500, "usd", "partially_refunded", at(11), at(11), refunds=((500, at(12), True),)),
    OrderSpec(700, "eur", "paid", at(11), at(11), refunds=((100, at(11), False),)),
    OrderSpec(5000, "jpy", "refunded", at(12, 1), at(12, 2), refunds=((5000, at(12, 3), True),)),
    OrderSpec(1230, "kwd", "paid", at(12), at(12)),
    OrderSpec(900, "usd", "failed", at(10)),
    OrderSpec(800, "usd", "failed", at(12)),
    OrderSpec(600, "usd", "canceled", at(11)),
    OrderSpec(400, "usd", "pending", at(12)),
    # Paid before the period; refunded inside it: the refund counts, the sale does not.
    OrderSpec(3000, "usd", "partially_refunded", at(9), at(9), refunds=((300, at(10), True),)),
    # Paid after the period.
    OrderSpec(4000, "usd", "paid", at(13), at(13)),
    # A subscription cycle: revenue, but not a payment outcome.
    OrderSpec(1900, "usd", "paid", at(11), at(11), order_type="subscription"),
    # A refund Stripe reports as succeeded but not applied yet: not counted.
    OrderSpec(2000, "eur", "paid", at(10), at(10), refunds=((2000, None, True),)),
]

# (kind, amount, when)
LEDGER = [
    ("purchase", 500, at(9)),
    ("grant", 100, at(10)),
    ("purchase", 1000, at(11)),
    ("spend", -30, at(11)),
    ("refund", -50, at(12)),
    ("adjustment", -20, at(12)),
    ("grant", 7, at(14)),
]

# (interval, count, amount, currency, subscriptions active, other statuses)
PLANS = [
    ("month", 1, 1900, "usd", 2, ["canceled"]),
    ("year", 1, 12000, "usd", 1, []),
    ("week", 1, 300, "eur", 1, ["past_due"]),
    ("month", 3, 1000, "eur", 1, []),
]

# (received, processed after this many seconds or None, status)
EVENTS = [
    (at(10), 1, "processed"),
    (at(10, 13), 2, "processed"),
    (at(11), 3, "ignored"),
    (at(12), 10, "processed"),
    (at(12, 13), 60, "processed"),
    (at(12, 14), None, "failed"),
    (at(9), 5, "processed"),  # before the period
    (at(9, 13), None, "failed"),  # before the period, still failed
]


def _make_orders(user) -> None:
    for n, spec in enumerate(ORDERS):
        order = Order.objects.create(
            user=user,
            purchase_type="subscription" if spec.order_type == "subscription" else "credits",
            order_type=spec.order_type,
            status=spec.status,
            amount=spec.amount,
            currency=spec.currency,
            description="test",
        )
        Order.objects.filter(pk=order.pk).update(created_at=spec.created, paid_at=spec.paid)
        if not spec.paid:
            continue
        payment = Payment.objects.create(
            order=order,
            stripe_payment_intent_id=f"pi_dash{n}",
            status="succeeded",
            amount=spec.amount,
            currency=spec.currency,
            amount_received=spec.amount,
        )
        for m, (amount, applied, reverses) in enumerate(spec.refunds):
            Refund.objects.create(
                order=order,
                payment=payment,
                stripe_refund_id=f"re_dash{n}_{m}",
                amount=amount,
                currency=spec.currency,
                status="succeeded",
                source="stripe",
                reverses_order=reverses,
                applied_at=applied,
            )


def _make_ledger(user) -> None:
    for n, (kind, amount, when) in enumerate(LEDGER):
        ref = f"dash-{n}"
        if kind == "spend":
            entry = credits_spend(user_id=user.pk, amount=-amount, reference=ref)
        elif kind == "refund":
            entry = credits_debit_refund(user_id=user.pk, amount=-amount, reference=ref)
        else:
            entry = credits_grant(user_id=user.pk, amount=amount, reference=ref, kind=kind)
        CreditTransaction.objects.filter(pk=entry.pk).update(created_at=when)


def _make_subscriptions(user) -> None:
    for n, (interval, count, amount, currency, active, others) in enumerate(PLANS):
        plan = Plan.objects.create(
            name=f"p{n}",
            stripe_price_id=f"price_dash{n}",
            amount=amount,
            currency=currency,
            interval=interval,
            interval_count=count,
            credits_per_cycle=1,
        )
        for i, status in enumerate(["active"] * active + others):
            Subscription.objects.create(
                # One live subscription per user and plan: a second one is another buyer.
                user=user if i == 0 else UserFactory(),
                purchase_type="subscription",
                plan_ref=str(plan.pk),
                stripe_price_id=plan.stripe_price_id,
                status=status,
            )
    Subscription.objects.create(  # started outside Tollgate, on a price we do not know
        user=user,
        purchase_type="subscription",
        plan_ref="",
        stripe_price_id="price_x",
        status="active",
    )


def _make_events() -> None:
    for n, (received, after, status) in enumerate(EVENTS):
        event = StripeEvent.objects.create(
            stripe_id=f"evt_dash{n}", type="payment_intent.succeeded", payload={}, status=status
        )
        processed = received + timedelta(seconds=after) if after is not None else None
        StripeEvent.objects.filter(pk=event.pk).update(received_at=received, processed_at=processed)


def _in_period(when: datetime | None) -> bool:
    return when is not None and START <= when.date() <= END


def expected() -> dict:
    gross, refunded, orders_paid = defaultdict(int), defaultdict(int), defaultdict(int)
    per_day = defaultdict(int)
    refunds = defaultdict(lambda: [0, 0])
    for spec in ORDERS:
        if _in_period(spec.paid):
            gross[spec.currency] += spec.amount
            orders_paid[spec.currency] += 1
            per_day[(spec.paid.date(), spec.currency)] += spec.amount
        for amount, applied, reverses in spec.refunds:
            if not _in_period(applied):
                continue
            refunds[spec.currency][0] += 1
            refunds[spec.currency][1] += amount
            if reverses:
                refunded[spec.currency] += amount
                per_day[(applied.date(), spec.currency)] -= amount
    outcomes = defaultdict(int)
    for spec in ORDERS:
        if spec.order_type != "subscription" and _in_period(spec.created):
            outcomes["orders"] += 1
            outcomes[spec.status] += 1
    paid = outcomes["paid"] + outcomes["partially_refunded"] + outcomes["refunded"]
    failed = outcomes["failed"]
    per_month = {"month": Fraction(1), "year": Fraction(1, 12), "week": Fraction(52, 12)}
    mrr = defaultdict(Fraction)
    for interval, count, amount, currency, active, _ in PLANS:
        mrr[currency] += amount * per_month[interval] / count * active
    lags = sorted(
        after for received, after, _ in EVENTS if after is not None and _in_period(received)
    )

    def rank(p: int) -> float:
        return float(lags[math.ceil(p * len(lags) / 100) - 1])

    return {
        "revenue": {
            cur: (gross[cur], refunded[cur], gross[cur] - refunded[cur], orders_paid[cur])
            for cur in set(gross) | set(refunded)
        },
        "per_day": per_day,
        "refunds": {cur: tuple(v) for cur, v in refunds.items()},
        "payments": {
            "orders": outcomes["orders"],
            "succeeded": paid,
            "failed": failed,
            "canceled": outcomes["canceled"],
            "open": outcomes["pending"],
            "success_rate": round(paid / (paid + failed), 4),
            "failure_rate": round(failed / (paid + failed), 4),
        },
        "credits": {
            "issued": sum(a for _, a, w in LEDGER if a > 0 and _in_period(w)),
            "spent": -sum(a for k, a, w in LEDGER if k == "spend" and _in_period(w)),
            "reversed": -sum(a for k, a, w in LEDGER if a < 0 and k != "spend" and _in_period(w)),
            "outstanding": sum(a for _, a, w in LEDGER if w.date() <= END),
            "expired": 0,
            # Every entry here is a paid lot (or draws from one), none with a price.
            "outstanding_by_category": {"paid": sum(a for _, a, _ in LEDGER), "promotional": 0},
            "deferred_revenue": [],
        },
        "subscriptions": {
            "active": sum(p[4] for p in PLANS) + 1,
            "unpriced": 1,
            "mrr": {c: math.floor(v + Fraction(1, 2)) for c, v in mrr.items()},
        },
        "webhooks": {
            "processed": len(lags),
            "lag_p50_seconds": rank(50),
            "lag_p95_seconds": rank(95),
            "failed_in_period": sum(1 for r, _, s in EVENTS if s == "failed" and _in_period(r)),
            "failed_total": sum(1 for _, _, s in EVENTS if s == "failed"),
        },
    }


def books_make() -> dict:
    """Write the books and answer the figures they must give."""
    user = UserFactory()
    _make_orders(user)
    _make_ledger(user)
    _make_subscriptions(user)
    _make_events()
    return expected()
