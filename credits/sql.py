"""The credit ledger's hand-written SQL: a grant and a debit, each one statement.

A client's spend and a purchase's credits are the busiest writes of the ledger,
and an account many clients spend from is as fast as the time its row lock is
held. So each is one statement, compiled once per database alias, that takes the
account's lock, moves the balance, appends the entry and keeps the lots, instead
of the five to eight statements the ORM would send one by one. Everything else
(refund debits, returns, expiry, freezes) goes through the ORM in
`credits.services`, under the same lock.

The rule for model signals: every row these statements insert (an entry, a lot,
a draw) is announced with `post_save` exactly as `create()` would announce it
(the audit trail listens for staff entries); what they update (an account's
balance, a lot's `remaining`) is announced by nothing, as `QuerySet.update()`
announces nothing. Callers never see a raw row: they get model instances.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime

from django.db import connections

from credits.models import CreditAccount, CreditDraw, CreditLot, CreditTransaction
from kernel.rows import instance_from_row, saved

# The order a debit draws lots in: the soonest expiry first (no expiry last),
# promotional before paid when they expire together, then the oldest first.
LOT_DRAW_ORDER_SQL = "expires_at ASC NULLS LAST, category <> 'promotional', id"

# A debit whose lots fall short of what the balance promised writes a zero
# entry, which this constraint refuses, undoing the whole statement.
LOTS_SHORT_CONSTRAINT = "credit_txn_nonzero"
REFERENCE_UNIQUE_CONSTRAINT = "credit_txn_reference_unique"


@dataclass(frozen=True)
class GrantRow:
    entry: CreditTransaction
    lot: CreditLot


@dataclass(frozen=True)
class DebitRow:
    entry: CreditTransaction
    draws: list[CreditDraw]


def _names(alias: str) -> dict[str, str]:
    quote = connections[alias].ops.quote_name

    def columns(model) -> str:
        return ", ".join(quote(f.column) for f in model._meta.concrete_fields)

    return {
        "account": quote(CreditAccount._meta.db_table),
        "entry": quote(CreditTransaction._meta.db_table),
        "lot": quote(CreditLot._meta.db_table),
        "draw": quote(CreditDraw._meta.db_table),
        "entry_columns": columns(CreditTransaction),
        "lot_columns": columns(CreditLot),
    }


def _prefixed(columns: str, prefix: str) -> str:
    return ", ".join(f"{prefix}.{c.strip()}" for c in columns.split(","))


@functools.cache
def _grant_sql(alias: str) -> str:
    """Add credits: make or lock the account, move its balance, append the entry and its lot.

    The upsert makes the account if the user has none, locks it and moves the
    balance; the entry is appended with the balance it returned, or nothing when
    the reference was written before (the caller then undoes the move, still
    under the lock). The lot holds what the credits leave after repaying a debt.
    """
    n = _names(alias)
    return (
        f"WITH account AS (INSERT INTO {n['account']} AS a (user_id, balance, updated_at) "  # noqa: S608 - names are ours
        f"VALUES (%(user_id)s, %(amount)s, %(now)s) ON CONFLICT (user_id) DO UPDATE "
        f"SET balance = a.balance + EXCLUDED.balance, updated_at = EXCLUDED.updated_at "
        f"RETURNING id, balance), "
        f"entry AS (INSERT INTO {n['entry']} (account_id, amount, kind, reference, "
        f"balance_after, memo, created_by_id, created_at) SELECT id, %(amount)s, %(kind)s, "
        f"%(reference)s, balance, %(memo)s, %(created_by_id)s, %(now)s FROM account "
        f"ON CONFLICT (account_id, reference) DO NOTHING RETURNING {n['entry_columns']}), "
        f"lot AS (INSERT INTO {n['lot']} (account_id, entry_id, source, source_order_id, "
        f"plan_id, category, expires_at, amount, remaining, cost_basis, currency, created_at) "
        f"SELECT account_id, id, %(source)s, %(source_order_id)s, %(plan_id)s, %(category)s, "
        f"%(expires_at)s, amount, LEAST(amount, GREATEST(balance_after, 0)), %(cost_basis)s, "
        f"%(currency)s, created_at FROM entry RETURNING {n['lot_columns']}) "
        f"SELECT {_prefixed(n['entry_columns'], 'entry')}, {_prefixed(n['lot_columns'], 'lot')} "
        f"FROM entry JOIN lot ON lot.entry_id = entry.id"
    )


def grant_write(
    *,
    alias: str,
    user_id: int,
    amount: int,
    kind: str,
    reference: str,
    memo: str,
    created_by_id: int | None,
    now: datetime,
    source: str,
    source_order_id: int | None,
    plan_id: int | None,
    category: str,
    expires_at: datetime | None,
    cost_basis: int | None,
    currency: str,
) -> GrantRow | None:
    """Run the grant statement; None when the reference was written before (the
    balance has then moved anyway: the caller takes it back)."""
    params = {
        "user_id": user_id,
        "amount": amount,
        "kind": str(kind),
        "reference": reference,
        "memo": memo,
        "created_by_id": created_by_id,
        "now": now,
        "source": str(source),
        "source_order_id": source_order_id,
        "plan_id": plan_id,
        "category": str(category),
        "expires_at": expires_at,
        "cost_basis": cost_basis,
        "currency": currency,
    }
    with connections[alias].cursor() as cursor:
        cursor.execute(_grant_sql(alias), params)
        row = cursor.fetchone()
    if row is None:
        return None
    width = len(CreditTransaction._meta.concrete_fields)
    entry = instance_from_row(CreditTransaction, row[:width], alias=alias)
    lot = instance_from_row(CreditLot, row[width:], alias=alias)
    saved(entry, using=alias, created=True)
    saved(lot, using=alias, created=True)
    return GrantRow(entry=entry, lot=lot)


@functools.cache
def _debit_sql(alias: str) -> str:
    """Take credits within what is available, from the lots in draw order, or do nothing.

    The account's `UPDATE` takes its lock and moves the balance only if the
    available credits (balance less frozen) cover the debit and the reference is
    unused. The lots are then read `FOR UPDATE`, which answers each one as the
    last committed write left it, and drawn in order; each draw is recorded.
    A lot granted after this statement began (while it waited for the lock) is
    not seen: if the lots seen fall short, the entry's amount is zero, which its
    check constraint refuses, undoing the statement for the caller to run again.
    A concurrent debit of the same reference that committed first makes the
    entry break the unique key, which undoes the statement too.
    """
    n = _names(alias)
    return (
        f"WITH account AS (UPDATE {n['account']} SET balance = balance - %(amount)s "  # noqa: S608 - names are ours
        f"WHERE user_id = %(user_id)s AND balance - frozen >= %(amount)s AND NOT EXISTS "
        f"(SELECT 1 FROM {n['entry']} e WHERE e.account_id = {n['account']}.id "
        f"AND e.reference = %(reference)s) RETURNING id, balance), "
        f"open_lots AS MATERIALIZED (SELECT id, remaining, expires_at, category FROM {n['lot']} "
        f"WHERE account_id = (SELECT id FROM account) AND remaining > 0 "
        f"ORDER BY {LOT_DRAW_ORDER_SQL} FOR UPDATE), "
        f"drawn AS (SELECT id, LEAST(remaining, %(amount)s - before)::bigint AS take FROM "
        f"(SELECT id, remaining, SUM(remaining) OVER (ORDER BY {LOT_DRAW_ORDER_SQL} "
        f"ROWS UNBOUNDED PRECEDING) - remaining AS before FROM open_lots) o "
        f"WHERE before < %(amount)s), "
        f"moved AS (UPDATE {n['lot']} l SET remaining = l.remaining - d.take FROM drawn d "
        f"WHERE l.id = d.id RETURNING l.id), "
        f"entry AS (INSERT INTO {n['entry']} (account_id, amount, kind, reference, "
        f"balance_after, memo, created_by_id, created_at) SELECT id, "
        f"CASE WHEN (SELECT COALESCE(SUM(take), 0) FROM drawn) = %(amount)s "
        f"THEN -%(amount)s ELSE 0 END, %(kind)s, %(reference)s, balance, %(memo)s, "
        f"%(created_by_id)s, %(now)s FROM account RETURNING {n['entry_columns']}), "
        f"draws AS (INSERT INTO {n['draw']} (entry_id, lot_id, amount) "
        f"SELECT entry.id, drawn.id, drawn.take FROM entry, drawn RETURNING id, lot_id, amount) "
        f"SELECT {_prefixed(n['entry_columns'], 'entry')}, "
        f"(SELECT array_agg(ARRAY[id, lot_id, amount] ORDER BY id) FROM draws) FROM entry"
    )


def debit_write(
    *,
    alias: str,
    user_id: int,
    amount: int,
    kind: str,
    reference: str,
    memo: str,
    created_by_id: int | None,
    now: datetime,
) -> DebitRow | None:
    """Run the debit statement; None when it wrote nothing (too little available, or
    the reference used). Raises `IntegrityError` naming `REFERENCE_UNIQUE_CONSTRAINT`
    or `LOTS_SHORT_CONSTRAINT` when the statement was undone."""
    params = {
        "user_id": user_id,
        "amount": amount,
        "kind": str(kind),
        "reference": reference,
        "memo": memo,
        "created_by_id": created_by_id,
        "now": now,
    }
    with connections[alias].cursor() as cursor:
        cursor.execute(_debit_sql(alias), params)
        row = cursor.fetchone()
    if row is None:
        return None
    entry = instance_from_row(CreditTransaction, row[:-1], alias=alias)
    draws = [
        CreditDraw.from_db(alias, ["id", "entry_id", "lot_id", "amount"], [i, entry.pk, lot, n])
        for i, lot, n in row[-1] or ()
    ]
    saved(entry, using=alias, created=True)
    for draw in draws:
        saved(draw, using=alias, created=True)
    return DebitRow(entry=entry, draws=draws)
