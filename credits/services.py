"""Writes to the credit ledger.

The rule: every change takes the account's row lock, appends one entry and
moves the balance by the same amount in one transaction: `_ledger_append` in
general, and on PostgreSQL a single statement for the busiest writes, a
client's spend (`_spend_sql`) and a grant of credits (`_grant_sql`). A
repeated `reference` returns the first entry instead of writing a second one,
so retries and duplicate deliveries never count twice.

Frozen credits (a purchase under dispute) stay in the balance, but neither a
spend nor a staff adjustment may take them: both check `balance - frozen`.
A refund debit may, as it may go past zero.

References the outside world chooses (a client's spend, a staff grant) are
stored under their own prefix, so they can never take a reference the system
writes itself (`order-<id>`, a refund's) and so block a fulfilment or a refund.
"""

from __future__ import annotations

import functools
import uuid
from contextlib import nullcontext
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connections, transaction
from django.db.models import F
from django.utils import timezone

from credits.errors import CreditReferenceConflictError, InsufficientCreditsError
from credits.models import CreditAccount, CreditFreeze, CreditTransaction
from kernel.errors import InvalidInputError, NotFoundError
from kernel.rows import instance_from_row, saved

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
        if amount < 0 and new_balance < account.frozen and not allow_negative:
            raise _insufficient(account.balance, account.frozen, -amount)
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


def _ledger_names(alias: str) -> tuple[str, str, str]:
    """The account and entry tables, and every entry column, quoted for `alias`."""
    quote = connections[alias].ops.quote_name
    return (
        quote(CreditAccount._meta.db_table),
        quote(CreditTransaction._meta.db_table),
        ", ".join(quote(f.column) for f in CreditTransaction._meta.concrete_fields),
    )


@functools.cache
def _grant_sql(alias: str) -> str:
    """One statement that adds credits under the account's row lock.

    The upsert makes the account if the user has none, locks it and moves the
    balance; the `INSERT` appends the entry with the balance it returned, or
    nothing when the reference was written before (`_grant_once` then undoes the
    move, still under the lock).
    """
    account, entry, columns = _ledger_names(alias)
    return (
        f"WITH account AS (INSERT INTO {account} AS a (user_id, balance, updated_at) "  # noqa: S608 - names are ours
        f"VALUES (%(user_id)s, %(amount)s, %(now)s) ON CONFLICT (user_id) DO UPDATE "
        f"SET balance = a.balance + EXCLUDED.balance, updated_at = EXCLUDED.updated_at "
        f"RETURNING id, balance) "
        f"INSERT INTO {entry} (account_id, amount, kind, reference, balance_after, memo, "
        f"created_by_id, created_at) SELECT id, %(amount)s, %(kind)s, %(reference)s, balance, "
        f"%(memo)s, %(created_by_id)s, %(now)s FROM account "
        f"ON CONFLICT (account_id, reference) DO NOTHING RETURNING {columns}"
    )


def _grant_once(
    *, user_id: int, amount: int, kind: str, reference: str, memo: str, created_by_id: int | None
) -> CreditTransaction:
    """Add `amount` (> 0) credits in one statement; a repeated reference answers its entry.

    Inside the caller's transaction it needs no savepoint: no statement here can
    fail on the reference, and a conflicting repeat is undone before it raises.
    """
    connection = connections[CreditTransaction.objects.db]
    params = {
        "user_id": user_id,
        "amount": amount,
        "kind": str(kind),
        "reference": reference,
        "memo": memo[:MEMO_MAX_LENGTH],
        "created_by_id": created_by_id,
        "now": timezone.now(),
    }
    # In autocommit the undo below must commit with the statement it undoes.
    guard = (
        nullcontext() if connection.in_atomic_block else transaction.atomic(using=connection.alias)
    )
    with guard:
        with connection.cursor() as cursor:
            cursor.execute(_grant_sql(connection.alias), params)
            row = cursor.fetchone()
        if row is not None:
            entry = instance_from_row(CreditTransaction, row, alias=connection.alias)
            saved(entry, using=connection.alias, created=True)  # the audit trail listens
            return entry
        # The reference was written before: take the balance back, answer the first entry.
        CreditAccount.objects.filter(user_id=user_id).update(balance=F("balance") - amount)
        existing = CreditTransaction.objects.get(account__user_id=user_id, reference=reference)
        if existing.amount != amount or existing.kind != kind:
            raise CreditReferenceConflictError(
                f"Reference {reference!r} was already used for a different entry.",
                reference=reference,
                entry_id=existing.pk,
            )
        return existing


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
    `credits_debit_refund`, which may. On PostgreSQL adding credits is one
    statement (`_grant_sql`) and, inside the caller's transaction (a
    fulfilment), no savepoint.
    """
    if (
        isinstance(amount, int)
        and not isinstance(amount, bool)
        and 0 < amount <= LEDGER_ENTRY_MAX
        and 0 < len(reference or "") <= REFERENCE_MAX_LENGTH
    ):
        return _grant_once(
            user_id=user_id,
            amount=amount,
            kind=kind,
            reference=reference,
            memo=memo,
            created_by_id=created_by_id,
        )
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


_REFERENCE_UNIQUE = "credit_txn_reference_unique"


@functools.cache
def _spend_sql(alias: str) -> str:
    """One statement that spends under the account's row lock, or does nothing.

    The `UPDATE` takes the lock and moves the balance only if it covers the spend
    and the reference is unused; the `INSERT` appends the entry with the balance
    the `UPDATE` returned. In autocommit the lock lasts exactly this statement.
    A concurrent spend of the same reference that committed first makes the
    `INSERT` break the unique key, which undoes the whole statement.
    """
    account, entry, columns = _ledger_names(alias)
    return (
        f"WITH account AS (UPDATE {account} SET balance = balance - %(amount)s "  # noqa: S608 - names are ours
        f"WHERE user_id = %(user_id)s AND balance - frozen >= %(amount)s AND NOT EXISTS "
        f"(SELECT 1 FROM {entry} e WHERE e.account_id = {account}.id "
        f"AND e.reference = %(reference)s) RETURNING id, balance) "
        f"INSERT INTO {entry} (account_id, amount, kind, reference, balance_after, memo, "
        f"created_by_id, created_at) SELECT id, -%(amount)s, %(kind)s, %(reference)s, balance, "
        f"%(memo)s, NULL, %(now)s FROM account RETURNING {columns}"
    )


def _spend_once(*, user_id: int, amount: int, reference: str, memo: str) -> LedgerWrite | None:
    """Spend in one statement; None when nothing was written (see `_spend_refused`)."""
    connection = connections[CreditTransaction.objects.db]
    params = {
        "user_id": user_id,
        "amount": amount,
        "reference": reference,
        "kind": CreditTransaction.Kind.SPEND.value,
        "memo": memo[:MEMO_MAX_LENGTH],
        "now": timezone.now(),
    }
    # Inside a caller's transaction a savepoint keeps a unique-key failure from
    # breaking it; in autocommit the statement is its own transaction.
    guard = (
        transaction.atomic(using=connection.alias) if connection.in_atomic_block else nullcontext()
    )
    try:
        with guard, connection.cursor() as cursor:
            cursor.execute(_spend_sql(connection.alias), params)
            row = cursor.fetchone()
    except IntegrityError as exc:
        if _REFERENCE_UNIQUE not in str(exc):
            raise
        return None  # the same reference, spent concurrently: a replay now
    if row is None:
        return None
    entry = instance_from_row(CreditTransaction, row, alias=connection.alias)
    return LedgerWrite(entry=entry, created=True, balance=entry.balance_after)


def _spend_refused(*, user_id: int, amount: int, reference: str) -> LedgerWrite | None:
    """Why a spend wrote nothing: a replay (the first entry), a conflict, or too little.

    Answers None when the balance now covers the spend (credits arrived since), so
    the caller tries again.
    """
    account = CreditAccount.objects.filter(user_id=user_id).only("id", "balance", "frozen").first()
    balance = account.balance if account is not None else 0
    frozen = account.frozen if account is not None else 0
    existing = (
        CreditTransaction.objects.filter(account=account, reference=reference).first()
        if account is not None
        else None
    )
    if existing is not None:
        if existing.amount != -amount or existing.kind != CreditTransaction.Kind.SPEND:
            raise CreditReferenceConflictError(
                f"Reference {reference!r} was already used for a different entry.",
                reference=reference,
                entry_id=existing.pk,
            )
        return LedgerWrite(entry=existing, created=False, balance=balance)
    if balance - frozen >= amount:
        return None
    raise _insufficient(balance, frozen, amount)


def _insufficient(balance: int, frozen: int, required: int) -> InsufficientCreditsError:
    if frozen:
        return InsufficientCreditsError(
            f"The balance is {balance} credits, {frozen} of them frozen while a purchase "
            f"is disputed; {required} are needed.",
            balance=balance,
            frozen=frozen,
            required=required,
        )
    return InsufficientCreditsError(
        f"The balance is {balance} credits; {required} are needed.",
        balance=balance,
        required=required,
    )


def credits_spend_or_replay(
    *, user_id: int, amount: int, reference: str, memo: str = ""
) -> LedgerWrite:
    """Spend `amount` credits once per client `reference`; a repeat returns the first entry.

    The reference is stored as `spend:<reference>`. Refuses with
    `InsufficientCreditsError` rather than take the balance below zero (an account
    in debt cannot spend, and no account means no credits), and with
    `CreditReferenceConflictError` when the reference was already spent with
    another amount.

    On PostgreSQL a spend is one statement (`_spend_sql`): the account's row is
    locked for that statement only, so spends on one busy account follow each
    other as fast as the database can run it. Elsewhere it takes the general path.
    """
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidInputError("A spend is a positive whole number of credits.", amount=amount)
    if amount > LEDGER_ENTRY_MAX:
        raise InvalidInputError(
            f"One entry moves at most {LEDGER_ENTRY_MAX} credits.", amount=amount
        )
    if not reference or len(reference) > SPEND_REFERENCE_MAX_LENGTH:
        raise InvalidInputError(
            f"A spend reference is 1 to {SPEND_REFERENCE_MAX_LENGTH} characters.",
            field="reference",
        )
    reference = SPEND_REFERENCE_PREFIX + reference
    for _ in range(3):
        written = _spend_once(user_id=user_id, amount=amount, reference=reference, memo=memo)
        if written is None:
            written = _spend_refused(user_id=user_id, amount=amount, reference=reference)
        if written is not None:
            return written
    # The balance kept moving between the attempt and the look (grants racing a spend).
    raise InsufficientCreditsError(
        "The balance changed while spending; try again.", required=amount
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


def credits_freeze(*, user_id: int, amount: int, reference: str, memo: str = "") -> CreditFreeze:
    """Hold up to `amount` credits so no spend can take them, once per `reference`.

    It holds what is available (the balance less what is frozen already), at
    most `amount`: credits already spent cannot be held, and a later refund
    debit records them as a debt. Nothing is written to the ledger. A repeat
    answers the first freeze, released or not.
    """
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidInputError("A freeze is a positive whole number of credits.", amount=amount)
    if not reference or len(reference) > REFERENCE_MAX_LENGTH:
        raise InvalidInputError(
            f"A freeze needs a reference of 1 to {REFERENCE_MAX_LENGTH} characters."
        )
    with transaction.atomic():
        credit_account_get_or_create(user_id=user_id)
        account = CreditAccount.objects.select_for_update().get(user_id=user_id)
        existing = CreditFreeze.objects.filter(account=account, reference=reference).first()
        if existing is not None:
            return existing
        held = min(amount, account.available)
        freeze = CreditFreeze.objects.create(
            account=account,
            reference=reference,
            requested=amount,
            amount=held,
            memo=memo[:MEMO_MAX_LENGTH],
        )
        if held:
            CreditAccount.objects.filter(pk=account.pk).update(frozen=F("frozen") + held)
        return freeze


def credits_unfreeze(*, user_id: int, reference: str) -> int:
    """Release the freeze made under `reference`; answers the credits released (0 on a repeat
    or when there was none)."""
    with transaction.atomic():
        account = CreditAccount.objects.select_for_update().filter(user_id=user_id).first()
        if account is None:
            return 0
        freeze = (
            CreditFreeze.objects.select_for_update()
            .filter(account=account, reference=reference, released_at__isnull=True)
            .first()
        )
        if freeze is None:
            return 0
        freeze.released_at = timezone.now()
        freeze.save(update_fields=["released_at"])
        if freeze.amount:
            CreditAccount.objects.filter(pk=account.pk).update(frozen=F("frozen") - freeze.amount)
        return freeze.amount


RETURN_REFERENCE_PREFIX = "return:"


def credits_spend_return(
    *,
    user_id: int,
    spend_reference: str,
    amount: int | None = None,
    reference: str,
    memo: str = "",
) -> LedgerWrite:
    """Give back credits a spend took (an order paid with credits was cancelled or
    refunded): one positive `refund` entry, once per `reference`.

    `spend_reference` is the spend's reference as given to `credits_spend_or_replay`.
    What comes back is capped at what the spend took less what earlier returns of it
    gave back; `amount` None returns all of that. A repeat of `reference` answers
    the first entry. Refuses (422) when the spend does not exist or nothing of it is
    left to return.
    """
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)):
        raise InvalidInputError("A return is a whole number of credits.", amount=amount)
    if amount is not None and amount <= 0:
        raise InvalidInputError("A return is a positive number of credits.", amount=amount)
    spent_as = (
        spend_reference
        if spend_reference.startswith(SPEND_REFERENCE_PREFIX)
        else SPEND_REFERENCE_PREFIX + spend_reference
    )
    family = f"{RETURN_REFERENCE_PREFIX}{spent_as}:"
    stored = family + reference
    if len(stored) > REFERENCE_MAX_LENGTH:
        raise InvalidInputError(
            f"A return's references are at most {REFERENCE_MAX_LENGTH} characters together."
        )
    with transaction.atomic():
        account = CreditAccount.objects.select_for_update().filter(user_id=user_id).first()
        spend = (
            CreditTransaction.objects.filter(
                account=account, reference=spent_as, kind=CreditTransaction.Kind.SPEND
            ).first()
            if account is not None
            else None
        )
        if spend is None:
            raise InvalidInputError(
                f"No spend {spend_reference!r} to return credits of.", reference=spend_reference
            )
        existing = CreditTransaction.objects.filter(account=account, reference=stored).first()
        if existing is not None:
            return LedgerWrite(entry=existing, created=False, balance=account.balance)
        returned = sum(
            CreditTransaction.objects.filter(
                account=account, reference__startswith=family
            ).values_list("amount", flat=True)
        )
        left = -spend.amount - returned
        give = left if amount is None else min(amount, left)
        if give <= 0:
            raise InvalidInputError(
                f"Nothing of spend {spend_reference!r} is left to return.",
                reference=spend_reference,
                returned=returned,
            )
        return _ledger_append(
            user_id=user_id,
            amount=give,
            kind=CreditTransaction.Kind.REFUND,
            reference=stored,
            memo=memo,
            allow_negative=True,
        )
