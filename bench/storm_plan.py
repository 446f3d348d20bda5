"""What the storm sends, and what the database must say once it has all been applied.

A plan is made of purchases across the purchase types — credit orders (paid,
failed, failed then paid; some refunded fully or partially) and subscription
cycles (paid invoices, some refunded) — and the Stripe events each would
produce, shaped from Stripe's fixtures (`tests.stripe_events`):
`payment_intent.succeeded` / `.payment_failed`, `refund.created` /
`refund.updated`, `charge.refunded` (with the charge's refunds embedded),
`customer.subscription.created`, `invoice.paid` and `invoice.payment_succeeded`
(two Event objects for one occurrence, as Stripe sends), plus a second Event
object for some payment occurrences.

It also sends what other systems and Stripe at its worst send, none of which our
own flows make:
- payments and refunds of another system on the same Stripe account, naming one
  of our order ids in their metadata but without our deployment marker, in
  another currency: they must never attach to an order;
- payments of ours that no order can take: a Checkout-made PaymentIntent first
  seen for an order already canceled, and a second payment of an order already
  paid: each must be refunded automatically, exactly once;
- subscription invoices that are not a whole cycle (a proration, a short
  payment): they must grant nothing;
- disputes opened on paid orders and closed won (nothing changes) or lost (the
  order is reversed as a full refund would reverse it).

The reference model is plain arithmetic over the plan: each order's final
status and each user's balance, independent of the order events arrive in.

The rule: the plan never reads what the platform did; it only says what must be.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from bench import seed
from billing.models import StripeCustomer, Subscription
from credits.models import Plan
from purchasables.builtin.credit_pack import refund_debit
from tests.stripe_events import event, fixture, new_id, payment_intent


@dataclass
class Purchase:
    kind: str  # "credit" | "subscription" | "workshop"
    user_id: int
    amount: int
    credits: int
    outcome: str  # "paid" | "failed" | "failed_then_paid" | "canceled"
    refunds: list[int] = field(default_factory=list)
    order_id: int | None = None  # credit orders: known up front
    invoice_id: str = ""  # subscription cycles: the order is made by the platform
    payment_intent_id: str = ""
    charge_id: str = ""
    refund_ids: list[str] = field(default_factory=list)
    # A dispute opened on the paid order and closed "won" or "lost" ("" for none).
    dispute: str = ""

    @property
    def refunded(self) -> int:
        """What goes back to the buyer: the refunds, and a lost dispute takes the rest."""
        return self.amount if self.dispute == "lost" else sum(self.refunds)

    @property
    def expected_status(self) -> str:
        if self.outcome in ("failed", "canceled"):
            return self.outcome
        refunded = self.refunded
        if refunded == 0:
            return "paid"
        return "refunded" if refunded >= self.amount else "partially_refunded"

    @property
    def expected_booking(self) -> str | None:
        """The status the order's booking must end in (None: no booking)."""
        if self.kind != "workshop" or self.outcome in ("failed", "canceled"):
            return None
        refunded = self.refunded
        if refunded == 0:
            return "confirmed"
        return "canceled" if refunded >= self.amount else "partially_refunded"

    @property
    def expected_credits(self) -> int:
        if self.outcome in ("failed", "canceled") or not self.credits:
            return 0
        return self.credits - refund_debit(
            credits=self.credits,
            order_amount=self.amount,
            refunded_before=0,
            refunded_now=self.refunded,
        )


@dataclass
class StormPlan:
    purchases: list[Purchase]
    events: list[dict[str, Any]]  # every distinct Event object, once
    plan_id: int
    users: list[int]
    # Another system's PaymentIntents and refunds: never attached to anything of ours.
    foreign_payment_ids: list[str] = field(default_factory=list)
    foreign_refund_ids: list[str] = field(default_factory=list)
    # Orders that Stripe reports one payment too many for (canceled, or paid twice):
    # each gets exactly one automatic refund, whichever payment arrived first.
    unwanted_order_ids: list[int] = field(default_factory=list)
    # Paid invoices that are not a whole cycle: no order, no credits.
    odd_invoice_ids: list[str] = field(default_factory=list)

    def expected_balances(self) -> dict[int, int]:
        out: dict[int, int] = dict.fromkeys(self.users, 0)
        for p in self.purchases:
            out[p.user_id] = out.get(p.user_id, 0) + p.expected_credits
        return out


def _refund_obj(p: Purchase, amount: int, status: str = "succeeded") -> dict[str, Any]:
    obj = fixture("refund")
    obj.update(
        id=new_id("re"),
        amount=amount,
        currency="usd",
        status=status,
        payment_intent=p.payment_intent_id,
        charge=p.charge_id,
        metadata={},
    )
    return obj


def _charge_obj(p: Purchase, refunds: list[dict[str, Any]]) -> dict[str, Any]:
    obj = fixture("charge")
    refunded = sum(r["amount"] for r in refunds)
    obj.update(
        id=p.charge_id,
        amount=p.amount,
        amount_captured=p.amount,
        amount_refunded=refunded,
        refunded=refunded >= p.amount,
        currency="usd",
        payment_intent=p.payment_intent_id,
        captured=True,
        paid=True,
        status="succeeded",
        metadata={},
        refunds={
            "object": "list",
            "data": copy.deepcopy(refunds),
            "has_more": False,
            "url": f"/v1/charges/{p.charge_id}/refunds",
        },
    )
    return obj


def _at(evt: dict[str, Any], created: int) -> dict[str, Any]:
    evt["created"] = created
    return evt


def _refund_events(p: Purchase, t: int) -> list[dict[str, Any]]:
    out, so_far = [], []
    for k, amount in enumerate(p.refunds):
        refund = _refund_obj(p, amount)
        p.refund_ids.append(refund["id"])
        so_far.append(refund)
        pending = {**refund, "status": "pending"}
        out += [
            _at(event("refund.created", pending), t + 20 + 3 * k),
            _at(event("refund.updated", refund), t + 21 + 3 * k),
            _at(event("charge.refunded", _charge_obj(p, so_far)), t + 22 + 3 * k),
        ]
    return out


def _dispute_events(p: Purchase, t: int) -> list[dict[str, Any]]:
    """A dispute of the order's charge, opened, then closed as `p.dispute` says."""
    obj = fixture("dispute")
    obj.update(
        id=new_id("dp"),
        amount=p.amount,
        currency="usd",
        charge=p.charge_id,
        payment_intent=p.payment_intent_id,
        reason="fraudulent",
        status="needs_response",
        metadata={},
        is_charge_refundable=False,
    )
    out = [_at(event("charge.dispute.created", copy.deepcopy(obj)), t + 30)]
    if p.dispute == "lost":
        out.append(_at(event("charge.dispute.funds_withdrawn", copy.deepcopy(obj)), t + 31))
    obj["status"] = p.dispute
    out.append(_at(event("charge.dispute.closed", obj), t + 40))
    return out


def _foreign_events(p: Purchase, t: int) -> tuple[list[dict[str, Any]], str, str]:
    """Another system on the same Stripe account: a payment and its refund whose metadata
    name our order's id (a common key) without our marker, in another currency. They are
    made at the storm's Stripe, so that reading them there shows whose they are."""
    client = _stripe_client()
    theirs = {"order_id": str(p.order_id), "user_id": str(p.user_id)}
    made = client.v1.payment_intents.create(
        params={
            "amount": 121_000,
            "currency": "eur",
            "metadata": theirs,
            "payment_method": "pm_card_visa",
            "confirm": True,
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
        }
    ).to_dict()
    given_back = client.v1.refunds.create(params={"payment_intent": made["id"]}).to_dict()
    pi = payment_intent(
        id=made["id"], amount=121_000, currency="eur", metadata=theirs, customer=None
    )
    pi["latest_charge"] = made.get("latest_charge")
    refund = fixture("refund")
    refund.update(
        id=given_back["id"],
        amount=121_000,
        currency="eur",
        status="succeeded",
        payment_intent=made["id"],
        charge=made.get("latest_charge"),
        metadata=theirs,
    )
    evts = [
        _at(event("payment_intent.succeeded", pi), t + 12),
        _at(event("refund.created", refund), t + 50),
    ]
    return evts, made["id"], refund["id"]


def _stripe_client():
    """The storm's Stripe (its development Stripe, behind the timing proxy)."""
    import stripe
    from django.conf import settings

    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
    )


def _unwanted_payment(o, t: int) -> tuple[dict[str, Any], str]:
    """A payment of ours the order cannot take: a PaymentIntent first seen by its
    webhook (made by a Checkout page left open), for an order canceled or already paid."""
    pi_id = new_id("pi")
    pi = payment_intent(
        id=pi_id, amount=o.amount, currency=o.currency, metadata=dict(o.metadata), customer=None
    )
    return _at(event("payment_intent.succeeded", pi), t), pi_id


def _odd_invoice(sub_id: str, customer_id: str, amount: int, reason: str, t: int):
    """A paid invoice of the subscription that is not a whole cycle: its two events."""
    inv = fixture("invoice")
    inv.update(
        id=new_id("in"),
        customer=customer_id,
        amount_paid=amount,
        amount_due=amount,
        currency="usd",
        status="paid",
        billing_reason=reason,
        subscription=sub_id,
        payment_intent=new_id("pi"),
        charge=new_id("ch"),
        parent={
            "type": "subscription_details",
            "subscription_details": {"subscription": sub_id, "metadata": {}},
        },
    )
    evts = [
        _at(event("invoice.paid", inv), t),
        _at(event("invoice.payment_succeeded", copy.deepcopy(inv)), t),
    ]
    return evts, inv["id"]


def _refunds_for(amount: int, rng: random.Random) -> list[int]:
    """No refund (68%), a full one, one partial one, or two partial ones adding up to all."""
    roll = rng.random()
    if roll < 0.15:
        return [amount]  # a full refund
    if roll < 0.25:
        return [max(1, amount // 3)]  # one partial refund
    if roll < 0.32:
        first = max(1, amount // 2)
        return [first, amount - first]  # two partial refunds that add up to all of it
    return []


def _bookings_installed() -> bool:
    from purchasables.registry import registry

    return any(t.name == "workshop" for t in registry.purchase_types())


def _workshops(n: int, rng: random.Random):
    """Workshop sessions a week ahead whose capacities add up to exactly `n` seats."""
    if n <= 0:
        return []
    from datetime import timedelta

    from django.utils import timezone

    from bookings.models import Service, ServiceSession

    service = Service.objects.create(
        name="Storm workshop", kind=Service.Kind.WORKSHOP, price=2500, currency="usd"
    )
    start = timezone.now() + timedelta(days=7)
    out, left, i = [], n, 0
    while left > 0:
        capacity = min(left, 50)
        session = ServiceSession.objects.create(
            service=service,
            start=start + timedelta(hours=2 * i),
            end=start + timedelta(hours=2 * i + 1),
            capacity=capacity,
        )
        out.append((session.pk, service.pk, capacity))
        left -= capacity
        i += 1
    return out


def _order_purchase(
    kind: str,
    o,
    credits: int,
    t0: int,
    rng: random.Random,
    second_event_share: float,
    dispute_share: float = 0.0,
) -> tuple[Purchase, list[dict[str, Any]]]:
    """An order paid, failed, or failed then paid, maybe refunded; and its events."""
    roll = rng.random()
    outcome = "failed" if roll < 0.12 else "failed_then_paid" if roll < 0.24 else "paid"
    p = Purchase(
        kind,
        o.user_id,
        o.amount,
        credits,
        outcome,
        order_id=o.order_id,
        payment_intent_id=o.payment_intent_id,
        charge_id=new_id("ch"),
    )
    t = t0 + rng.randint(0, 1800)
    events = []
    if outcome in ("failed", "failed_then_paid"):
        events.append(seed.payment_event(o, status="requires_payment_method", created=t + 5))
    if outcome != "failed":
        p.refunds = _refunds_for(o.amount, rng)
        paid = seed.payment_event(o, created=t + 10)
        paid["data"]["object"]["latest_charge"] = p.charge_id
        events.append(paid)
        if rng.random() < second_event_share:
            # Stripe sometimes makes a second Event object for one occurrence.
            twin = copy.deepcopy(paid)
            twin["id"] = new_id("evt")
            events.append(twin)
        events += _refund_events(p, t)
        if not p.refunds and kind == "credit" and rng.random() < dispute_share:
            p.dispute = rng.choice(["won", "lost"])
            events += _dispute_events(p, t)
    return p, events


def build(
    *,
    orders: int,
    rng: random.Random,
    subscription_share: float = 0.2,
    bookable_share: float = 0.1,
    second_event_share: float = 0.05,
    dispute_share: float = 0.06,
    foreign_share: float = 0.04,
    unwanted_share: float = 0.04,
) -> StormPlan:
    """Make the rows a storm starts from (orders, customers, subscriptions) and its events."""
    t0 = int(time.time()) - 3600
    n_sub_users = max(1, int(orders * subscription_share) // 4)
    cycles = 4
    n_bookable = int(orders * bookable_share) if _bookings_installed() else 0
    n_credit = orders - n_sub_users * cycles - n_bookable
    users = seed.users_create(max(20, n_credit // 6), prefix="storm")
    sub_users = seed.users_create(n_sub_users, prefix="storm-sub")
    purchases: list[Purchase] = []
    events: list[dict[str, Any]] = []

    foreign_payments: list[str] = []
    foreign_refunds: list[str] = []
    unwanted: list[int] = []
    odd_invoices: list[str] = []

    # Credit orders: rows as order_create leaves them; the events Stripe would send.
    # Some are canceled before Stripe reports a payment for them.
    n_canceled = max(1, int(n_credit * unwanted_share))
    seeded = seed.orders_create(users, n_credit, rng=rng)
    for o in seeded[:n_canceled]:
        p = Purchase("credit", o.user_id, o.amount, o.credits, "canceled", order_id=o.order_id)
        purchases.append(p)
        evt, _ = _unwanted_payment(o, t0 + rng.randint(0, 1800))
        events.append(evt)
        unwanted.append(o.order_id)
    _orders_cancel([o.order_id for o in seeded[:n_canceled]])
    for o in seeded[n_canceled:]:
        p, evts = _order_purchase(
            "credit", o, o.credits, t0, rng, second_event_share, dispute_share
        )
        purchases.append(p)
        events += evts
        t = t0 + rng.randint(0, 1800)
        if p.outcome != "failed" and rng.random() < unwanted_share:
            # A second payment of an order already paid (or about to be).
            evt, _ = _unwanted_payment(o, t + 15)
            events.append(evt)
            unwanted.append(o.order_id)
        if rng.random() < foreign_share:
            evts, pi_id, re_id = _foreign_events(p, t)
            events += evts
            foreign_payments.append(pi_id)
            foreign_refunds.append(re_id)

    # Workshop seats, if this tree has bookings: sessions filled exactly to capacity by
    # the orders' seat holds, so any seat booked twice overbooks a session.
    for session_id, service_id, orders_here in _workshops(n_bookable, rng):
        for o in seed.orders_create_bookable(
            users,
            orders_here,
            purchase_type="workshop",
            service_id=service_id,
            scheduling_data={"service_session_id": session_id},
            rng=rng,
        ):
            p, evts = _order_purchase("workshop", o, 0, t0, rng, second_event_share)
            purchases.append(p)
            events += evts

    # Subscriptions: customers and local records as subscription_start leaves them
    # (with the id of the subscription Stripe made: the storm's Stripe has none to
    # read), then Stripe's subscription event and, per paid cycle, two invoice events.
    plan = Plan.objects.create(
        name="Storm plan",
        stripe_price_id=new_id("plan"),
        amount=1900,
        currency="usd",
        credits_per_cycle=500,
    )
    with transaction.atomic():
        for user_id in sub_users:
            customer = StripeCustomer.objects.create(
                user_id=user_id, stripe_customer_id=new_id("cus")
            )
            sub_id = new_id("sub")
            local = Subscription.objects.create(
                user_id=user_id,
                purchase_type="subscription",
                plan_ref=str(plan.pk),
                plan_name="Storm plan subscription",
                stripe_price_id=plan.stripe_price_id,
                stripe_subscription_id=sub_id,
            )
            t = t0 + rng.randint(0, 600)
            sub = fixture("subscription")
            item = sub["items"]["data"][0]
            item.update(
                price={**item["price"], "id": plan.stripe_price_id},
                current_period_end=t + 30 * 86400,
            )
            sub.update(
                id=sub_id,
                customer=customer.stripe_customer_id,
                status="active",
                cancel_at_period_end=False,
                cancel_at=None,
                canceled_at=None,
                metadata={
                    "subscription_id": str(local.pk),
                    "plan_id": str(plan.pk),
                    "purchase_type": "subscription",
                    "user_id": str(user_id),
                    "order_type": "subscription",
                },
            )
            events.append(_at(event("customer.subscription.created", sub), t))
            for cycle in range(cycles):
                p = Purchase(
                    "subscription",
                    user_id,
                    plan.amount,
                    plan.credits_per_cycle,
                    "paid",
                    invoice_id=new_id("in"),
                    payment_intent_id=new_id("pi"),
                    charge_id=new_id("ch"),
                )
                inv = fixture("invoice")
                inv.update(
                    id=p.invoice_id,
                    customer=customer.stripe_customer_id,
                    amount_paid=plan.amount,
                    amount_due=plan.amount,
                    currency="usd",
                    status="paid",
                    billing_reason="subscription_cycle" if cycle else "subscription_create",
                    subscription=sub_id,
                    payment_intent=p.payment_intent_id,
                    charge=p.charge_id,
                    parent={
                        "type": "subscription_details",
                        "subscription_details": {"subscription": sub_id, "metadata": {}},
                    },
                )
                tc = t + cycle * 60
                events.append(_at(event("invoice.paid", inv), tc + 1))
                events.append(_at(event("invoice.payment_succeeded", copy.deepcopy(inv)), tc + 1))
                p.refunds = _refunds_for(plan.amount, rng) if rng.random() < 0.5 else []
                events += _refund_events(p, tc)
                purchases.append(p)
            if rng.random() < 0.5:
                # A proration and a short payment: paid, but not a whole cycle.
                for amount, reason in ((633, "subscription_update"), (1, "subscription_cycle")):
                    evts, invoice_id = _odd_invoice(
                        sub_id, customer.stripe_customer_id, amount, reason, t + 500
                    )
                    events += evts
                    odd_invoices.append(invoice_id)
    return StormPlan(
        purchases,
        events,
        plan.pk,
        users + sub_users,
        foreign_payment_ids=foreign_payments,
        foreign_refund_ids=foreign_refunds,
        unwanted_order_ids=unwanted,
        odd_invoice_ids=odd_invoices,
    )


def _orders_cancel(order_ids: list[int]) -> None:
    """Orders as a buyer's cancel leaves them: canceled, their PaymentIntent canceled."""
    from billing.models import Order, Payment

    Order.objects.filter(pk__in=order_ids).update(status=Order.Status.CANCELED)
    Payment.objects.filter(order_id__in=order_ids).update(status="canceled")


def deliveries(plan: StormPlan, *, repeat_share: float, rng: random.Random):
    """Every event at least once, `repeat_share` of them again (some at the same moment,
    some later), the whole shuffled. Answers (deliveries, how many repeats)."""
    from bench.scenarios import _webhook

    reqs = [_webhook(e) for e in plan.events]
    repeated = rng.sample(range(len(reqs)), int(len(reqs) * repeat_share))
    together = set(repeated[: len(repeated) // 3])
    out: list[list] = []
    extra = 0
    for i, r in enumerate(reqs):
        if i in together:
            out.append([r, r])  # the same delivery twice at the same moment
            extra += 1
        else:
            out.append([r])
    for i in repeated:
        if i not in together:
            out.append([reqs[i]])
            extra += 1
            if rng.random() < 0.2:
                out.append([reqs[i]])  # and a third time
                extra += 1
    rng.shuffle(out)
    return out, extra
