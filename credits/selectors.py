"""Reads of the credit ledger."""

from __future__ import annotations

from django.db.models import QuerySet, Sum

from credits.models import CreditAccount, CreditPack, CreditTransaction


def credits_balance_get(*, user_id: int) -> int:
    account = CreditAccount.objects.filter(user_id=user_id).only("balance").first()
    return account.balance if account else 0


def credits_transactions_for_user(*, user_id: int) -> QuerySet[CreditTransaction]:
    return CreditTransaction.objects.filter(account__user_id=user_id).order_by("-id")


def credits_ledger_sum(*, user_id: int) -> int:
    total = CreditTransaction.objects.filter(account__user_id=user_id).aggregate(s=Sum("amount"))
    return total["s"] or 0


def credit_packs_active() -> QuerySet[CreditPack]:
    return CreditPack.objects.filter(active=True)


def credits_frozen_get(*, user_id: int) -> int:
    """Credits of the balance held by open freezes (a disputed purchase): not spendable."""
    account = CreditAccount.objects.filter(user_id=user_id).only("frozen").first()
    return account.frozen if account else 0


def credits_balance_and_frozen_get(*, user_id: int) -> tuple[int, int]:
    """The balance and the part of it frozen, in one read."""
    account = CreditAccount.objects.filter(user_id=user_id).only("balance", "frozen").first()
    return (account.balance, account.frozen) if account else (0, 0)
