"""Writes to the credit ledger and its lots.

The rule: every change takes the account's row lock, appends one entry, moves
the balance by the same amount and keeps the lots, in one transaction. Credits
that come in become a lot (`credits_grant`); credits that go out are drawn from
the lots in the draw order (`lot_draw_key`) and each draw is recorded. The two busiest writes,
a grant and a spend, are one statement each (`credits.sql`); the rest take the
lock through the ORM here. A repeated `reference` returns the first entry
instead of writing a second one, so retries and duplicate deliveries never count
twice.

Lots, and what the balance means:
- the lots' `remaining` add up to the balance, or to zero while it is negative
  (a debt, which only a refund debit makes, and which credits coming in repay
  before they fill their lot);
- a spend or a staff adjustment draws the soonest expiry first (no expiry
  last), promotional before paid on a tie, then the oldest; a refund debit
  draws the refunded order's own lots first, then the same order, and records
  what it could not draw as a debt;
- a lot's credits can be spent until the expiry sweep (`credits_expire_due`,
  scheduled) takes what is left of it past `expires_at`, with one entry per
  lot;
- a return (`credits_spend_return`) gives a spend's credits back to the lots
  it drew them from, the last drawn first; a lot that expired meanwhile takes
  them back too, and the next sweep expires them again.

Frozen credits (a purchase under dispute) stay in the balance, but neither a
spend nor a staff adjustment may take them: both check `balance - frozen`.
A refund debit and the expiry sweep may.

References the outside world chooses (a client's spend, a staff grant, a
return) are stored under their own prefix, so they can never take a reference
the system writes itself (`order-<id>`, a refund's) and so block a fulfilment
or a refund.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connections, transaction
from django.db.models import F, Sum
from django.utils import timezone

from credits import sql
from credits.errors import CreditReferenceConflictError, InsufficientCreditsError
from credits.models import CreditAccount, CreditDraw, CreditFreeze, CreditLot, CreditTransaction
from kernel.errors import InvalidInputError, NotFoundError

# One entry moves at most this many credits: larger is a typo, and the cap keeps
# any balance far from the 64-bit column's limit.
LEDGER_ENTRY_MAX = 10**9
REFERENCE_MAX_LENGTH = CreditTransaction._meta.get_field("reference").max_length
MEMO_MAX_LENGTH = CreditTransaction._meta.get_field("memo").max_length
SPEND_REFERENCE_PREFIX = "spend:"
GRANT_REFERENCE_PREFIX = "grant:"
RETURN_REFERENCE_PREFIX = "return:"
SPEND_REFERENCE_MAX_LENGTH = REFERENCE_MAX_LENGTH - len(SPEND_REFERENCE_PREFIX)
GRANT_REFERENCE_MAX_LENGTH = REFERENCE_MAX_LENGTH - len(GRANT_REFERENCE_PREFIX)
RETURN_REFERENCE_MAX_LENGTH = REFERENCE_MAX_LENGTH - len(RETURN_REFERENCE_PREFIX)
CURRENCY_MAX_LENGTH = CreditLot._meta.get_field("currency").max_length

# Where the credits of an entry that brings them in come from.
_LOT_SOURCE_BY_KIND = {
    CreditTransaction.Kind.PURCHASE: CreditLot.Source.PURCHASE,
    CreditTransaction.Kind.SUBSCRIPTION: CreditLot.Source.SUBSCRIPTION,
    CreditTransaction.Kind.REFUND: CreditLot.Source.REFUND,
}


def lot_draw_key(lot: CreditLot) -> tuple:
    """The draw order as a sort key, the same as the debit statement's `ORDER BY`:
    the soonest expiry first (none last), promotional before paid, then the oldest."""
    return (
        lot.expires_at is None,
        lot.expires_at or datetime.min,
        lot.category != CreditLot.Category.PROMOTIONAL,
        lot.pk,
    )


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


def _account_locked(user_id: int) -> CreditAccount:
    credit_account_get_or_create(user_id=user_id)
    return CreditAccount.objects.select_for_update().get(user_id=user_id)


def _conflict(reference: str, entry: CreditTransaction) -> CreditReferenceConflictError:
    return CreditReferenceConflictError(
        f"Reference {reference!r} was already used for a different entry.",
        reference=reference,
        entry_id=entry.pk,
    )


def _existing_entry(
    account: CreditAccount, *, reference: str, amount: int, kind: str
) -> CreditTransaction | None:
    entry = CreditTransaction.objects.filter(account=account, reference=reference).first()
    if entry is not None and (entry.amount != amount or entry.kind != kind):
        raise _conflict(reference, entry)
    return entry


def _amount_checked(amount: object, *, what: str = "A credit amount") -> int:
    """A whole number of credits, not zero, within what one entry may move."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
        raise InvalidInputError(f"{what} is a non-zero whole number.", amount=amount)
    if abs(amount) > LEDGER_ENTRY_MAX:
        raise InvalidInputError(
            f"One entry moves at most {LEDGER_ENTRY_MAX} credits.", amount=amount
        )
    return amount


def _reference_checked(reference: str | None, *, max_length: int, what: str) -> str:
    if not reference or len(reference) > max_length:
        raise InvalidInputError(
            f"{what} needs a reference of 1 to {max_length} characters.", field="reference"
        )
    return reference


def _entry_append(
    account: CreditAccount,
    *,
    amount: int,
    kind: str,
    reference: str,
    memo: str,
    draws: Iterable[tuple[CreditLot, int]] = (),
    created_by_id: int | None = None,
    returns: CreditTransaction | None = None,
) -> LedgerWrite:
    """Under the account's lock: append the entry, record and apply its draws
    (credits taken from a lot > 0, given back < 0), move the balance."""
    new_balance = account.balance + amount
    entry = CreditTransaction.objects.create(
        account=account,
        amount=amount,
        kind=kind,
        reference=reference,
        balance_after=new_balance,
        memo=memo[:MEMO_MAX_LENGTH],
        created_by_id=created_by_id,
        returns=returns,
    )
    for lot, taken in draws:
        CreditDraw.objects.create(entry=entry, lot=lot, amount=taken)
        CreditLot.objects.filter(pk=lot.pk).update(remaining=F("remaining") - taken)
    CreditAccount.objects.filter(pk=account.pk).update(balance=F("balance") + amount)
    account.balance = new_balance
    return LedgerWrite(entry=entry, created=True, balance=new_balance)


def _draws_planned(lots: Iterable[CreditLot], amount: int) -> list[tuple[CreditLot, int]]:
    """Take up to `amount` from `lots` in their order: (lot, credits taken) per lot drawn."""
    planned = []
    for lot in lots:
        if amount <= 0:
            break
        taken = min(lot.remaining, amount)
        if taken > 0:
            planned.append((lot, taken))
            amount -= taken
    return planned


# --- credits in ------------------------------------------------------------------------


def _lot_terms_checked(
    *, category: str, expires_at: datetime | None, cost_basis: int | None, currency: str
) -> None:
    if category not in CreditLot.Category.values:
        raise InvalidInputError(
            f"A lot's category is one of {', '.join(CreditLot.Category.values)}.",
            field="category",
        )
    if expires_at is not None and timezone.is_naive(expires_at):
        raise InvalidInputError("An expiry is a time with its time zone.", field="expires_at")
    if cost_basis is not None and (
        isinstance(cost_basis, bool) or not isinstance(cost_basis, int) or cost_basis < 0
    ):
        raise InvalidInputError("A cost basis is a whole number of minor units.")
    if len(currency) > CURRENCY_MAX_LENGTH:
        raise InvalidInputError("A currency is a three-letter code.", field="currency")


def _grant(
    *,
    user_id: int,
    amount: int,
    kind: str,
    reference: str,
    memo: str,
    created_by_id: int | None,
    source: str,
    source_order_id: int | None,
    category: str,
    expires_at: datetime | None,
    cost_basis: int | None,
    currency: str,
    plan_id: int | None = None,
) -> LedgerWrite:
    """Add `amount` (> 0) credits as one lot, in one statement; a repeated reference
    answers its entry.

    Inside the caller's transaction it needs no savepoint: no statement here can
    fail on the reference, and a conflicting repeat is undone before it raises.
    """
    connection = connections[CreditTransaction.objects.db]
    # In autocommit the undo below must commit with the statement it undoes.
    guard = (
        nullcontext() if connection.in_atomic_block else transaction.atomic(using=connection.alias)
    )
    with guard:
        written = sql.grant_write(
            alias=connection.alias,
            user_id=user_id,
            amount=amount,
            kind=kind,
            reference=reference,
            memo=memo[:MEMO_MAX_LENGTH],
            created_by_id=created_by_id,
            now=timezone.now(),
            source=source,
            source_order_id=source_order_id,
            plan_id=plan_id,
            category=category,
            expires_at=expires_at,
            cost_basis=cost_basis,
            currency=currency.lower(),
        )
        if written is not None:
            entry = written.entry
            return LedgerWrite(entry=entry, created=True, balance=entry.balance_after)
        # The reference was written before: take the balance back, answer the first entry.
        CreditAccount.objects.filter(user_id=user_id).update(balance=F("balance") - amount)
        existing = CreditTransaction.objects.get(account__user_id=user_id, reference=reference)
        if existing.amount != amount or existing.kind != kind:
            raise _conflict(reference, existing)
        balance = CreditAccount.objects.values_list("balance", flat=True).get(user_id=user_id)
        return LedgerWrite(entry=existing, created=False, balance=balance)


def credits_grant(
    *,
    user_id: int,
    amount: int,
    reference: str,
    kind: str = CreditTransaction.Kind.GRANT,
    memo: str = "",
    created_by_id: int | None = None,
    category: str = CreditLot.Category.PAID,
    expires_at: datetime | None = None,
    source_order_id: int | None = None,
    cost_basis: int | None = None,
    currency: str = "",
    plan_id: int | None = None,
) -> CreditTransaction:
    """Add credits (a purchase, a grant, a subscription cycle, a refund to credits) as one
    lot, or adjust with a negative amount.

    `reference` is stored as given: callers here are the system (`order-<id>`).
    The lot is `category` (paid by default), expires at `expires_at` (never by
    default), and remembers the order it came from and, when it was bought,
    what was paid for it (`cost_basis` minor units of `currency`), and the
    subscription plan whose cycle it is (`plan_id`). A negative
    adjustment draws from the lots like a spend and may not take the balance
    below zero; refund debits use `credits_debit_refund`, which may. Inside the
    caller's transaction (a fulfilment) adding credits takes no savepoint.
    """
    if isinstance(amount, int) and not isinstance(amount, bool) and amount < 0:
        return _debit(
            user_id=user_id,
            amount=-_amount_checked(amount),
            kind=kind,
            reference=_reference_checked(
                reference, max_length=REFERENCE_MAX_LENGTH, what="A ledger entry"
            ),
            memo=memo,
            created_by_id=created_by_id,
        ).entry
    _amount_checked(amount)
    _reference_checked(reference, max_length=REFERENCE_MAX_LENGTH, what="A ledger entry")
    _lot_terms_checked(
        category=category, expires_at=expires_at, cost_basis=cost_basis, currency=currency
    )
    return _grant(
        user_id=user_id,
        amount=amount,
        kind=kind,
        reference=reference,
        memo=memo,
        created_by_id=created_by_id,
        source=_LOT_SOURCE_BY_KIND.get(kind, CreditLot.Source.GRANT),
        source_order_id=source_order_id,
        category=category,
        expires_at=expires_at,
        cost_basis=cost_basis,
        currency=currency,
        plan_id=plan_id,
    ).entry


def credits_grant_by_staff(
    *,
    user_id: int,
    amount: int,
    memo: str,
    created_by_id: int,
    reference: str | None = None,
    category: str = CreditLot.Category.PROMOTIONAL,
    expires_at: datetime | None = None,
) -> LedgerWrite:
    """A staff member grants (amount > 0) or takes back (amount < 0, an adjustment) credits.

    A grant is a lot of `category` (promotional unless said otherwise) that
    expires at `expires_at` (a time to come) or never. An adjustment draws from
    the lots like a spend and may not take the balance below zero. The reference
    is namespaced (`grant:<reference>`, or `grant:<uuid>` when none is given).
    Raises `NotFoundError` for an unknown user.
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
    _amount_checked(amount)
    reference = GRANT_REFERENCE_PREFIX + reference
    if amount < 0:
        if expires_at is not None:
            raise InvalidInputError("Only a grant has an expiry.", field="expires_at")
        return _debit(
            user_id=user_id,
            amount=-amount,
            kind=CreditTransaction.Kind.ADJUSTMENT,
            reference=reference,
            memo=memo,
            created_by_id=created_by_id,
        )
    _lot_terms_checked(category=category, expires_at=expires_at, cost_basis=None, currency="")
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInputError("A grant's expiry is a time to come.", field="expires_at")
    return _grant(
        user_id=user_id,
        amount=amount,
        kind=CreditTransaction.Kind.GRANT,
        reference=reference,
        memo=memo,
        created_by_id=created_by_id,
        source=CreditLot.Source.STAFF,
        source_order_id=None,
        category=category,
        expires_at=expires_at,
        cost_basis=None,
        currency="",
    )


# --- credits out -----------------------------------------------------------------------


def _debit_once(
    *, user_id: int, amount: int, kind: str, reference: str, memo: str, created_by_id: int | None
) -> LedgerWrite | None:
    """Debit in one statement; None when nothing was written (see `_debit_refused`),
    raises `_LotsShort` when the lots seen fell short (a grant raced it)."""
    connection = connections[CreditTransaction.objects.db]
    # Inside a caller's transaction a savepoint keeps a refused statement from
    # breaking it; in autocommit the statement is its own transaction.
    guard = (
        transaction.atomic(using=connection.alias) if connection.in_atomic_block else nullcontext()
    )
    try:
        with guard:
            written = sql.debit_write(
                alias=connection.alias,
                user_id=user_id,
                amount=amount,
                kind=kind,
                reference=reference,
                memo=memo[:MEMO_MAX_LENGTH],
                created_by_id=created_by_id,
                now=timezone.now(),
            )
    except IntegrityError as exc:
        if sql.REFERENCE_UNIQUE_CONSTRAINT in str(exc):
            return None  # the same reference, written concurrently: a replay now
        if sql.LOTS_SHORT_CONSTRAINT in str(exc):
            raise _LotsShort from None
        raise
    if written is None:
        return None
    entry = written.entry
    return LedgerWrite(entry=entry, created=True, balance=entry.balance_after)


class _LotsShort(Exception):
    """The debit statement saw fewer lots than the balance it locked: run it again."""


def _debit_refused(*, user_id: int, amount: int, kind: str, reference: str) -> LedgerWrite | None:
    """Why a debit wrote nothing: a replay (the first entry), a conflict, or too little.

    Answers None when the balance now covers the debit (credits arrived since), so
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
        if existing.amount != -amount or existing.kind != kind:
            raise _conflict(reference, existing)
        return LedgerWrite(entry=existing, created=False, balance=balance)
    if balance - frozen >= amount:
        return None
    raise _insufficient(balance, frozen, amount)


def _debit(
    *, user_id: int, amount: int, kind: str, reference: str, memo: str, created_by_id: int | None
) -> LedgerWrite:
    """Take `amount` (> 0) from what is available, drawing the lots in their order."""
    for _ in range(3):
        try:
            written = _debit_once(
                user_id=user_id,
                amount=amount,
                kind=kind,
                reference=reference,
                memo=memo,
                created_by_id=created_by_id,
            )
        except _LotsShort:
            continue
        if written is None:
            written = _debit_refused(user_id=user_id, amount=amount, kind=kind, reference=reference)
        if written is not None:
            return written
    # The balance kept moving between the attempt and the look (grants racing a spend).
    raise InsufficientCreditsError(
        "The balance changed while spending; try again.", required=amount
    )


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

    The reference is stored as `spend:<reference>`. The credits are drawn from
    the lots in the draw order (`lot_draw_key`). Refuses with `InsufficientCreditsError` rather
    than take the balance below zero (an account in debt cannot spend, and no
    account means no credits), and with `CreditReferenceConflictError` when the
    reference was already spent with another amount.

    A spend is one statement (`credits.sql`): the account's row is locked for
    that statement only, so spends on one busy account follow each other as
    fast as the database can run it.
    """
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidInputError("A spend is a positive whole number of credits.", amount=amount)
    _amount_checked(amount)
    if not reference or len(reference) > SPEND_REFERENCE_MAX_LENGTH:
        raise InvalidInputError(
            f"A spend reference is 1 to {SPEND_REFERENCE_MAX_LENGTH} characters.",
            field="reference",
        )
    return _debit(
        user_id=user_id,
        amount=amount,
        kind=CreditTransaction.Kind.SPEND,
        reference=SPEND_REFERENCE_PREFIX + reference,
        memo=memo,
        created_by_id=None,
    )


def credits_spend(
    *, user_id: int, amount: int, reference: str, memo: str = ""
) -> CreditTransaction:
    """Spend `amount` credits; refuses (409) rather than take the balance below zero."""
    return credits_spend_or_replay(
        user_id=user_id, amount=amount, reference=reference, memo=memo
    ).entry


def credits_debit_refund(
    *,
    user_id: int,
    amount: int,
    reference: str,
    memo: str = "",
    source_order_id: int | None = None,
) -> CreditTransaction:
    """Take back `amount` (> 0) credits for a refund, even past zero.

    What is left of the refunded order's own lots (`source_order_id`) goes
    first, then the other lots in the draw order (`lot_draw_key`). The books must show every
    refund, so what no lot holds any more (it was spent) takes the balance
    negative: the account is then in debt and cannot spend until it is topped
    up. `reference` is stored as given (the caller derives it from the Stripe
    refund id).
    """
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidInputError("A refund debit is a positive whole number.", amount=amount)
    _amount_checked(amount)
    _reference_checked(reference, max_length=REFERENCE_MAX_LENGTH, what="A refund debit")
    with transaction.atomic():
        account = _account_locked(user_id)
        kind = CreditTransaction.Kind.REFUND
        existing = _existing_entry(account, reference=reference, amount=-amount, kind=kind)
        if existing is not None:
            return existing
        lots = CreditLot.objects.select_for_update().filter(account=account, remaining__gt=0)

        def order_first(lot: CreditLot) -> tuple:
            own = source_order_id is not None and lot.source_order_id == source_order_id
            return (not own, *lot_draw_key(lot))

        return _entry_append(
            account,
            amount=-amount,
            kind=kind,
            reference=reference,
            memo=memo,
            draws=_draws_planned(sorted(lots, key=order_first), amount),
        ).entry


# --- credits given back and expired ----------------------------------------------------


def _spend_found(account: CreditAccount, spend_reference: str) -> CreditTransaction:
    spends = CreditTransaction.objects.filter(account=account, kind=CreditTransaction.Kind.SPEND)
    spend = spends.filter(reference=SPEND_REFERENCE_PREFIX + spend_reference).first()
    if spend is None and spend_reference.startswith(SPEND_REFERENCE_PREFIX):
        spend = spends.filter(reference=spend_reference).first()
    if spend is None:
        raise NotFoundError(
            f"No spend {spend_reference!r} on this account.", spend_reference=spend_reference
        )
    return spend


def credits_spend_return(
    *,
    user_id: int,
    spend_reference: str,
    amount: int | None = None,
    reference: str,
    memo: str = "",
) -> LedgerWrite:
    """Give back `amount` credits of an earlier spend (all it still holds when None).

    `spend_reference` is the spend's reference as it was given to
    `credits_spend_or_replay` (or as stored, `spend:<reference>`). The credits
    go back to the lots the spend drew them from, the last drawn first, each at
    most what the spend took from it; while the account is in debt they repay
    the debt first. A lot that expired meanwhile takes them back like any
    other, and the next expiry sweep expires them again.

    Once per `reference` (stored as `return:<reference>`): a repeat answers the
    first entry. All returns of a spend together never give back more than it
    took: asking more is `InvalidInputError` (422), an unknown spend
    `NotFoundError` (404).
    """
    if amount is not None:
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise InvalidInputError("A return is a positive whole number.", amount=amount)
        _amount_checked(amount)
    _reference_checked(reference, max_length=RETURN_REFERENCE_MAX_LENGTH, what="A return")
    if not spend_reference:
        raise InvalidInputError("A return names the spend it gives back.", field="spend_reference")
    stored = RETURN_REFERENCE_PREFIX + reference
    with transaction.atomic():
        account = CreditAccount.objects.select_for_update().filter(user_id=user_id).first()
        if account is None:
            raise NotFoundError(
                f"No spend {spend_reference!r} on this account.", spend_reference=spend_reference
            )
        spend = _spend_found(account, spend_reference)
        existing = CreditTransaction.objects.filter(account=account, reference=stored).first()
        if existing is not None:
            if existing.returns_id != spend.pk or (
                amount is not None and existing.amount != amount
            ):
                raise _conflict(stored, existing)
            return LedgerWrite(entry=existing, created=False, balance=account.balance)
        returned = spend.returned_by.aggregate(s=Sum("amount"))["s"] or 0
        left = -spend.amount - returned
        give = left if amount is None else amount
        if give <= 0 or give > left:
            raise InvalidInputError(
                f"The spend has {left} credits left to give back; {give} were asked.",
                spend_reference=spend_reference,
                returnable=left,
                requested=give,
            )
        # While in debt, the credits first repay it: the lots take only what is left.
        to_lots = max(account.balance + give, 0) - max(account.balance, 0)
        return _entry_append(
            account,
            amount=give,
            kind=CreditTransaction.Kind.RETURN,
            reference=stored,
            memo=memo,
            draws=[(lot, -n) for lot, n in _return_planned(spend, to_lots)],
            returns=spend,
        )


def _return_planned(spend: CreditTransaction, amount: int) -> list[tuple[CreditLot, int]]:
    """Up to `amount` credits back to the lots `spend` drew, the last drawn first, each
    at most what the spend took from it less what earlier returns gave it back."""
    given_back: dict[int, int] = {}
    for lot_id, n in CreditDraw.objects.filter(entry__returns=spend).values_list(
        "lot_id", "amount"
    ):
        given_back[lot_id] = given_back.get(lot_id, 0) - n
    draws = spend.draws.select_related("lot").order_by("-id")
    lots = CreditLot.objects.select_for_update().filter(pk__in=[d.lot_id for d in draws])
    locked = {lot.pk: lot for lot in lots}
    planned = []
    for draw in draws:
        if amount <= 0:
            break
        owed = draw.amount - given_back.pop(draw.lot_id, 0)
        n = min(owed, amount)
        if n > 0:
            planned.append((locked[draw.lot_id], n))
            amount -= n
    return planned


def credit_lot_expire(*, lot_id: int, now: datetime | None = None) -> CreditTransaction | None:
    """Expire what is left of one lot past its `expires_at`: one `expiry` entry, or None
    when nothing is left or it is not due. Safe to run twice or alongside spends:
    it reads the lot under the account's lock."""
    now = now or timezone.now()
    account_id = CreditLot.objects.filter(pk=lot_id).values_list("account_id", flat=True).first()
    if account_id is None:
        raise NotFoundError(f"No credit lot {lot_id}.", lot_id=lot_id)
    with transaction.atomic():
        account = CreditAccount.objects.select_for_update().get(pk=account_id)
        lot = CreditLot.objects.select_for_update().get(pk=lot_id)
        if lot.remaining <= 0 or lot.expires_at is None or lot.expires_at > now:
            return None
        # A lot expires again after a return gave it credits back: one entry each time.
        times = CreditDraw.objects.filter(lot=lot, entry__kind=CreditTransaction.Kind.EXPIRY)
        return _entry_append(
            account,
            amount=-lot.remaining,
            kind=CreditTransaction.Kind.EXPIRY,
            reference=f"expiry:lot-{lot.pk}:{times.count() + 1}",
            memo=f"Credits of lot {lot.pk} expired",
            draws=[(lot, lot.remaining)],
        ).entry


def credits_rollover_cap(
    *, user_id: int, plan_id: int, cap: int, reference: str, keep_lot_id: int | None = None
) -> CreditTransaction | None:
    """Expire what the plan's earlier cycles left above `cap` credits, at a new cycle's start.

    The lots of plan `plan_id` other than `keep_lot_id` (the new cycle's) keep
    at most `cap` credits together: the rest is taken in one `expiry` entry,
    from those lots in the draw order. Once per `reference` (a repeat answers
    the first entry); None when they hold no more than `cap`.
    """
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
        raise InvalidInputError("A roll-over cap is a whole number of credits.", cap=cap)
    _reference_checked(reference, max_length=REFERENCE_MAX_LENGTH, what="A roll-over")
    with transaction.atomic():
        account = CreditAccount.objects.select_for_update().filter(user_id=user_id).first()
        if account is None:
            return None
        existing = CreditTransaction.objects.filter(account=account, reference=reference).first()
        if existing is not None:
            if existing.kind != CreditTransaction.Kind.EXPIRY:
                raise _conflict(reference, existing)
            return existing
        lots = sorted(
            CreditLot.objects.select_for_update()
            .filter(account=account, plan_id=plan_id, remaining__gt=0)
            .exclude(pk=keep_lot_id),
            key=lot_draw_key,
        )
        over = sum(lot.remaining for lot in lots) - cap
        if over <= 0:
            return None
        return _entry_append(
            account,
            amount=-over,
            kind=CreditTransaction.Kind.EXPIRY,
            reference=reference,
            memo=f"Credits of earlier cycles above the plan's roll-over cap of {cap}",
            draws=_draws_planned(lots, over),
        ).entry


def credits_expire_due(
    *, now: datetime | None = None, progress: Callable[[int, int | None], None] | None = None
) -> int:
    """The expiry sweep: expire every lot with credits left past its `expires_at`.

    Answers the number of lots expired. Idempotent, and safe alongside spends and
    another sweep: each lot is expired under its account's lock (`credit_lot_expire`).
    """
    now = now or timezone.now()
    due = list(
        CreditLot.objects.filter(remaining__gt=0, expires_at__lte=now)
        .order_by("expires_at", "id")
        .values_list("id", flat=True)
    )
    expired = 0
    for done, lot_id in enumerate(due, start=1):
        if credit_lot_expire(lot_id=lot_id, now=now) is not None:
            expired += 1
        if progress is not None:
            progress(done, len(due))
    return expired


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
