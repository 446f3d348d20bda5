"""Writes to the credit ledger.

The rule: every change goes through `_ledger_append`, which takes the account's
row lock, appends one entry and moves the balance by the same amount in one
transaction. A repeated `reference` returns the first entry instead of writing
a second one, so retries and duplicate deliveries never count twice.

References the outside world chooses (a client's spend, a staff grant) are
stored under their own prefix, so they can never take a reference the system
writes itself (`order-<id>`, a refund's) and so block a fulfilment or a refund.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import F

from credits.errors import CreditReferenceConflictError, InsufficientCreditsError
from credits.models import CreditAccount, CreditTransaction
from kernel.errors import InvalidInputError, NotFoundError

# One entry moves at most this many credits: larger is a typo, and the cap keeps
# any balance far from the 64-bit column's limit.
LEDGER_ENTRY_MAX = 10**9
REFERENCE_MAX_LENGTH = CreditTransaction._meta.get_field("reference").max_length
MEMO_MAX_LENGTH = CreditTransaction._meta.get_field("memo").max_length
SPEND_REFERENCE_PREFIX = "spend:"
GRANT_REFERENCE_PREFIX = "grant:"
SPEND_REFERENCE_MAX_LENGTH = REFERENCE_MAX_LENGTH - len(SPEND_REFERENCE_PREFIX)
GRANT_REFERENCE_MAX_LENGTH = REFERENCE_MAX_LENGTH - len(GRANT_REFERENCE_PREFIX)


@dataclass(frozen=True)
class LedgerWrite:
    """The outcome of one idempotent write.

    `created` is False when the reference had already been written and `entry`
    is that first entry; `balance` is the account's balance under the lock.
    """

    entry: CreditTransaction
    created: bool
    balance: int


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
) -> LedgerWrite:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
        raise InvalidInputError("A credit amount is a non-zero whole number.", amount=amount)
    if abs(amount) > LEDGER_ENTRY_MAX:
        raise InvalidInputError(
            f"One entry moves at most {LEDGER_ENTRY_MAX} credits.", amount=amount
        )
    if not reference or len(reference) > REFERENCE_MAX_LENGTH:
        raise InvalidInputError(
            f"A ledger entry needs a reference of 1 to {REFERENCE_MAX_LENGTH} characters."
        )
    with transaction.atomic():
        credit_account_get_or_create(user_id=user_id)
        account = CreditAccount.objects.select_for_update().get(user_id=user_id)
        existing = _existing_entry(account, reference=reference, amount=amount, kind=kind)
        if existing is not None:
            return LedgerWrite(entry=existing, created=False, balance=account.balance)
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
                    memo=memo[:MEMO_MAX_LENGTH],
                    created_by_id=created_by_id,
                )
        except IntegrityError:  # pragma: no cover - the row lock makes this unreachable
            raise CreditReferenceConflictError(
                f"Reference {reference!r} is already in use.", reference=reference
            ) from None
        CreditAccount.objects.filter(pk=account.pk).update(balance=F("balance") + amount)
        return LedgerWrite(entry=entry, created=True, balance=new_balance)


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

    `reference` is stored as given: callers here are the system (`order-<id>`).
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
    ).entry


def credits_grant_by_staff(
    *,
    user_id: int,
    amount: int,
    memo: str,
    created_by_id: int,
    reference: str | None = None,
) -> LedgerWrite:
    """A staff member grants (amount > 0) or takes back (amount < 0, an adjustment) credits.

    The reference is namespaced (`grant:<reference>`, or `grant:<uuid>` when none is
    given). An adjustment may not take the balance below zero. Raises `NotFoundError`
    for an unknown user.
    """
    if not get_user_model().objects.filter(pk=user_id).exists():
        raise NotFoundError(f"No user with id {user_id}.", user_id=user_id)
    if not memo.strip():
        raise InvalidInputError("A grant says why in its memo.", field="memo")
    if reference is None:
        reference = uuid.uuid4().hex
    if not reference or len(reference) > GRANT_REFERENCE_MAX_LENGTH:
        raise InvalidInputError(
            f"A grant reference is 1 to {GRANT_REFERENCE_MAX_LENGTH} characters.",
            field="reference",
        )
    is_grant = isinstance(amount, int) and amount > 0
    return _ledger_append(
        user_id=user_id,
        amount=amount,
        kind=CreditTransaction.Kind.GRANT if is_grant else CreditTransaction.Kind.ADJUSTMENT,
        reference=GRANT_REFERENCE_PREFIX + reference,
        memo=memo,
        created_by_id=created_by_id,
        allow_negative=False,
    )


def credits_spend_or_replay(
    *, user_id: int, amount: int, reference: str, memo: str = ""
) -> LedgerWrite:
    """Spend `amount` credits once per client `reference`; a repeat returns the first entry.

    The reference is stored as `spend:<reference>`. Refuses with
    `InsufficientCreditsError` rather than take the balance below zero (an account
    in debt cannot spend), and with `CreditReferenceConflictError` when the
    reference was already spent with another amount.
    """
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidInputError("A spend is a positive whole number of credits.", amount=amount)
    if not reference or len(reference) > SPEND_REFERENCE_MAX_LENGTH:
        raise InvalidInputError(
            f"A spend reference is 1 to {SPEND_REFERENCE_MAX_LENGTH} characters.",
            field="reference",
        )
    return _ledger_append(
        user_id=user_id,
        amount=-amount,
        kind=CreditTransaction.Kind.SPEND,
        reference=SPEND_REFERENCE_PREFIX + reference,
        memo=memo,
        allow_negative=False,
    )


def credits_spend(
    *, user_id: int, amount: int, reference: str, memo: str = ""
) -> CreditTransaction:
    """Spend `amount` credits; refuses (409) rather than take the balance below zero."""
    return credits_spend_or_replay(
        user_id=user_id, amount=amount, reference=reference, memo=memo
    ).entry


def credits_debit_refund(
    *, user_id: int, amount: int, reference: str, memo: str = ""
) -> CreditTransaction:
    """Take back `amount` (> 0) credits for a refund, even past zero.

    The books must show every refund, so a balance may go negative here: the
    account is then in debt and cannot spend until it is topped up. `reference`
    is stored as given (the caller derives it from the Stripe refund id).
    """
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidInputError("A refund debit is a positive whole number.", amount=amount)
    return _ledger_append(
        user_id=user_id,
        amount=-amount,
        kind=CreditTransaction.Kind.REFUND,
        reference=reference,
        memo=memo,
        allow_negative=True,
    ).entry
