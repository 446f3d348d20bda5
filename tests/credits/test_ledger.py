"""The ledger itself: entries are immutable, balance = sum of entries, refunds may go into debt."""

from __future__ import annotations

import itertools

import pytest

from credits import services
from credits.errors import CreditReferenceConflictError, InsufficientCreditsError
from credits.models import CreditAccount, CreditFreeze, CreditTransaction
from credits.services import (
    credits_debit_refund,
    credits_freeze,
    credits_grant,
    credits_spend,
    credits_spend_or_replay,
    credits_unfreeze,
)
from kernel.errors import InvalidInputError
from tests.credits.ledger_checks import balance_of

pytestmark = pytest.mark.django_db


def test_saving_an_existing_entry_raises_and_changes_nothing(user, fund):
    entry = fund(user, 10)
    entry.amount = 1_000
    with pytest.raises(ValueError, match="immutable"):
        entry.save()
    entry.refresh_from_db()
    assert entry.amount == 10
    assert balance_of(user) == 10


def test_deleting_an_entry_raises_and_keeps_it(user, fund):
    entry = fund(user, 10)
    with pytest.raises(ValueError, match="immutable"):
        entry.delete()
    assert CreditTransaction.objects.filter(pk=entry.pk).exists()


def test_every_entry_records_the_running_balance(user, fund):
    fund(user, 10)
    credits_spend(user_id=user.pk, amount=4, reference="a")
    credits_grant(user_id=user.pk, amount=-2, reference="adj", kind="adjustment")
    credits_debit_refund(user_id=user.pk, amount=9, reference="refund-re_1")
    entries = list(CreditTransaction.objects.filter(account__user=user).order_by("id"))
    assert [e.amount for e in entries] == [10, -4, -2, -9]
    assert [e.balance_after for e in entries] == [10, 6, 4, -5]
    assert balance_of(user) == -5


def test_refund_debit_is_recorded_past_zero_once(user, fund):
    fund(user, 5)
    first = credits_debit_refund(user_id=user.pk, amount=8, reference="refund-re_1")
    again = credits_debit_refund(user_id=user.pk, amount=8, reference="refund-re_1")
    assert again.pk == first.pk
    assert first.kind == "refund"
    assert balance_of(user) == -3
    with pytest.raises(InsufficientCreditsError):
        credits_spend(user_id=user.pk, amount=1, reference="after-debt")
    fund(user, 4)
    credits_spend(user_id=user.pk, amount=1, reference="after-top-up")
    assert balance_of(user) == 0


def test_a_reference_reused_for_another_kind_conflicts(user, fund):
    fund(user, 20)
    credits_grant(user_id=user.pk, amount=5, reference="order-1", kind="purchase")
    with pytest.raises(CreditReferenceConflictError):
        credits_grant(user_id=user.pk, amount=5, reference="order-1", kind="grant")
    assert balance_of(user) == 25


@pytest.mark.parametrize("kind", ["adjustment", "spend"])
def test_a_debit_reusing_the_reference_of_another_kind_conflicts(user, fund, kind):
    fund(user, 20)
    credits_debit_refund(user_id=user.pk, amount=5, reference="refund-re_1")
    # The same amount under the same reference, but another kind is not that refund.
    with pytest.raises(CreditReferenceConflictError):
        credits_grant(user_id=user.pk, amount=-5, reference="refund-re_1", kind=kind)
    assert balance_of(user) == 15
    assert not CreditTransaction.objects.filter(account__user=user, kind=kind).exists()


@pytest.mark.parametrize("earlier", ["spend", "adjustment"])
def test_a_refund_debit_under_another_entrys_reference_conflicts(user, fund, earlier):
    """Same reference, same amount, but not a refund debit: not a replay of one."""
    fund(user, 20)
    if earlier == "spend":
        reference = credits_spend(user_id=user.pk, amount=5, reference="re_1").reference
    else:
        reference = "adj-1"
        credits_grant(user_id=user.pk, amount=-5, reference=reference, kind="adjustment")
    with pytest.raises(CreditReferenceConflictError):
        credits_debit_refund(user_id=user.pk, amount=5, reference=reference)
    assert not CreditTransaction.objects.filter(account__user=user, kind="refund").exists()
    assert balance_of(user) == 15


def test_a_refund_debit_repeated_with_another_amount_conflicts(user, fund):
    fund(user, 20)
    credits_debit_refund(user_id=user.pk, amount=8, reference="refund-re_2")
    for amount in (5, 11):
        with pytest.raises(CreditReferenceConflictError):
            credits_debit_refund(user_id=user.pk, amount=amount, reference="refund-re_2")
    assert balance_of(user) == 12


def test_spend_replay_reports_that_nothing_was_written(user, fund):
    fund(user, 20)
    first = credits_spend_or_replay(user_id=user.pk, amount=5, reference="r")
    again = credits_spend_or_replay(user_id=user.pk, amount=5, reference="r")
    assert (first.created, again.created) == (True, False)
    assert again.entry.pk == first.entry.pk
    assert again.balance == 15
    assert balance_of(user) == 15


@pytest.mark.parametrize("amount", [0, -1, 1.5, "3", True, None, 10**10])
def test_spend_refuses_what_is_not_a_positive_whole_number(user, fund, amount):
    fund(user, 20)
    with pytest.raises(InvalidInputError):
        credits_spend(user_id=user.pk, amount=amount, reference="r")
    assert balance_of(user) == 20


@pytest.mark.parametrize("amount", [0, -1, 1.5, True, None])
def test_spend_says_a_spend_is_a_positive_whole_number(user, fund, amount):
    fund(user, 20)
    with pytest.raises(InvalidInputError, match="positive whole number"):
        credits_spend(user_id=user.pk, amount=amount, reference="r")
    assert balance_of(user) == 20


def test_a_large_spend_is_replayed_like_a_small_one(user, fund):
    fund(user, 5000)
    first = credits_spend_or_replay(user_id=user.pk, amount=3000, reference="r")
    again = credits_spend_or_replay(user_id=user.pk, amount=3000, reference="r")
    assert (again.created, again.entry.pk, again.balance) == (False, first.entry.pk, 2000)
    assert balance_of(user) == 2000


@pytest.mark.parametrize(("balance", "frozen", "amount"), [(12, 9, 4), (10, 1, 10)])
def test_a_spend_refused_for_frozen_credits_says_how_many_are_frozen(
    user, fund, balance, frozen, amount
):
    fund(user, balance)
    credits_freeze(user_id=user.pk, amount=frozen, reference="dispute-1")
    with pytest.raises(InsufficientCreditsError) as refused:
        credits_spend(user_id=user.pk, amount=amount, reference="r")
    assert refused.value.extra == {"balance": balance, "frozen": frozen, "required": amount}
    credits_spend(user_id=user.pk, amount=balance - frozen, reference="all-available")
    assert balance_of(user) == frozen


@pytest.mark.parametrize("reference", ["", "x" * 115])
def test_spend_refuses_a_reference_that_does_not_fit(user, fund, reference):
    fund(user, 20)
    with pytest.raises(InvalidInputError):
        credits_spend(user_id=user.pk, amount=1, reference=reference)
    assert balance_of(user) == 20


def test_a_failed_spend_leaves_no_account_behind(user):
    with pytest.raises(InsufficientCreditsError):
        credits_spend(user_id=user.pk, amount=1, reference="r")
    assert not CreditAccount.objects.filter(user=user).exists()


@pytest.mark.parametrize("amount", [0, -1, 1.5, True, None])
def test_a_refund_debit_refuses_what_is_not_a_positive_whole_number(user, fund, amount):
    fund(user, 20)
    with pytest.raises(InvalidInputError, match="positive whole number"):
        credits_debit_refund(user_id=user.pk, amount=amount, reference="refund-re_1")
    assert balance_of(user) == 20
    assert not CreditTransaction.objects.filter(account__user=user, kind="refund").exists()


@pytest.mark.parametrize("amount", [0, -1, 1.5, True, None])
def test_a_freeze_refuses_what_is_not_a_positive_whole_number(user, fund, amount):
    fund(user, 20)
    with pytest.raises(InvalidInputError, match="positive whole number"):
        credits_freeze(user_id=user.pk, amount=amount, reference="dispute-1")
    assert not CreditFreeze.objects.filter(account__user=user).exists()
    assert CreditAccount.objects.get(user=user).frozen == 0


def test_a_freeze_is_released_once_and_an_unknown_one_releases_nothing(user, other_user, fund):
    fund(user, 20)
    credits_freeze(user_id=user.pk, amount=8, reference="dispute-1")
    assert credits_unfreeze(user_id=user.pk, reference="dispute-1") == 8
    assert credits_unfreeze(user_id=user.pk, reference="dispute-1") == 0
    assert credits_unfreeze(user_id=user.pk, reference="dispute-2") == 0
    assert CreditAccount.objects.get(user=user).frozen == 0
    # A user with no credit account has nothing frozen to release.
    assert credits_unfreeze(user_id=other_user.pk, reference="dispute-1") == 0
    assert not CreditAccount.objects.filter(user=other_user).exists()


def test_a_freeze_may_hold_a_single_credit(user, fund):
    fund(user, 5)
    freeze = credits_freeze(user_id=user.pk, amount=1, reference="dispute-1")
    assert (freeze.requested, freeze.amount) == (1, 1)
    assert CreditAccount.objects.get(user=user).frozen == 1


@pytest.mark.parametrize(("length", "accepted"), [(120, True), (121, False)])
def test_a_freeze_reference_is_at_most_120_characters(user, fund, length, accepted):
    fund(user, 5)
    if accepted:
        credits_freeze(user_id=user.pk, amount=2, reference="x" * length)
    else:
        with pytest.raises(InvalidInputError):
            credits_freeze(user_id=user.pk, amount=2, reference="x" * length)
    assert CreditAccount.objects.get(user=user).frozen == (2 if accepted else 0)


def test_freezes_add_up_and_each_releases_only_its_own(user, fund):
    fund(user, 20)
    credits_freeze(user_id=user.pk, amount=4, reference="dispute-1")
    second = credits_freeze(user_id=user.pk, amount=12, reference="dispute-2")
    assert second.amount == 12
    assert CreditAccount.objects.get(user=user).frozen == 16
    assert credits_unfreeze(user_id=user.pk, reference="dispute-1") == 4
    assert CreditAccount.objects.get(user=user).frozen == 12
    assert credits_unfreeze(user_id=user.pk, reference="dispute-2") == 12
    assert CreditAccount.objects.get(user=user).frozen == 0


def test_a_spend_reference_may_fill_the_stored_reference(user, fund):
    """Stored as `spend:<reference>`: the longest reference accepted fills the column."""
    fund(user, 20)
    room = CreditTransaction._meta.get_field("reference").max_length - len("spend:")
    entry = credits_spend(user_id=user.pk, amount=1, reference="x" * room)
    assert entry.reference == "spend:" + "x" * room
    assert balance_of(user) == 19


def test_a_spend_by_a_user_who_never_had_credits_says_the_balance_is_zero(user):
    with pytest.raises(InsufficientCreditsError) as refused:
        credits_spend(user_id=user.pk, amount=3, reference="first")
    assert refused.value.message == "The balance is 0 credits; 3 are needed."
    assert refused.value.extra == {"balance": 0, "required": 3}


_RACES = itertools.count()


def _grants_racing_each_attempt(monkeypatch, user, credits: int, *, times: int) -> list[int]:
    """Each of the spend's first `times` statements finds the balance short, and a
    grant of `credits` lands before the spend looks again; from the second attempt
    on, another spend takes them just before the statement runs."""
    attempts: list[int] = []
    real = services._debit_once

    def racing(**kw):
        attempts.append(n := len(attempts) + 1)
        if 1 < n <= times:
            monkeypatch.setattr(services, "_debit_once", real)
            credits_spend(user_id=user.pk, amount=credits, reference=f"other-{next(_RACES)}")
            monkeypatch.setattr(services, "_debit_once", racing)
        written = real(**kw)
        if n <= times:
            assert written is None  # the statement found too little
            credits_grant(user_id=user.pk, amount=credits, reference=f"race-{next(_RACES)}")
        return written

    monkeypatch.setattr(services, "_debit_once", racing)
    return attempts


@pytest.mark.parametrize(("frozen", "arrived"), [(0, 5), (0, 7), (3, 5)])
def test_a_grant_landing_between_a_refused_spend_and_its_look_lets_the_spend_try_again(
    user, fund, monkeypatch, frozen, arrived
):
    """Credits that arrive after the spend's statement found too little, exactly
    enough or more beside any frozen ones: the spend tries again and takes them,
    rather than refusing."""
    if frozen:
        fund(user, frozen)
        credits_freeze(user_id=user.pk, amount=frozen, reference="dispute-1")
    attempts = _grants_racing_each_attempt(monkeypatch, user, arrived, times=1)
    entry = credits_spend(user_id=user.pk, amount=5, reference="spend")
    assert (entry.amount, attempts) == (-5, [1, 2])
    assert balance_of(user) == frozen + arrived - 5


def test_a_spend_whose_balance_keeps_moving_tries_three_times_then_says_so(user, monkeypatch):
    attempts = _grants_racing_each_attempt(monkeypatch, user, 5, times=2)
    assert credits_spend(user_id=user.pk, amount=5, reference="spend").amount == -5
    assert attempts == [1, 2, 3]

    attempts = _grants_racing_each_attempt(monkeypatch, user, 5, times=9)
    with pytest.raises(InsufficientCreditsError, match="changed while spending"):
        credits_spend(user_id=user.pk, amount=5, reference="spend-again")
    assert attempts == [1, 2, 3]


def test_an_adjustment_of_minus_one_takes_one_credit(user, fund):
    fund(user, 5)
    entry = credits_grant(user_id=user.pk, amount=-1, reference="adj-1", kind="adjustment")
    assert (entry.amount, entry.kind, entry.balance_after) == (-1, "adjustment", 4)
    assert balance_of(user) == 4
