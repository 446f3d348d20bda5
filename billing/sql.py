"""Billing's hand-written SQL: every statement of the app that is not built by the ORM.

A statement is written out here for one of two reasons: the ORM cannot say it
(advisory locks, an insert that rides on another row's lock, a claim that
updates the rows it locks), or the hot paths run it so often that Django spent
longer compiling it on every call than PostgreSQL spent running it (`make
bench` measures both). The services call these functions as they call any
selector; nothing else in billing opens a cursor.

What each statement is for:

- `event_insert_riding`: the webhook intake's one statement. Stores a received
  event only while a queued drain task is open to ride on, holding that drain
  `FOR KEY SHARE` until the event commits.
- `queued_drain_ride`: finds an open queued drain to ride on and holds it the
  same way (an event stored through the ORM, when no drain was open to the
  first statement).
- `queued_drain_close`: a drain task's first step: closes its row to new riders,
  then deletes it, which waits for the riders that came before.
- `events_claim`: the worker's claim of due events (or one whose worker died),
  counting each attempt, in one `UPDATE … FOR UPDATE SKIP LOCKED` statement.
- `event_finish`: records how a claimed event ended, unless a later attempt
  has taken it since.
- `payment_and_order_locked`: a PaymentIntent's payment and its order, both
  row-locked, in one read.
- `row_insert`, `row_update`: `save()` of a new row and `save(update_fields=…)`,
  each statement compiled once per model and field list (payments, orders and
  fulfilments on the worker's path).
- `stripe_customer_creation_lock`: the advisory lock that serialises a user's
  first Stripe customer without locking the user's row.
- `refund_form_lock`: the session advisory lock that serialises the admin's
  refund form per order.
- `order_cancel_lock`: the session advisory lock that serialises cancels of one
  order, so of two at once the second sees the first's outcome.

The rule for model signals, the same in every app's SQL module: each row a
statement here inserts is announced with `post_save` exactly as `create()`
announces it; what a statement updates or deletes is announced by nothing, as
`QuerySet.update()` announces nothing; `pre_save` is never sent. So a receiver
of these models' signals would miss the changes that matter most (an order
paid, an event processed), and nothing in the product listens to the models in
`MODELS_UPDATED`; work that follows a payment runs through the plugin hooks.
Tests hold both halves. Rows read here become model instances only through
`kernel.rows.instance_from_row`, which only the apps' SQL modules may use.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.db import DatabaseError, connection, connections, router, transaction
from django.db.models import Field, Model
from django.utils import timezone

from billing.models import Fulfilment, Order, Payment, QueuedDrain, StripeEvent
from kernel.rows import instance_from_row, saved

M = TypeVar("M", bound=Model)

# The models whose rows these statements insert (each announced with `post_save`), and
# those whose rows they update or delete (announced by nothing).
MODELS_INSERTED: tuple[type[Model], ...] = (Payment, Fulfilment, StripeEvent)
MODELS_UPDATED: tuple[type[Model], ...] = (Order, Payment, StripeEvent, QueuedDrain)

_EVENTS = StripeEvent._meta.db_table
_DRAINS = QueuedDrain._meta.db_table
S = StripeEvent.Status


# --- webhook intake and queued drains --------------------------------------------------

# One statement, so one round trip and, outside a transaction, its own commit. It
# inserts the event only while a queued drain is open to ride on. No row: no drain
# was open. A row of NULLs: a duplicate (the insert waited for the first delivery's
# transaction, if it was still running, and did nothing).
_EVENT_INSERT_RIDING_SQL = f"""
WITH ride AS (
    SELECT id FROM {_DRAINS} WHERE open_until > STATEMENT_TIMESTAMP()
    ORDER BY id DESC LIMIT 1 FOR KEY SHARE
), stored AS (
    INSERT INTO {_EVENTS} (stripe_id, type, api_version, object_id, livemode, stripe_created,
        payload, status, attempts, last_error, next_attempt_at, received_at)
    SELECT %(stripe_id)s, %(type)s, %(api_version)s, %(object_id)s, %(livemode)s,
        %(stripe_created)s, %(payload)s::jsonb, '{S.PENDING}', 0, '',
        %(now)s, %(now)s
    WHERE EXISTS (SELECT 1 FROM ride)
    ON CONFLICT (stripe_id) DO NOTHING
    RETURNING id
)
SELECT stored.id FROM ride LEFT JOIN stored ON true
"""  # noqa: S608 - the names are ours

_QUEUED_DRAIN_RIDE_SQL = (
    f"SELECT id FROM {_DRAINS} WHERE open_until > STATEMENT_TIMESTAMP() "  # noqa: S608
    "ORDER BY id DESC LIMIT 1 FOR KEY SHARE"
)


def event_insert_riding(
    *, columns: dict[str, Any], event: dict[str, Any], body: str, now: datetime
) -> tuple[bool, StripeEvent | None]:
    """Store an event on an open queued drain: whether a drain was open to ride on (if
    not, nothing was stored), and the stored event (None for a duplicate).

    `columns` are the event's columns from its body, `body` its JSON as received.
    """
    with connection.cursor() as cursor:
        cursor.execute(_EVENT_INSERT_RIDING_SQL, {**columns, "now": now, "payload": body})
        row = cursor.fetchone()
    if row is None:
        return False, None
    if row[0] is None:
        return True, None
    stored = StripeEvent(id=row[0], **columns, payload=event, next_attempt_at=now, received_at=now)
    stored._state.adding, stored._state.db = False, connection.alias
    saved(stored, using=connection.alias, created=True)
    return True, stored


def queued_drain_ride() -> bool:
    """Whether a queued drain is open to ride on; if so, it is held `FOR KEY SHARE` until
    the caller's transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute(_QUEUED_DRAIN_RIDE_SQL)
        return cursor.fetchone() is not None


def queued_drain_close(*, drain_id: int) -> None:
    """Close a queued drain to new riders, then delete it once its riders have committed.

    The delete waits for every transaction holding the row `FOR KEY SHARE`;
    `FOR KEY SHARE` does not hold up the close, and a rider that looks after the
    close skips the row (PostgreSQL re-reads a row changed under a locking read).
    """
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {_DRAINS} SET open_until = NULL WHERE id = %s", [drain_id])  # noqa: S608
        cursor.execute(f"DELETE FROM {_DRAINS} WHERE id = %s", [drain_id])  # noqa: S608


# --- the worker's claim and finish -----------------------------------------------------

_DUE = f"status IN ('{S.PENDING}', '{S.RETRYING}') AND next_attempt_at <= %(now)s"
_DEAD = f"status = '{S.PROCESSING}' AND lease_expires_at < %(now)s AND attempts < %(max_attempts)s"
# Events whose worker died, then due events, each read through its own partial
# index in that index's order: an `OR` of the two ordered by id made PostgreSQL
# walk every finished event. An event whose worker died is taken on its own,
# never in a batch: if it is what kills its worker, it does not take other
# events' attempts down with it again. `named` is the event a task was enqueued
# for, if it is due. Every row a CTE locks is updated, so no claimable row is held
# back from another worker unclaimed.
_CLAIMED_FIELDS = [
    f
    for f in StripeEvent._meta.concrete_fields
    if f.attname in {"id", "stripe_id", "type", "payload", "status", "attempts"}
]
_EVENTS_CLAIM_SQL = f"""
WITH dead AS (
    SELECT id FROM {_EVENTS} WHERE {_DEAD}
    ORDER BY lease_expires_at LIMIT 1
    FOR UPDATE SKIP LOCKED
), named AS (
    SELECT id FROM {_EVENTS}
    WHERE id = %(first)s AND {_DUE} AND NOT EXISTS (SELECT 1 FROM dead)
    FOR UPDATE SKIP LOCKED
), due AS (
    SELECT id FROM {_EVENTS} WHERE {_DUE} AND NOT EXISTS (SELECT 1 FROM dead)
    ORDER BY next_attempt_at LIMIT %(due_limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {_EVENTS} AS e
SET status = '{S.PROCESSING}', attempts = e.attempts + 1, lease_expires_at = %(lease)s
FROM (
    SELECT id, true AS retaken FROM dead
    UNION SELECT id, false FROM named
    UNION SELECT id, false FROM due
) AS claimed
WHERE e.id = claimed.id
RETURNING {", ".join(f"e.{f.column}" for f in _CLAIMED_FIELDS)}, claimed.retaken
"""  # noqa: S608 - the names are ours

_EVENT_FINISH_SQL = (
    f"UPDATE {_EVENTS} SET status = %s, processed_at = %s, last_error = %s, "  # noqa: S608
    "lease_expires_at = NULL WHERE id = %s AND attempts = %s"
)


def events_claim(
    *, size: int, lease: timedelta, max_attempts: int, first_event_id: int | None = None
) -> tuple[list[StripeEvent], bool]:
    """Claim up to `size` due events (`first_event_id` first, if it is due), or one event
    whose worker died; answers them, and whether it was one whose worker died.

    Each claimed event is `processing` with a lease of `lease` and one more attempt
    counted, committed with the statement (outside a transaction) before any of
    them runs. The claimed instances carry only what the worker reads: id,
    Stripe id, type, payload, status and attempts.
    """
    now = timezone.now()
    params = {
        "now": now,
        "first": first_event_id,
        "due_limit": size - 1 if first_event_id is not None else size,
        "max_attempts": max_attempts,
        "lease": now + lease,
    }
    with connection.cursor() as cursor:
        cursor.execute(_EVENTS_CLAIM_SQL, params)
        rows = cursor.fetchall()
    names = [f.attname for f in _CLAIMED_FIELDS]
    events = [
        instance_from_row(StripeEvent, row[:-1], alias=connection.alias, attnames=names)
        for row in rows
    ]
    retaken = any(row[-1] for row in rows)
    # The named event first, then the order they arrived in.
    events.sort(key=lambda e: (e.pk != first_event_id, e.pk))
    return events, retaken


def event_finish(*, event_id: int, attempts: int, status: str, note: str) -> bool:
    """Mark a claimed event finished as `status`, with `note` as its last error; answers
    False, changing nothing, when a later attempt than `attempts` has taken it."""
    with connection.cursor() as cursor:
        now = connection.ops.adapt_datetimefield_value(timezone.now())  # as the ORM stores it
        cursor.execute(_EVENT_FINISH_SQL, [str(status), now, note, event_id, attempts])
        return cursor.rowcount == 1


# --- payments and orders on the worker's path --------------------------------------------


def _columns(model: type[Model], alias: str) -> str:
    return ", ".join(f"{alias}.{f.column}" for f in model._meta.concrete_fields)


# The payment and its order, both locked, the order first: `FOR UPDATE OF` takes
# the rows in the order it names them, the order in which every other writer
# takes them. The payment is locked too so that, after waiting for the order's
# lock, PostgreSQL re-reads both rows, not only the order.
_PAYMENT_AND_ORDER_SQL = (
    f"SELECT {_columns(Payment, 'p')}, {_columns(Order, 'o')} "  # noqa: S608 - names are ours
    f"FROM {Order._meta.db_table} o JOIN {Payment._meta.db_table} p ON p.order_id = o.id "
    "WHERE p.stripe_payment_intent_id = %s FOR UPDATE OF o, p"
)


def payment_and_order_locked(*, intent_id: str) -> Payment | None:
    """The PaymentIntent's `Payment` with its order (`payment.order`), both row-locked
    until the caller's transaction ends; None when no payment has that intent."""
    db = transaction.get_connection()
    with db.cursor() as cursor:
        cursor.execute(_PAYMENT_AND_ORDER_SQL, [intent_id])
        row = cursor.fetchone()
    if row is None:
        return None
    split = len(Payment._meta.concrete_fields)
    payment = instance_from_row(Payment, row[:split], alias=db.alias)
    payment.order = instance_from_row(Order, row[split:], alias=db.alias)
    return payment


@functools.cache
def _update_sql(model: type[Model], fields: tuple[str, ...], alias: str) -> tuple[str, list[Field]]:
    quote = connections[alias].ops.quote_name
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in columns)
    return (
        f"UPDATE {quote(meta.db_table)} SET {assignments} "  # noqa: S608 - names are ours
        f"WHERE {quote(meta.pk.column)} = %s",
        columns,
    )


def row_update(instance: Model, *, fields: list[str]) -> None:
    """`instance.save(update_fields=fields)`, the statement compiled once per field list.

    The same row write (`auto_now` fields stamped) and the same error when no
    row was updated; announced by nothing (see the module's rule).
    """
    model, alias = type(instance), instance._state.db or "default"
    db = connections[alias]
    sql, columns = _update_sql(model, tuple(fields), alias)
    values = [f.get_db_prep_save(f.pre_save(instance, False), db) for f in columns]
    with db.cursor() as cursor:
        cursor.execute(sql, [*values, instance.pk])
        if cursor.rowcount != 1:
            raise DatabaseError("Save with update_fields did not affect any rows.")


@functools.cache
def _insert_sql(
    model: type[Model], alias: str, unless_exists: str | None
) -> tuple[str, list[Field]]:
    quote = connections[alias].ops.quote_name
    meta = model._meta
    columns = [f for f in meta.concrete_fields if not f.primary_key]
    conflict = f"ON CONFLICT ({quote(unless_exists)}) DO NOTHING " if unless_exists else ""
    return (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in columns)}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(columns))}) {conflict}"
        f"RETURNING {quote(meta.pk.column)}",
        columns,
    )


def row_insert(instance: M, *, unless_exists: str | None = None) -> M | None:
    """`instance.save()` of a new row, the INSERT compiled once per model, announced
    with `post_save`.

    With `unless_exists` (a column with a unique constraint), nothing is inserted
    when a row with the same value exists (or is being inserted by a transaction
    that then commits): the answer is None, and nothing is announced.
    """
    model = type(instance)
    alias = router.db_for_write(model, instance=instance)
    db = connections[alias]
    sql, columns = _insert_sql(model, alias, unless_exists)
    values = [f.get_db_prep_save(f.pre_save(instance, True), db) for f in columns]
    with db.cursor() as cursor:
        cursor.execute(sql, values)
        row = cursor.fetchone()
    if row is None:
        return None
    instance.pk = row[0]
    instance._state.adding, instance._state.db = False, alias
    saved(instance, using=alias, created=True)
    return instance


# --- advisory locks ---------------------------------------------------------------------

# Namespaces of the PostgreSQL advisory locks: a user's first Stripe customer
# ("tgcu"), the admin's refund form ("tgrf") and an order's cancel ("tgoc").
_CUSTOMER_LOCK_NAMESPACE = 0x74676375
_REFUND_FORM_LOCK_NAMESPACE = 0x74677266
_ORDER_CANCEL_LOCK_NAMESPACE = 0x74676F63


def stripe_customer_creation_lock(*, user_id: int) -> None:
    """Serialise a user's first-customer creation until the caller's transaction ends.

    An advisory lock, not `SELECT … FOR UPDATE` on the user: that would make
    every foreign-key insert for the user (orders, tokens) wait on Stripe.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_CUSTOMER_LOCK_NAMESPACE, user_id])


@contextmanager
def refund_form_lock(*, order_id: int) -> Iterator[None]:
    """Serialise the admin's refund-form submissions for one order, for the block: a
    double-clicked form waits, then sees the first submission's refund and stops.

    A session-level lock, not a transaction's: `refund_create` commits its
    refund before calling Stripe, and that must stay so.
    """
    with _session_lock(_REFUND_FORM_LOCK_NAMESPACE, order_id):
        yield


@contextmanager
def order_cancel_lock(*, order_id: int) -> Iterator[None]:
    """Serialise cancels of one order, for the block: of two at once, the second waits,
    then reads the order the first left (canceled) and answers as a repeat would.

    A session-level lock: a cancel calls Stripe and commits in several steps.
    """
    with _session_lock(_ORDER_CANCEL_LOCK_NAMESPACE, order_id):
        yield


@contextmanager
def _session_lock(namespace: int, key: int) -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", [namespace, key])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [namespace, key])
