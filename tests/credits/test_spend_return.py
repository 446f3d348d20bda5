"""Giving back what a spend took: capped at the spend, once per reference."""

from __future__ import annotations

import pytest

from credits.models import CreditTransaction
from credits.selectors import credits_balance_get, credits_ledger_sum
from credits.services import credits_spend_or_replay, credits_spend_return
from kernel.errors import InvalidInputError

pytestmark = pytest.mark.django_db


def balance(user) -> int:
    value = credits_balance_get(user_id=user.pk)
    assert value == credits_ledger_sum(user_id=user.pk)
    return value


def test_returns_add_up_to_what_the_spend_took_and_no_more(user, fund):
    fund(user, 100)
    credits_spend_or_replay(user_id=user.pk, amount=40, reference="order-1-x")
    first = credits_spend_return(
        user_id=user.pk, spend_reference="order-1-x", amount=15, reference="refund-1"
    )
    assert (first.created, first.entry.amount, first.entry.kind) == (True, 15, "refund")
    assert balance(user) == 75
    # Asked for more than is left: only the 25 left come back.
    rest = credits_spend_return(
        user_id=user.pk, spend_reference="order-1-x", amount=30, reference="refund-2"
    )
    assert rest.entry.amount == 25
    assert balance(user) == 100
    with pytest.raises(InvalidInputError):
        credits_spend_return(user_id=user.pk, spend_reference="order-1-x", reference="refund-3")
    assert balance(user) == 100


def test_a_repeated_reference_gives_back_once(user, fund):
    fund(user, 50)
    credits_spend_or_replay(user_id=user.pk, amount=50, reference="order-2-y")
    once = credits_spend_return(user_id=user.pk, spend_reference="order-2-y", reference="back")
    again = credits_spend_return(user_id=user.pk, spend_reference="order-2-y", reference="back")
    assert once.entry.pk == again.entry.pk and again.created is False
    assert balance(user) == 50
    assert CreditTransaction.objects.filter(kind="refund").count() == 1


def test_only_a_spend_of_this_account_can_be_returned(user, other_user, fund):
    fund(user, 10)
    credits_spend_or_replay(user_id=user.pk, amount=10, reference="order-3-z")
    with pytest.raises(InvalidInputError):
        credits_spend_return(user_id=other_user.pk, spend_reference="order-3-z", reference="r")
    with pytest.raises(InvalidInputError):
        credits_spend_return(user_id=user.pk, spend_reference="order-4-none", reference="r")
    # A reference that merely starts like another spend's is not that spend's return.
    fund(user, 10)
    credits_spend_or_replay(user_id=user.pk, amount=10, reference="order-3-zz")
    credits_spend_return(user_id=user.pk, spend_reference="order-3-zz", reference="r")
    whole = credits_spend_return(user_id=user.pk, spend_reference="order-3-z", reference="r2")
    assert whole.entry.amount == 10
    assert balance(user) == 20
