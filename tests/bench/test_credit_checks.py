"""The storm's and the bench's SQL checks of the credit ledger: each finds the fault it
names, written past the services as only a bug could write it, and nothing on a ledger
the services kept."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import F
from django.utils import timezone

from bench import checks
from billing.models import Order, Refund
from credits.models import CreditAccount, CreditLot, CreditTransaction
from credits.services import (
    credits_expire_due,
    credits_grant,
    credits_spend_or_replay,
    credits_spend_return,
)

pytestmark = pytest.mark.django_db


def order_paid_with_credits(user, *, reference: str, status: str = "paid") -> Order:
    return Order.objects.create(
        user=user,
        purchase_type="workshop",
        order_type=Order.OrderType.DIRECT,
        status=status,
        amount=4500,
        currency="usd",
        credit_price=40,
        credits=40,
        credits_value=4500,
        credits_reference=reference,
        payment_type=Order.PaymentType.CREDITS,
        description="A workshop",
    )


def test_a_ledger_kept_by_the_services_passes_every_credit_check(user):
    credits_grant(user_id=user.pk, amount=30, reference="promo", category="promotional")
    credits_grant(user_id=user.pk, amount=70, reference="paid")
    order = order_paid_with_credits(user, reference="r-1")
    credits_spend_or_replay(user_id=user.pk, amount=40, reference="r-1")
    credits_spend_return(user_id=user.pk, spend_reference="r-1", amount=15, reference="back-1")
    Refund.objects.create(
        order=order,
        method=Refund.Method.CREDITS,
        amount=1687,
        credits=15,
        currency="usd",
        status=Refund.Status.SUCCEEDED,
        source=Refund.Source.STAFF,
        applied_at=timezone.now(),
    )
    assert checks.lots_off_balance() == 0
    assert checks.below_zero_not_refund() == 0
    assert checks.expired_lots_with_credits() == 0
    assert checks.credit_orders_taken_wrong() == 0
    assert checks.credit_orders_unsettled() == 0
    # A refund of an order paid with credits has no card payment behind it.
    assert checks.refunds_applied_twice() == 0


def test_lots_that_do_not_add_up_to_the_balance(user):
    entry = credits_grant(user_id=user.pk, amount=50, reference="g")
    CreditLot.objects.filter(entry=entry).update(remaining=F("remaining") - 1)
    assert checks.lots_off_balance() == 1


def test_below_zero_only_through_a_refund_debit(user):
    account = CreditAccount.objects.create(user=user)
    CreditTransaction.objects.create(
        account=account, amount=-5, kind="refund", reference="refund-1", balance_after=-5
    )
    assert checks.below_zero_not_refund() == 0
    CreditTransaction.objects.create(
        account=account, amount=-5, kind="spend", reference="spend:x", balance_after=-10
    )
    assert checks.below_zero_not_refund() == 1


def test_an_expired_lot_keeps_nothing_once_the_sweep_ran(user):
    credits_grant(
        user_id=user.pk,
        amount=20,
        reference="soon",
        expires_at=timezone.now() - timedelta(seconds=1),
    )
    assert checks.expired_lots_with_credits() == 1
    assert credits_expire_due() == 1
    assert checks.expired_lots_with_credits() == 0
    assert checks.lots_off_balance() == 0


def test_an_order_whose_credits_were_never_taken_or_taken_wrong(user):
    credits_grant(user_id=user.pk, amount=100, reference="g")
    order_paid_with_credits(user, reference="r-2")
    assert checks.credit_orders_taken_wrong() == 1  # no spend at all
    credits_spend_or_replay(user_id=user.pk, amount=39, reference="r-2")
    assert checks.credit_orders_taken_wrong() == 1  # one credit short
    order_paid_with_credits(user, reference="r-3")
    credits_spend_or_replay(user_id=user.pk, amount=40, reference="r-3")
    assert checks.credit_orders_taken_wrong() == 1  # the short one only


def test_credits_given_back_more_than_taken(user):
    credits_grant(user_id=user.pk, amount=100, reference="g")
    order = order_paid_with_credits(user, reference="r-4")
    spend = credits_spend_or_replay(user_id=user.pk, amount=40, reference="r-4").entry
    credits_spend_return(user_id=user.pk, spend_reference="r-4", reference="all-back")
    assert checks.credit_orders_taken_wrong() == 0
    CreditTransaction.objects.create(
        account=spend.account,
        amount=1,
        kind="return",
        reference="return:again",
        balance_after=101,
        returns=spend,
    )
    assert checks.credit_orders_taken_wrong() == 1
    Refund.objects.create(
        order=order,
        method=Refund.Method.CREDITS,
        amount=4500,
        credits=41,
        currency="usd",
        status=Refund.Status.SUCCEEDED,
        source=Refund.Source.STAFF,
        applied_at=timezone.now(),
    )
    assert checks.credit_orders_taken_wrong() == 2


def test_a_cancelled_order_gives_all_its_credits_back(user):
    credits_grant(user_id=user.pk, amount=100, reference="g")
    order_paid_with_credits(user, reference="r-5", status="canceled")
    credits_spend_or_replay(user_id=user.pk, amount=40, reference="r-5")
    assert checks.credit_orders_unsettled() == 1
    credits_spend_return(user_id=user.pk, spend_reference="r-5", amount=39, reference="b")
    assert checks.credit_orders_unsettled() == 1
    credits_spend_return(user_id=user.pk, spend_reference="r-5", reference="b-rest")
    assert checks.credit_orders_unsettled() == 0


def test_a_refund_past_what_the_card_and_the_credits_paid(user):
    order = order_paid_with_credits(user, reference="r-6")
    Refund.objects.create(
        order=order,
        method=Refund.Method.CREDITS,
        amount=4500,
        credits=40,
        currency="usd",
        status=Refund.Status.SUCCEEDED,
        source=Refund.Source.STAFF,
        applied_at=timezone.now(),
    )
    assert checks.refunds_applied_twice() == 0
    Order.objects.filter(pk=order.pk).update(credits_value=4000)
    assert checks.refunds_applied_twice() == 1
