"""A purchase's Stripe events in any order, any number of times: fulfilled once, each
refund applied once, nothing attached that is not ours.

One history of a credit purchase (declines, 3-D Secure, processing, then
success, cancellation or nothing; after a success, refunds that succeed at once,
succeed after pending, or fail, with or without `charge.refunded` snapshots) is
delivered shuffled and with duplicates: the same Event again, and a second Event
object for the same occurrence, as Stripe sends. Each delivery is stored by
`event_store`, what the webhook does once the signature checks out (the
signature path has its own tests); the worker runs at drawn moments between
deliveries and, at the end, until nothing is left to retry. The result must be
the reference model's, whatever the order:

- the order's status: `paid`, then refunded in proportion, if the history has
  a success; else the status of the newest payment event;
- the buyer's ledger: the credits once, less each applied refund's share;
- each Stripe refund: one row, its newest status, applied once if it succeeded;
- another system's payment naming the order's id (no marker of ours, another
  currency) attaches to nothing and its event ends `not_ours`;
- a dispute of the paid order, opened then closed: won, nothing changes; lost,
  the order is refunded in full (a refund row of its own) and its credits taken.

Fixed scenarios reach every rule of the model; a second test draws histories
too. Each example runs inside its own savepoint, rolled back at its end.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.models import Fulfilment, Order, Payment, Refund, StripeEvent
from billing.services.events import event_store, events_drain
from credits.models import CreditTransaction
from credits.selectors import credits_balance_get, credits_ledger_sum
from tests.billing.factories import PaymentFactory
from tests.stripe_events import event, fixture, new_id, payment_intent

pytestmark = pytest.mark.django_db

ORDER_AMOUNT = 1000
CREDITS = 100
CHARGE_ID = "ch_property"

# What each payment event says about the PaymentIntent, and the order status it means.
PI_EVENTS = {
    "payment_failed": ("requires_payment_method", Order.Status.FAILED),
    "requires_action": ("requires_action", Order.Status.REQUIRES_ACTION),
    "processing": ("processing", Order.Status.PROCESSING),
    "succeeded": ("succeeded", Order.Status.PAID),
    "canceled": ("canceled", Order.Status.CANCELED),
}
# How a refund's status moves at Stripe; each step is one event.
REFUND_LIFECYCLES = {
    "succeeded": ["succeeded"],
    "pending_then_succeeded": ["pending", "succeeded"],
    "pending_then_failed": ["pending", "failed"],
    "pending": ["pending"],
}
REFUND_EVENT_TYPE = {"pending": "refund.created", "succeeded": "refund.updated"}


@dataclass(frozen=True)
class RefundPlan:
    amount: int
    lifecycle: str
    snapshot: bool  # Stripe also sends charge.refunded once this refund succeeds


@dataclass(frozen=True)
class History:
    steps: list[str]
    ending: str | None
    refunds: list[RefundPlan]
    # Another system's payment naming this order's id, delivered among the rest.
    foreign: bool = False
    # A dispute of the paid order (only without refunds): closed "won" or "lost".
    dispute: str | None = None


@st.composite
def histories(draw) -> History:
    steps = draw(
        st.lists(st.sampled_from(["payment_failed", "requires_action", "processing"]), max_size=3)
    )
    ending = draw(st.sampled_from(["succeeded", "succeeded", "canceled", None]))
    refunds: list[RefundPlan] = []
    if ending == "succeeded":
        left = ORDER_AMOUNT
        for _ in range(draw(st.integers(min_value=0, max_value=3))):
            if left == 0:
                break
            amount = draw(st.sampled_from(sorted({left, max(1, left // 2), 1, min(left, 300)})))
            lifecycle = draw(st.sampled_from(sorted(REFUND_LIFECYCLES)))
            refunds.append(RefundPlan(amount, lifecycle, draw(st.booleans())))
            left -= amount
    dispute = None
    if ending == "succeeded" and not refunds:
        dispute = draw(st.sampled_from([None, "won", "lost"]))
    return History(
        steps=steps, ending=ending, refunds=refunds, foreign=draw(st.booleans()), dispute=dispute
    )


@dataclass
class Timeline:
    """The history's events in the order Stripe produced them, each a distinct moment."""

    events: list[dict[str, Any]] = field(default_factory=list)
    clock: itertools.count = field(
        default_factory=lambda: itertools.count(int(time.time()) - 10_000)
    )

    def add(self, evt: dict[str, Any]) -> None:
        evt["created"] = next(self.clock)
        self.events.append(evt)


def build_timeline(history: History, payment) -> tuple[Timeline, list[tuple[str, int, str]]]:
    """The events of `history` for `payment`, and each refund's (id, amount, final status)."""
    timeline = Timeline()
    order = payment.order
    for step in [*history.steps, *([history.ending] if history.ending else [])]:
        status, _ = PI_EVENTS[step]
        obj = payment_intent(
            id=payment.stripe_payment_intent_id,
            amount=ORDER_AMOUNT,
            status=status,
            metadata=order.metadata,
        )
        if status == "succeeded":
            obj["latest_charge"] = CHARGE_ID
        timeline.add(event(f"payment_intent.{step}", obj))

    known: list[dict[str, Any]] = []
    finals = []
    for plan in history.refunds:
        refund = fixture("refund")
        refund.update(
            id=new_id("re"),
            amount=plan.amount,
            currency="usd",
            charge=CHARGE_ID,
            payment_intent=payment.stripe_payment_intent_id,
            metadata={},
            failure_reason=None,
        )
        known.append(refund)
        for status in REFUND_LIFECYCLES[plan.lifecycle]:
            refund["status"] = status
            if status == "failed":
                refund["failure_reason"] = "expired_or_canceled_card"
            kind = REFUND_EVENT_TYPE.get(status, "refund.failed")
            timeline.add(event(kind, dict(refund)))
            if status == "succeeded" and plan.snapshot:
                charge = fixture("charge")
                charge.update(
                    id=CHARGE_ID,
                    payment_intent=payment.stripe_payment_intent_id,
                    amount=ORDER_AMOUNT,
                    refunds={"object": "list", "data": [dict(r) for r in known], "has_more": False},
                )
                timeline.add(event("charge.refunded", charge))
        finals.append((refund["id"], plan.amount, refund["status"]))
    if history.dispute:
        dispute = fixture("dispute")
        dispute.update(
            id=new_id("dp"),
            amount=ORDER_AMOUNT,
            currency="usd",
            charge=CHARGE_ID,
            payment_intent=payment.stripe_payment_intent_id,
            status="needs_response",
            reason="fraudulent",
            metadata={},
        )
        timeline.add(event("charge.dispute.created", dict(dispute)))
        timeline.add(event("charge.dispute.closed", {**dispute, "status": history.dispute}))
    if history.foreign:
        theirs = payment_intent(
            id=new_id("pi"),
            amount=121_000,
            currency="eur",
            metadata={"order_id": str(order.pk)},
            customer=None,
        )
        timeline.add(event("payment_intent.succeeded", theirs))
    return timeline, finals


def expected_state(history: History, finals) -> dict[str, Any]:
    """The reference model: what any delivery order must end in."""
    if history.ending == "succeeded":
        applied = sum(amount for _, amount, status in finals if status == "succeeded")
        if applied >= ORDER_AMOUNT:
            status = Order.Status.REFUNDED
        elif applied:
            status = Order.Status.PARTIALLY_REFUNDED
        else:
            status = Order.Status.PAID
        if history.dispute == "lost":  # only without refunds: the bank takes it all back
            status, applied = Order.Status.REFUNDED, ORDER_AMOUNT
        credits = CREDITS - CREDITS * applied // ORDER_AMOUNT
        return {"status": status, "credits": credits, "fulfilled": 1}
    steps = [*history.steps, *([history.ending] if history.ending else [])]
    status = PI_EVENTS[steps[-1]][1] if steps else Order.Status.PENDING
    return {"status": status, "credits": 0, "fulfilled": 0}


def drain_until_settled() -> None:
    """Run the worker, making retries due at once, until no event is left to process."""
    for _ in range(10):
        StripeEvent.objects.filter(status=StripeEvent.Status.RETRYING).update(
            next_attempt_at=timezone.now()
        )
        if not events_drain():
            return
    raise AssertionError("events kept being retried")


# Histories chosen to reach every rule the model states; hypothesis varies their
# delivery. `test_any_history…` below draws the histories themselves too.
FIRST_TRIES = ["payment_failed", "requires_action", "processing"]
SCENARIOS = {
    "declined_then_paid": History(FIRST_TRIES, "succeeded", []),
    "unfinished": History(FIRST_TRIES, None, []),
    "processing_then_declined": History(
        ["requires_action", "processing", "payment_failed"], None, []
    ),
    "abandoned": History(["payment_failed", "requires_action"], "canceled", []),
    "partly_refunded": History(
        ["processing"],
        "succeeded",
        [
            RefundPlan(300, "pending_then_succeeded", snapshot=True),
            RefundPlan(200, "pending_then_failed", snapshot=True),
        ],
    ),
    "refunded_in_two_parts": History(
        [],
        "succeeded",
        [
            RefundPlan(300, "succeeded", snapshot=True),
            RefundPlan(700, "pending_then_succeeded", snapshot=False),
        ],
    ),
    "refund_still_pending": History(
        ["requires_action"], "succeeded", [RefundPlan(500, "pending", snapshot=True)]
    ),
    "another_systems_payment_naming_the_order": History(
        ["payment_failed"], "succeeded", [RefundPlan(300, "succeeded", True)], foreign=True
    ),
    "dispute_won": History(["processing"], "succeeded", [], dispute="won"),
    "dispute_lost": History([], "succeeded", [], foreign=True, dispute="lost"),
}
DELIVERY_SETTINGS = settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("history", SCENARIOS.values(), ids=SCENARIOS.keys())
@DELIVERY_SETTINGS
@given(data=st.data())
def test_any_delivery_of_a_purchase_s_events_ends_as_the_model_says(history, data):
    deliver_and_check(history, data)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories(), data=st.data())
def test_any_history_in_any_delivery_ends_as_the_model_says(history, data):
    deliver_and_check(history, data)


def deliver_and_check(history: History, data: st.DataObject) -> None:
    """Deliver `history`'s events shuffled and duplicated as `data` draws, process them
    at drawn moments and to the end, and compare with the model. Rolled back after."""
    with transaction.atomic():
        payment = PaymentFactory(amount=ORDER_AMOUNT, order__amount=ORDER_AMOUNT)
        user_id = payment.order.user_id
        timeline, finals = build_timeline(history, payment)

        deliveries = list(timeline.events)
        for original in timeline.events:
            copies = data.draw(st.sampled_from(["once", "again", "new_event_object"]))
            if copies == "again":  # the same Event delivered twice
                deliveries.append(original)
            elif copies == "new_event_object":  # a second Event for the same occurrence
                deliveries.append({**original, "id": new_id("evt")})
        deliveries = data.draw(st.permutations(deliveries))
        for delivery in deliveries:
            event_store(event=delivery)  # what the webhook stores once the signature is good
            if data.draw(st.booleans()):
                events_drain()
        drain_until_settled()

        expected = expected_state(history, finals)
        order = Order.objects.get(pk=payment.order_id)
        assert order.status == expected["status"]
        assert credits_balance_get(user_id=user_id) == credits_ledger_sum(user_id=user_id)
        assert credits_balance_get(user_id=user_id) == expected["credits"]
        assert Fulfilment.objects.filter(order=order).count() == expected["fulfilled"]
        statuses = StripeEvent.objects.values_list("type", "object_id", "status")
        foreign = set(
            Payment.objects.exclude(pk=payment.pk).values_list(
                "stripe_payment_intent_id", flat=True
            )
        )
        assert not foreign, "another system's payment attached to the order"
        for kind, object_id, status in statuses:
            theirs = kind == "payment_intent.succeeded" and object_id != (
                payment.stripe_payment_intent_id
            )
            assert status == ("not_ours" if theirs else "processed"), (kind, status)
        assert StripeEvent.objects.count() == len({d["id"] for d in deliveries})

        # Each Stripe refund: one row with its newest status, applied once if it succeeded.
        lost = Refund.objects.filter(order=order, source=Refund.Source.DISPUTE)
        assert lost.count() == (1 if history.dispute == "lost" else 0)
        if history.dispute == "lost":
            assert lost.get().applied_at is not None
        rows = {
            r.stripe_refund_id: r
            for r in Refund.objects.filter(order=order).exclude(source=Refund.Source.DISPUTE)
        }
        assert set(rows) == {refund_id for refund_id, _, _ in finals}
        for refund_id, amount, status in finals:
            row = rows[refund_id]
            assert (row.amount, row.status) == (amount, status)
            assert (row.applied_at is not None) == (status == "succeeded")
        applied = {
            f"refund-{r.pk}" for r in Refund.objects.filter(order=order) if r.applied_at is not None
        }
        debits = CreditTransaction.objects.filter(account__user_id=user_id, kind="refund")
        assert len(debits) <= len(applied)
        assert {e.reference for e in debits} <= applied
        transaction.set_rollback(True)
