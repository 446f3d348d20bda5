"""The ledger itself: entries are immutable, balance = sum of entries, refunds may go into debt."""

from __future__ import annotations

import pytest

from credits.errors import CreditReferenceConflictError, InsufficientCreditsError
from credits.models import CreditAccount, CreditTransaction
from credits.services import (
    credits_debit_refund,
    credits_grant,
    credits_spend,
    credits_spend_or_replay,
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


def test_a_spend_reference_may_fill_the_stored_reference(user, fund):
    """Stored as `spend:<reference>`: the longest reference accepted fills the column."""
    fund(user, 20)
    room = CreditTransaction._meta.get_field("reference").max_length - len("spend:")
    entry = credits_spend(user_id=user.pk, amount=1, reference="x" * room)
    assert entry.reference == "spend:" + "x" * room
    assert balance_of(user) == 19
