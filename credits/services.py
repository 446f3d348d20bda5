"""Writes to the credit ledger.

The rule: every change goes through `_ledger_append`, which takes the account's
row lock, appends one entry and moves the balance by the same amount in one
transaction. A repeated `reference` returns the first entry instead of writing
a second one, so retries and duplicate deliveries never count twice.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import F

from credits.errors import CreditReferenceConflictError, InsufficientCreditsError
from credits.models import CreditAccount, CreditTransaction
from kernel.errors import InvalidInputError


def credit_account_get_or_create(*, user_id: int) -> CreditAccount:
    account, _ = CreditAccount.objects.get_or_create(user_id=user_id)
    return account


def _existing_entry(
    account: CreditAccount, *, reference: str, amount: int, kind: str
) -> CreditTransaction | None:
    entry = CreditTransaction.objects.filter(account=account, reference=reference).first()
    if entry is not None and (entry.amount != amount or entry.kind != kind):
        raise CreditReferenceConflictError(
            f"Reference {reference!r} was already used for a different entry.",
            reference=reference,
            entry_id=entry.pk,
        )
    return entry


def _ledger_append(
    *,
    user_id: int,
    amount: int,
    kind: str,
    reference: str,
    memo: str = "",
    created_by_id: int | None = None,
    allow_negative: bool,
) -> CreditTransaction:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
        raise InvalidInputError("A credit amount is a non-zero whole number.", amount=amount)
    if not reference:
        raise InvalidInputError("A ledger entry needs a reference.")
    with transaction.atomic():
        credit_account_get_or_create(user_id=user_id)
        account = CreditAccount.objects.select_for_update().get(user_id=user_id)
        existing = _existing_entry(account, reference=reference, amount=amount, kind=kind)
        if existing is not None:
            return existing
        new_balance = account.balance + amount
        if amount < 0 and new_balance < 0 and not allow_negative:
            raise InsufficientCreditsError(
                f"The balance is {account.balance} credits; {-amount} are needed.",
                balance=account.balance,
                required=-amount,
            )
        try:
            with transaction.atomic():
                entry = CreditTransaction.objects.create(
                    account=account,
                    amount=amount,
                    kind=kind,
                    reference=reference,
                    balance_after=new_balance,
                    memo=memo[:500],
                    created_by_id=created_by_id,
                )
        except IntegrityError:  # pragma: no cover - the row lock makes this unreachable
            raise CreditReferenceConflictError(
                f"Reference {reference!r} is already in use.", reference=reference
            ) from None
        CreditAccount.objects.filter(pk=account.pk).update(balance=F("balance") + amount)
        return entry


def credits_grant(
    *,
    user_id: int,
    amount: int,
    reference: str,
    kind: str = CreditTransaction.Kind.GRANT,
    memo: str = "",
    created_by_id: int | None = None,
) -> CreditTransaction:
    """Add credits (a purchase, a grant, a subscription cycle), or adjust with a negative amount.

    A negative adjustment may not take the balance below zero; refund debits use
    `credits_debit_refund`, which may.
    """
    return _ledger_append(
        user_id=user_id,
        amount=amount,
        kind=kind,
        reference=reference,
        memo=memo,
        created_by_id=created_by_id,
        allow_negative=False,
    )


def credits_spend(
    *, user_id: int, amount: int, reference: str, memo: str = ""
) -> CreditTransaction:
    """Spend `amount` credits; refuses (409) rather than take the balance below zero."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidInputError("A spend is a positive whole number of credits.", amount=amount)
    return _ledger_append(
        user_id=user_id,
        amount=-amount,
        kind=CreditTransaction.Kind.SPEND,
        reference=reference,
        memo=memo,
        allow_negative=False,
    )
