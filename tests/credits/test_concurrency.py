"""The ledger's rules under real concurrency: racing spends never overdraw and never double-count.

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


# --- with lots ---------------------------------------------------------------------------


def test_fifty_racing_spends_draw_the_lots_in_order_and_never_overdraw(user):
    """Five lots of 20 (expiring in a known order) and fifty spends of 3 at once:
    33 win, and what they drew empties the lots in draw order, exactly."""
    from datetime import timedelta

    from django.db.models import Sum
    from django.utils import timezone

    from credits.models import CreditDraw, CreditLot
    from credits.services import credits_grant

    now = timezone.now()
    expiries = [now + timedelta(days=d) for d in (5, 1, 3)] + [None, None]
    categories = ["paid", "paid", "paid", "paid", "promotional"]
    for i, (expires_at, category) in enumerate(zip(expiries, categories, strict=True)):
        credits_grant(
            user_id=user.pk,
            amount=20,
            reference=f"lot-{i}",
            expires_at=expires_at,
            category=category,
        )
    lots = list(CreditLot.objects.filter(account__user=user).order_by("id"))
    in_draw_order = [lots[1], lots[2], lots[0], lots[4], lots[3]]

    results = run_together(
        50, lambda i: credits_spend(user_id=user.pk, amount=3, reference=f"many-{i}")
    )

    won = [r for r in results if isinstance(r, CreditTransaction)]
    assert len(won) == 33, results
    assert all(isinstance(r, InsufficientCreditsError) for r in results if r not in won)
    assert balance_of(user) == 1
    left = [CreditLot.objects.get(pk=lot.pk).remaining for lot in in_draw_order]
    assert left == [0, 0, 0, 0, 1]
    for entry in won:
        drawn = CreditDraw.objects.filter(entry=entry).aggregate(s=Sum("amount"))["s"]
        assert drawn == 3
    # Serialised by the lock: in the order the spends ran, the lots they drew never
    # go back to one earlier in the draw order.
    order = [lot.pk for lot in in_draw_order]
    positions = [
        order.index(lot_id)
        for entry in sorted(won, key=lambda e: e.balance_after, reverse=True)
        for lot_id in CreditDraw.objects.filter(entry=entry).values_list("lot_id", flat=True)
    ]
    assert positions == sorted(positions)
    assert positions[0] == 0 and positions[-1] == 4


def test_a_spend_that_waited_for_a_grant_draws_the_lot_it_brought(user):
    """A spend that starts while another transaction empties the only lot it can
    see and brings a new one: its statement's snapshot has the old lot, not the new
    one, so it must notice the lots fall short and run again, never spend credits
    without drawing them from a lot."""
    import threading

    from django.db import connection, transaction

    from credits.models import CreditDraw, CreditLot
    from credits.services import credits_grant

    credits_grant(user_id=user.pk, amount=5, reference="old-lot")
    replaced = threading.Event()
    outcome: dict[str, object] = {}

    def replace() -> None:
        try:
            with transaction.atomic():
                credits_spend(user_id=user.pk, amount=5, reference="empties-old")
                credits_grant(user_id=user.pk, amount=10, reference="new-lot")
                replaced.set()
                threading.Event().wait(0.5)  # the spend starts meanwhile, waits on the lock
        finally:
            connection.close()

    def spend() -> None:
        try:
            replaced.wait(10)
            outcome["spend"] = credits_spend(user_id=user.pk, amount=4, reference="waiting")
        except Exception as exc:  # asserted below
            outcome["spend"] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=replace), threading.Thread(target=spend)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    entry = outcome["spend"]
    assert isinstance(entry, CreditTransaction), entry
    new_lot = CreditLot.objects.get(entry__reference="new-lot")
    assert list(CreditDraw.objects.filter(entry=entry).values_list("lot_id", "amount")) == [
        (new_lot.pk, 4)
    ]
    assert new_lot.remaining == 6
    assert balance_of(user) == 6


def test_sweeps_racing_spends_expire_each_lot_once_and_lose_nothing(user):
    """Two sweeps and ten spends at once on an account whose first lot is past its
    expiry: whatever order they run in, the lot is expired once, with what the
    spends before it left of it, no spend overdraws, and the lots hold the balance."""
    from datetime import timedelta

    from django.utils import timezone

    from credits.models import CreditLot
    from credits.services import credits_expire_due, credits_grant

    now = timezone.now()
    credits_grant(user_id=user.pk, amount=30, reference="due", expires_at=now)
    credits_grant(user_id=user.pk, amount=30, reference="kept")

    def work(i: int):
        if i < 2:
            return credits_expire_due(now=now + timedelta(seconds=1))
        return credits_spend(user_id=user.pk, amount=4, reference=f"s-{i}")

    results = run_together(12, work)

    # One sweep expires the lot, unless the spends emptied it first; never both sweeps.
    assert sorted(results[:2]) in ([0, 0], [0, 1]), results
    expiries = CreditTransaction.objects.filter(account__user=user, kind="expiry")
    assert expiries.count() == sum(results[:2])
    won = [r for r in results[2:] if isinstance(r, CreditTransaction)]
    # A spend after the sweep finds only what is left: it may be refused, never overdraw.
    assert all(isinstance(r, InsufficientCreditsError) for r in results[2:] if r not in won)
    expired = sum(e.amount for e in expiries)
    assert balance_of(user) == 60 - 4 * len(won) + expired >= 0
    lots = {
        lot.entry.reference: lot.remaining for lot in CreditLot.objects.filter(account__user=user)
    }
    assert lots["due"] == 0
    assert lots["kept"] == balance_of(user)
