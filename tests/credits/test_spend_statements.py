"""What a spend costs the database: one statement under the account's lock.

A hot account (many spends a second on one balance) is as fast as the time its
row lock is held. These tests pin that a spend holds it for exactly one
statement, that the whole request is two (the bearer token, the spend), and
that the paths around it — a refusal, a repeat, a repeat that raced its first
copy, a spend inside a caller's transaction — still answer what the ledger says.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from credits.errors import InsufficientCreditsError
from credits.models import CreditAccount, CreditTransaction
from credits.services import credits_debit_refund, credits_spend_or_replay
from tests.credits.ledger_checks import balance_of


def _statements(ctx: CaptureQueriesContext) -> list[str]:
    return [" ".join(q["sql"].split()) for q in ctx.captured_queries]


# Autocommit, as in production: inside a test's transaction a spend takes a savepoint.
@pytest.mark.django_db(transaction=True)
def test_a_spend_request_is_the_token_lookup_and_one_statement(api, user, fund):
    fund(user, 10)
    api.post("/credits/spend/", {"amount": 1, "reference": "warm"})  # token's last use noted

    with CaptureQueriesContext(connection) as ctx:
        response = api.post("/credits/spend/", {"amount": 3, "reference": "coffee"})

    assert response.status_code == 201, response.content
    token_lookup, spend = _statements(ctx)
    assert "platform_core_apitoken" in token_lookup
    # One statement moves the balance and appends the entry; no BEGIN/COMMIT around it.
    assert spend.startswith("WITH account AS (UPDATE")
    assert "INSERT INTO" in spend
    body = response.json()
    assert body["balance"] == 6
    assert body["entry"]["balance_after"] == 6
    assert body["entry"]["reference"] == "spend:coffee"
    assert balance_of(user) == 6


@pytest.mark.django_db(transaction=True)
def test_a_refused_spend_writes_nothing_and_says_why(api, user, fund):
    fund(user, 2)
    api.get("/credits/balance/")  # the token's last use noted
    with CaptureQueriesContext(connection) as ctx:
        response = api.post("/credits/spend/", {"amount": 5, "reference": "too-much"})

    assert response.status_code == 409
    assert response.json()["code"] == "insufficient_credits"
    assert response.json()["extra"] == {"balance": 2, "required": 5}
    assert len(ctx.captured_queries) <= 4  # token, the spend, the account, the reference
    assert balance_of(user) == 2


@pytest.mark.django_db
def test_a_repeat_answers_the_first_entry_and_the_balance(api, user, fund):
    fund(user, 10)
    first = api.post("/credits/spend/", {"amount": 4, "reference": "r"})
    again = api.post("/credits/spend/", {"amount": 4, "reference": "r"})

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["entry"] == first.json()["entry"]
    assert again.json()["balance"] == 6
    assert balance_of(user) == 6


@pytest.mark.django_db
def test_a_spend_inside_a_transaction_rolls_back_with_it(user, fund):
    fund(user, 10)
    with pytest.raises(RuntimeError), transaction.atomic():
        credits_spend_or_replay(user_id=user.pk, amount=4, reference="in-txn")
        assert balance_of(user) == 6
        raise RuntimeError("the caller changed its mind")
    assert balance_of(user) == 10
    assert not CreditTransaction.objects.filter(reference="spend:in-txn").exists()


@pytest.mark.django_db
def test_an_account_in_debt_cannot_spend(user, fund):
    fund(user, 1)
    credits_debit_refund(user_id=user.pk, amount=2, reference="refund-re_1")
    with pytest.raises(InsufficientCreditsError) as refused:
        credits_spend_or_replay(user_id=user.pk, amount=1, reference="debt")
    assert refused.value.extra == {"balance": -1, "required": 1}
    assert balance_of(user) == -1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("second_in_transaction", [False, True], ids=["autocommit", "atomic"])
def test_a_repeat_that_waited_for_its_first_copy_replays_it(user, fund, second_in_transaction):
    """The first copy holds the account's lock; the repeat's statement waits for it,
    then finds the reference taken (a unique-key failure) and answers the first entry,
    also inside a caller's transaction, which stays usable."""
    fund(user, 10)
    first_spent = threading.Event()
    outcome: dict[str, object] = {}

    def first() -> None:
        try:
            with transaction.atomic():
                outcome["first"] = credits_spend_or_replay(
                    user_id=user.pk, amount=3, reference="double-click"
                )
                first_spent.set()
                # The repeat starts meanwhile and waits on the lock this holds.
                threading.Event().wait(0.5)
        finally:
            connection.close()

    def second() -> None:
        try:
            first_spent.wait(10)
            if second_in_transaction:
                with transaction.atomic():
                    outcome["second"] = credits_spend_or_replay(
                        user_id=user.pk, amount=3, reference="double-click"
                    )
                    outcome["after"] = CreditAccount.objects.get(user=user).balance
            else:
                outcome["second"] = credits_spend_or_replay(
                    user_id=user.pk, amount=3, reference="double-click"
                )
        except Exception as exc:  # asserted below
            outcome["second"] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    first_write, second_write = outcome["first"], outcome["second"]
    assert not isinstance(second_write, Exception), second_write
    assert first_write.created and not second_write.created
    assert second_write.entry.pk == first_write.entry.pk
    assert second_write.balance == 7
    if second_in_transaction:
        assert outcome["after"] == 7
    assert CreditTransaction.objects.filter(reference="spend:double-click").count() == 1
    assert balance_of(user) == 7
