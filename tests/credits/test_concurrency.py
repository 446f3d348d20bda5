"""Invariant 3 under real concurrency: racing spends never overdraw and never double-count.

Each test runs on real threads with their own database connections against
committed data (`transaction=True`), released together by a barrier.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client

from credits.errors import InsufficientCreditsError
from credits.models import CreditTransaction
from credits.services import credits_spend
from platform_core.auth import api_token_create
from tests.conftest import PASSWORD
from tests.credits.ledger_checks import balance_of, run_together

pytestmark = pytest.mark.django_db(transaction=True)

START = 100
PRICE = 7
RACERS = 20
WINNERS = START // PRICE  # 14


def bearer_post(token: str, path: str, body: dict):
    """A POST from a thread's own test client."""
    return Client().post(
        "/api/v1" + path,
        json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )


def assert_spent_exactly_winners(user) -> None:
    spends = CreditTransaction.objects.filter(account__user=user, kind="spend")
    assert spends.count() == WINNERS
    # Serialised by the row lock: each winner saw the previous winner's balance.
    expected = [START - PRICE * n for n in range(1, WINNERS + 1)]
    assert sorted(spends.values_list("balance_after", flat=True), reverse=True) == expected
    assert balance_of(user) == START - WINNERS * PRICE
    assert balance_of(user) >= 0


def test_racing_spends_never_overdraw(user, fund):
    fund(user, START)

    results = run_together(
        RACERS,
        lambda i: credits_spend(user_id=user.pk, amount=PRICE, reference=f"race-{i}"),
    )

    won = [r for r in results if isinstance(r, CreditTransaction)]
    lost = [r for r in results if isinstance(r, InsufficientCreditsError)]
    assert len(won) == WINNERS, results
    assert len(lost) == RACERS - WINNERS, results
    assert_spent_exactly_winners(user)


def test_racing_spends_over_http_never_overdraw(user, fund):
    fund(user, START)
    token, _ = api_token_create(username=user.username, password=PASSWORD)

    results = run_together(
        RACERS,
        lambda i: bearer_post(token, "/credits/spend/", {"amount": PRICE, "reference": f"h-{i}"}),
    )

    statuses = sorted(r.status_code for r in results)
    assert statuses == [201] * WINNERS + [409] * (RACERS - WINNERS), results
    assert {r.json()["code"] for r in results if r.status_code == 409} == {"insufficient_credits"}
    assert_spent_exactly_winners(user)


def test_racing_duplicate_references_write_one_entry(user, fund):
    fund(user, START)

    results = run_together(
        10, lambda i: credits_spend(user_id=user.pk, amount=5, reference="same-click")
    )

    assert all(isinstance(r, CreditTransaction) for r in results), results
    assert len({r.pk for r in results}) == 1
    assert CreditTransaction.objects.filter(reference="spend:same-click").count() == 1
    assert balance_of(user) == START - 5


def test_racing_duplicate_requests_over_http_write_one_entry(user, fund):
    fund(user, START)
    token, _ = api_token_create(username=user.username, password=PASSWORD)

    results = run_together(
        10,
        lambda i: bearer_post(token, "/credits/spend/", {"amount": 5, "reference": "same-click"}),
    )

    assert sorted(r.status_code for r in results) == [200] * 9 + [201], results
    assert len({r.json()["entry"]["id"] for r in results}) == 1
    assert CreditTransaction.objects.filter(account__user=user, kind="spend").count() == 1
    assert balance_of(user) == START - 5


def test_racing_first_spends_create_one_account(user):
    """No account yet: the racers must agree on creating exactly one, and all be refused."""
    results = run_together(
        10, lambda i: credits_spend(user_id=user.pk, amount=1, reference=f"first-{i}")
    )
    assert all(isinstance(r, InsufficientCreditsError) for r in results), results
    assert balance_of(user) == 0


def test_racing_staff_adjustments_never_take_the_balance_below_zero(user, staff_user, fund):
    """Staff adjustments take another path than spends (the ledger append, not the spend
    statement): twenty taking 7 at once from 100 leave 14 applied, the rest refused."""
    from credits.services import credits_grant_by_staff

    fund(user, START)
    results = run_together(
        RACERS,
        lambda i: credits_grant_by_staff(
            user_id=user.pk, amount=-PRICE, memo=f"correction {i}", created_by_id=staff_user.pk
        ),
    )

    refused = [r for r in results if isinstance(r, InsufficientCreditsError)]
    assert len(refused) == RACERS - WINNERS
    adjustments = CreditTransaction.objects.filter(account__user=user, kind="adjustment")
    assert adjustments.count() == WINNERS
    assert sorted(adjustments.values_list("balance_after", flat=True), reverse=True) == [
        START - PRICE * n for n in range(1, WINNERS + 1)
    ]
    assert balance_of(user) == START - WINNERS * PRICE >= 0
