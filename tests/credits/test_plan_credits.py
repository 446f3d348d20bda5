"""What a plan says becomes of a cycle's unused credits: they expire with the cycle,
or roll over, up to a cap."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from credits.errors import CreditReferenceConflictError
from credits.models import CreditLot, CreditTransaction, Plan
from credits.services import (
    credits_expire_due,
    credits_grant,
    credits_rollover_cap,
    credits_spend,
)
from kernel.errors import InvalidInputError
from purchasables.builtin import subscription
from purchasables.types import InvoiceInfo, OrderInfo
from tests.credits.ledger_checks import balance_of

pytestmark = pytest.mark.django_db

DAY = 86_400
START = 1_800_000_000


def plan_make(**terms) -> Plan:
    return Plan.objects.create(
        name="Pro",
        stripe_price_id=f"price_{len(terms)}_{terms.get('unused_credits', 'r')}",
        amount=1900,
        credits_per_cycle=100,
        **terms,
    )


def cycle(plan: Plan, user, n: int) -> dict:
    """Fulfil cycle `n` (0-based, 30 days each) of `plan` as billing would."""
    order = OrderInfo(
        order_id=1000 + n,
        user_id=user.pk,
        purchase_type="subscription",
        order_type="subscription",
        amount=1900,
        currency="usd",
        metadata={},
        data={"plan_id": plan.pk, "credits": plan.credits_per_cycle},
        invoice=InvoiceInfo(
            stripe_invoice_id=f"in_{n}",
            billing_reason="subscription_cycle",
            amount_paid=1900,
            currency="usd",
            period_start=START + 30 * DAY * n,
            period_end=START + 30 * DAY * (n + 1),
        ),
    )
    return subscription.tollgate_fulfil(order=order)


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def test_a_cycle_is_a_paid_lot_of_its_plan_with_its_price(user):
    plan = plan_make()
    cycle(plan, user, 0)
    lot = CreditLot.objects.get(account__user=user)
    assert (lot.category, lot.source, lot.plan_id, lot.source_order_id) == (
        "paid",
        "subscription",
        plan.pk,
        1000,
    )
    assert (lot.cost_basis, lot.currency, lot.expires_at) == (1900, "usd", None)


def test_credits_of_an_expiring_plan_expire_at_the_end_of_their_cycle(user):
    plan = plan_make(unused_credits="expire")
    cycle(plan, user, 0)
    credits_spend(user_id=user.pk, amount=30, reference="x")
    lot = CreditLot.objects.get(account__user=user)
    assert lot.expires_at == at(START + 30 * DAY)

    assert credits_expire_due(now=at(START + 30 * DAY - 1)) == 0
    cycle(plan, user, 1)
    assert credits_expire_due(now=at(START + 30 * DAY)) == 1
    assert balance_of(user) == 100  # the second cycle's, whole
    expired = CreditTransaction.objects.get(account__user=user, kind="expiry")
    assert expired.amount == -70


def test_credits_of_a_rollover_plan_carry_over_up_to_the_cap(user):
    plan = plan_make(rollover_cap=50)
    cycle(plan, user, 0)
    credits_spend(user_id=user.pk, amount=20, reference="x")  # 80 left of the first cycle

    result = cycle(plan, user, 1)
    assert result["credits_expired_over_cap"] == 30
    assert balance_of(user) == 150  # 50 carried over, 100 new
    cycle(plan, user, 1)  # the same cycle again: nothing more expires
    assert CreditTransaction.objects.filter(kind="expiry").count() == 1

    result = cycle(plan, user, 2)  # 150 left from earlier cycles: 100 over the cap
    assert result["credits_expired_over_cap"] == 100
    assert balance_of(user) == 150
    assert credits_expire_due(now=at(START + 365 * DAY)) == 0  # nothing else expires


@pytest.mark.parametrize(
    ("spent", "cap", "expired"), [(20, 79, 1), (20, 80, 0), (20, 81, 0), (99, 0, 1)]
)
def test_only_what_is_over_the_cap_expires(user, spent, cap, expired):
    plan = plan_make(rollover_cap=cap)
    cycle(plan, user, 0)
    credits_spend(user_id=user.pk, amount=spent, reference="x")  # from the first cycle

    result = cycle(plan, user, 1)
    assert result.get("credits_expired_over_cap", 0) == expired
    assert balance_of(user) == 200 - spent - expired
    assert CreditTransaction.objects.filter(kind="expiry").count() == (1 if expired else 0)


@pytest.mark.parametrize(("amount", "kind"), [(5, "grant"), (-5, "adjustment")])
def test_a_rollover_reference_held_by_another_entry_conflicts(user, amount, kind):
    plan = plan_make()
    cycle(plan, user, 0)
    credits_grant(user_id=user.pk, amount=amount, reference="rollover-1", kind=kind)
    with pytest.raises(CreditReferenceConflictError):
        credits_rollover_cap(user_id=user.pk, plan_id=plan.pk, cap=10, reference="rollover-1")
    assert balance_of(user) == 100 + amount
    assert not CreditTransaction.objects.filter(kind="expiry").exists()


def test_a_rollover_plan_without_a_cap_keeps_everything(user):
    plan = plan_make()
    for n in range(3):
        assert "credits_expired_over_cap" not in cycle(plan, user, n)
    assert balance_of(user) == 300


def test_the_cap_leaves_other_credits_alone(user):
    from credits.services import credits_grant

    credits_grant(user_id=user.pk, amount=500, reference="order-1", kind="purchase")
    plan = plan_make(rollover_cap=0)
    cycle(plan, user, 0)
    credits_spend(user_id=user.pk, amount=10, reference="x")  # from the oldest: the purchase
    cycle(plan, user, 1)
    assert balance_of(user) == 590  # the first cycle's 100 expired, nothing of the purchase


@pytest.mark.parametrize("cap", [-1, 1.5, True, "50", None])
def test_a_rollover_cap_is_a_whole_number_of_credits(user, cap):
    plan = plan_make()
    cycle(plan, user, 0)
    with pytest.raises(InvalidInputError):
        credits_rollover_cap(user_id=user.pk, plan_id=plan.pk, cap=cap, reference="cap-1")
    assert balance_of(user) == 100
    assert not CreditTransaction.objects.filter(kind="expiry").exists()


def test_the_catalog_shows_the_plan_terms(anon_api):
    plan_make(unused_credits="expire")
    found = _plans(anon_api.get("/catalog/").json())
    assert {(p["unused_credits"], p["rollover_cap"]) for p in found} == {("expire", None)}


def _plans(catalog) -> list[dict]:
    """The plans wherever the catalog lists them."""
    found = []

    def walk(node) -> None:
        if isinstance(node, dict):
            if "credits_per_cycle" in node:
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(catalog)
    return found
