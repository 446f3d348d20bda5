"""Stripe events: store on receipt, process in the worker, retry until resolved.

The rule: `event_store` does no Stripe call and runs no plugin code; it only
inserts the event (unique on Stripe's id) and makes sure a drain task will run
after it commits, in the same transaction, so an event that was answered 200 is
never lost. Everything else happens in `events_drain`, which claims due events
in batches with `SELECT … FOR UPDATE SKIP LOCKED`, so any number of workers can
run it, and processes each claimed event in its own transaction.

How the work reaches a worker:

- A stored event rides on a drain task that is queued and has not started (an
  open `QueuedDrain` row), holding that row `FOR KEY SHARE` until it commits;
  only when there is none does it enqueue a task (and its row). The task first
  closes its row, so no new event rides on it, then deletes it: the delete
  waits for every transaction that rode on it, so each of their events is
  committed before the drain looks. `FOR KEY SHARE` does not hold up the
  close, and a rider that looks after the close skips the row (PostgreSQL
  re-reads a row changed under a locking read), so the task waits only for
  riders already under way. One task serves a burst of webhooks instead of
  one task each, which is what django-q2 costs the most per unit of work (a
  queue row, its dequeue and acknowledgement, pickling, the hand-offs between
  its processes).
- A queued drain takes riders for `RIDE_WINDOW` at most: if its task is lost
  (its worker killed between taking it and starting), only the events of that
  window wait for the sweep. Under load about one task is enqueued per window.
- Riding adds no wait of its own, but with fewer tasks django-q2's pusher
  finds its queue empty more often and sleeps its `poll` before looking again.
  Two workers at a steady 150 webhooks a second, receipt to processed: p50 130
  and p95 200 ms with `poll` 0.2 s, 49 and 87 ms with `poll` 0.05 s (one task
  per event, `poll` 0.2 s: 51 and 193 ms). A burst of 2,000 events took 59
  tasks instead of 2,000.
- A drain claims batches of `CLAIM_BATCH` until a claim comes back short (then
  nothing else was due when it looked; anything stored later has a task of its
  own or rides on one that has not started), its `limit`, or its time budget;
  stopped early, it enqueues a drain for the rest. When its first batch is
  full it queues one more drain at once, so that another worker joins in on a
  backlog instead of waiting for it to be handed on.
- The scheduled sweep (every minute) drains too: retries whose back-off has
  passed when no other drain runs, events whose worker died (their lease ran
  out), and any event whose queued task was lost with its worker.
"""

from __future__ import annotations

import json
import logging
import traceback
from datetime import UTC, datetime, timedelta
from time import monotonic
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Now
from django.utils import timezone
from django_q.tasks import async_task

from billing.metadata import NotOursError
from billing.models import QueuedDrain, StripeEvent
from billing.services.event_handlers import HANDLED_IN_EVENT_TRANSACTION, HANDLERS
from kernel.errors import error_retryable
from kernel.log_context import log_ids
from kernel.rows import instance_from_row, saved

log = logging.getLogger(__name__)

# A processing event whose worker has not finished by then is taken again. It
# must exceed django-q2's task timeout (120 s), which bounds a whole drain.
LEASE = timedelta(minutes=5)
# Events claimed by one statement; each is then processed in its own transaction.
CLAIM_BATCH = 25
# A drain starts no new event after this long and hands the rest to a new task. One
# event that calls Stripe can take (retries + 1) × STRIPE_TIMEOUT = 90 s by default;
# budget + that stays inside django-q2's task timeout (120 s), so a slow last event
# does not get the whole drain killed with its unstarted events still claimed.
DRAIN_TIME_BUDGET = timedelta(seconds=20)
# How long a queued drain task takes riders (see the module docstring).
RIDE_WINDOW = timedelta(milliseconds=250)
DRAIN_TASK = "billing.tasks.events_drain"
QUEUED_DRAIN_TASK = "billing.tasks.events_drain_queued"
# A queued drain whose task never ran (its worker was killed first) is forgotten
# by the sweep after this long; the sweep has drained its events by then.
QUEUED_DRAIN_FORGET_AFTER = timedelta(minutes=10)

_EVENTS = StripeEvent._meta.db_table
_DRAINS = QueuedDrain._meta.db_table
S = StripeEvent.Status


def _event_columns(event: dict[str, Any]) -> dict[str, Any]:
    """The columns a received event is stored with, from its verified body."""
    data_object = (event.get("data") or {}).get("object") or {}
    created = event.get("created")
    return {
        "stripe_id": event["id"],
        "type": str(event.get("type") or "")[:100],
        "api_version": str(event.get("api_version") or "")[:50],
        "object_id": str(data_object.get("id") or "")[:255],
        "livemode": bool(event.get("livemode")),
        "stripe_created": (
            datetime.fromtimestamp(created, tz=UTC) if isinstance(created, int) else None
        ),
    }


def event_store(*, event: dict[str, Any], body: str | None = None) -> tuple[StripeEvent, bool]:
    """Insert a verified event and make sure a drain runs after it; a duplicate is a no-op.

    `body` is the event's JSON as received, stored as it is instead of serialising
    `event` again.
    """
    columns = _event_columns(event)
    now = timezone.now()
    row = _store_riding({**columns, "now": now}, body or json.dumps(event))
    if row is not None:
        if row[0] is None:  # a duplicate: it answers only who came first
            return StripeEvent(stripe_id=event["id"]), False
        stored = StripeEvent(
            id=row[0], **columns, payload=event, next_attempt_at=now, received_at=now
        )
        stored._state.adding, stored._state.db = False, connection.alias
        # `post_save` as `create()` sends it (`pre_save` is not: the statement may
        # store nothing, and then the path below sends its own).
        saved(stored, using=connection.alias, created=True)
        return stored, True
    try:
        with transaction.atomic():
            stored = StripeEvent.objects.create(
                **columns, payload=event, next_attempt_at=timezone.now()
            )
            _drain_ride_or_enqueue()
    except IntegrityError:
        # The payload is not read back: a duplicate answers only who came first.
        first = (
            StripeEvent.objects.filter(stripe_id=event["id"]).only("stripe_id", "status").first()
        )
        if first is None:  # not a duplicate: something else broke
            raise
        return first, False
    return stored, True


# The usual way an event is stored on PostgreSQL: one statement, so one round trip
# and, outside a transaction, its own commit. It inserts the event only while a
# queued drain is open to ride on, and holds that drain `FOR KEY SHARE` until it
# commits. No row: no drain was open, and the caller stores the event with a task
# of its own. A row of NULLs: a duplicate (the insert waited for the first
# delivery's transaction, if it was still running, and did nothing).
_STORE_RIDING_SQL = f"""
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


def _store_riding(params: dict[str, Any], payload: str) -> tuple[int | None] | None:
    """`(id,)` stored, `(None,)` a duplicate, None when no drain was open to ride on."""
    with connection.cursor() as cursor:
        cursor.execute(_STORE_RIDING_SQL, {**params, "payload": payload})
        return cursor.fetchone()


def _drain_ride_or_enqueue() -> None:
    """Make sure a drain task starts after the caller's transaction commits.

    Rides on an open queued drain, or enqueues one. Enqueued inside the caller's
    transaction on purpose: with django-q2's database broker the task row
    commits with the event or not at all.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {_DRAINS} WHERE open_until > STATEMENT_TIMESTAMP() "  # noqa: S608
            "ORDER BY id DESC LIMIT 1 FOR KEY SHARE"
        )
        if cursor.fetchone() is not None:
            return
    drain = QueuedDrain.objects.create(open_until=Now() + RIDE_WINDOW)
    async_task(QUEUED_DRAIN_TASK, drain.pk, task_name=f"drain-{drain.pk}")


def events_drain_enqueue() -> None:
    """Make sure a drain task runs soon (a drain that stopped before the work did)."""
    with transaction.atomic():
        _drain_ride_or_enqueue()


# --- processing ----------------------------------------------------------------------

_DUE = f"status IN ('{S.PENDING}', '{S.RETRYING}') AND next_attempt_at <= %(now)s"
_DEAD = f"status = '{S.PROCESSING}' AND lease_expires_at < %(now)s AND attempts < %(max_attempts)s"
# Events whose worker died, then due events, each read through its own partial
# index in that index's order: an `OR` of the two ordered by id made PostgreSQL
# walk every finished event (128 ms a claim at 100k events). An event whose
# worker died is taken on its own, never in a batch: if it is what kills its
# worker, it does not take other events' attempts down with it again. `named` is
# the event a task was enqueued for, if it is due. Every row a CTE locks is
# updated, so no claimable row is held back from another worker unclaimed.
_CLAIM_SQL = f"""
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
RETURNING {{columns}}, claimed.retaken
"""  # noqa: S608 - the names are ours
_CLAIMED_FIELDS = [
    f
    for f in StripeEvent._meta.concrete_fields
    if f.attname in {"id", "stripe_id", "type", "payload", "status", "attempts"}
]
_CLAIM_SQL = _CLAIM_SQL.format(columns=", ".join(f"e.{f.column}" for f in _CLAIMED_FIELDS))


def _claim(first_event_id: int | None = None, size: int = CLAIM_BATCH) -> list[StripeEvent]:
    """Claim up to `size` due events (this one first, if given) in one statement, or
    one event whose worker died.

    The attempt of each is counted by the claim itself, committed before any of
    them runs, so a worker killed mid-batch still used up an attempt of the
    event it was running, and a poison event cannot loop forever; the events it
    had not started wait for their lease (see `_release` for a drain that stops).
    """
    return _claim_batch(first_event_id, size)[0]


def _claim_batch(first_event_id: int | None, size: int) -> tuple[list[StripeEvent], bool]:
    """`_claim`, and whether it took an event whose worker died (then alone)."""
    now = timezone.now()
    params = {
        "now": now,
        "first": first_event_id,
        "due_limit": size - 1 if first_event_id is not None else size,
        "max_attempts": settings.TOLLGATE["EVENT_MAX_ATTEMPTS"],
        "lease": now + LEASE,
    }
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, params)
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


def _release(events: list[StripeEvent]) -> int:
    """Give back claimed events a drain did not start: due again, their attempt not counted."""
    if not events:
        return 0
    mine = Q()
    for event in events:
        mine |= Q(pk=event.pk, attempts=event.attempts)
    now = timezone.now()
    return StripeEvent.objects.filter(mine, status=S.PROCESSING).update(
        status=Case(When(attempts__gt=1, then=Value(S.RETRYING)), default=Value(S.PENDING)),
        attempts=F("attempts") - 1,
        lease_expires_at=None,
        next_attempt_at=now,
    )


def _backoff(attempts: int) -> timedelta:
    schedule = settings.TOLLGATE["EVENT_RETRY_BACKOFF"]
    return timedelta(seconds=schedule[min(attempts, len(schedule)) - 1])


_FINISH_SQL = (
    f"UPDATE {_EVENTS} SET status = %s, processed_at = %s, last_error = %s, "  # noqa: S608
    "lease_expires_at = NULL WHERE id = %s AND attempts = %s"
)


class LeaseLostError(Exception):
    """A later attempt took the event while this one ran (its lease ran out)."""


def _event_finish(event: StripeEvent, status: str, note: str, *, owned: bool = False) -> str:
    """Record how a claimed event ended, unless a later attempt has taken it since.

    With `owned` (called inside the handler's transaction), a lost lease raises, so
    the handler's work is rolled back and only the attempt that owns the event
    commits its outcome.
    """
    with connection.cursor() as cursor:
        now = connection.ops.adapt_datetimefield_value(timezone.now())  # as the ORM stores it
        cursor.execute(_FINISH_SQL, [str(status), now, note, event.pk, event.attempts])
        if owned and cursor.rowcount == 0:
            raise LeaseLostError(f"event {event.pk}: attempt {event.attempts} lost its lease")
    return status


def event_process(event: StripeEvent) -> str:
    """Run the handler for a claimed event and record how it ended.

    A handler in `HANDLED_IN_EVENT_TRANSACTION` runs inside one transaction with
    the event's final status, so its work and "processed" commit together.
    Other handlers call services that own their transactions and are idempotent
    (a refund stored is kept even when applying it must wait), so a handler that
    fails half-way, or whose worker dies before the event is marked, is simply
    run again.
    """
    handler = HANDLERS.get(event.type)
    try:
        if handler is None:
            return _event_finish(event, S.IGNORED, f"no handler for {event.type}")
        with log_ids(event_id=event.pk, stripe_event_id=event.stripe_id, event_type=event.type):
            if event.type in HANDLED_IN_EVENT_TRANSACTION:
                with transaction.atomic():
                    status = _event_finish(event, S.PROCESSED, handler(event.payload), owned=True)
            else:
                status = _event_finish(event, S.PROCESSED, handler(event.payload))
            # Carries the order id too once the handler bound it.
            log.info("event %s (%s) %s", event.stripe_id, event.type, status)
            return status
    except Exception as exc:
        if isinstance(exc, NotOursError):
            return _event_finish(event, S.NOT_OURS, exc.message[:4000])
        final = not error_retryable(exc) or (
            event.attempts >= settings.TOLLGATE["EVENT_MAX_ATTEMPTS"]
        )
        status = S.FAILED if final else S.RETRYING
        StripeEvent.objects.filter(pk=event.pk, attempts=event.attempts).update(
            status=status,
            last_error="".join(traceback.format_exception(exc))[-4000:],
            next_attempt_at=None if final else timezone.now() + _backoff(event.attempts),
            lease_expires_at=None,
        )
        log.warning(
            "event %s (%s) attempt %s failed: %s",
            event.stripe_id,
            event.type,
            event.attempts,
            exc,
            extra={"event_id": event.pk, "stripe_event_id": event.stripe_id},
        )
        return status


def events_give_up_on_dead_leases() -> int:
    """An event whose worker died (killed, timed out) during every attempt is failed.

    Its attempts were counted when they were claimed, so this is the same limit a
    handler that raises meets; without it such an event would be taken again forever.
    """
    max_attempts = settings.TOLLGATE["EVENT_MAX_ATTEMPTS"]
    return StripeEvent.objects.filter(
        status=S.PROCESSING,
        lease_expires_at__lt=timezone.now(),
        attempts__gte=max_attempts,
    ).update(
        status=S.FAILED,
        lease_expires_at=None,
        next_attempt_at=None,
        last_error=f"The worker stopped during each of its {max_attempts} attempts "
        "(killed or timed out); replay it once the cause is fixed.",
    )


def _batch_process(batch: list[StripeEvent], deadline: float) -> tuple[int, bool]:
    """Process claimed events in order; answers how many ran and whether all of them did.

    Past the deadline the rest are released. If processing raises (the database
    went away), the events not yet started are released on a best-effort basis;
    the one that was running keeps its lease.
    """
    for i, event in enumerate(batch):
        if monotonic() > deadline:
            _release(batch[i:])
            return i, False
        try:
            event_process(event)
        except BaseException:
            try:
                _release(batch[i + 1 :])
                events_drain_enqueue()
            except Exception:
                log.exception("could not release %s claimed events", len(batch) - i - 1)
            raise
    return len(batch), True


def events_drain(*, first_event_id: int | None = None, limit: int | None = None) -> int:
    """Process due events, this one first if given; answers how many were processed.

    Stops when a claim comes back short (nothing else was due), after `limit`
    events (by default `EVENT_DRAIN_BATCH`), or after `DRAIN_TIME_BUDGET`.
    Stopped by the time budget or the default limit, it enqueues a drain for what
    may be left; a caller that passes its own `limit` sees to the rest itself.
    """
    hand_on = limit is None
    limit = limit or settings.TOLLGATE["EVENT_DRAIN_BATCH"]
    deadline = monotonic() + DRAIN_TIME_BUDGET.total_seconds()
    events_give_up_on_dead_leases()
    taken, helped = 0, False
    while taken < limit:
        size = min(CLAIM_BATCH, limit - taken)
        batch, retaken = _claim_batch(first_event_id if taken == 0 else None, size)
        if hand_on and not helped and len(batch) == size:
            # More is due than one batch: queue a drain another worker can take. If
            # that fails, the batch is still processed (and the sweep helps later).
            try:
                events_drain_enqueue()
            except Exception:
                log.exception("could not queue a second drain")
            helped = True
        done, finished = _batch_process(batch, deadline)
        taken += done
        if not finished:
            hand_on = True
            break
        if not retaken and len(batch) < size:
            return taken
    if hand_on:
        events_drain_enqueue()
    return taken


def events_drain_queued(*, drain_id: int) -> int:
    """The task a stored event enqueued: close it to new riders, wait for those it
    has, then drain.

    The delete waits for every transaction holding the row `FOR KEY SHARE` (the
    events riding on this task), so each of them has committed before the claim.
    """
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {_DRAINS} SET open_until = NULL WHERE id = %s", [drain_id])  # noqa: S608
        cursor.execute(f"DELETE FROM {_DRAINS} WHERE id = %s", [drain_id])  # noqa: S608
    return events_drain()


def queued_drains_forget() -> int:
    """Delete queued drains whose task never started (lost with a killed worker)."""
    count, _ = QueuedDrain.objects.filter(
        created_at__lt=timezone.now() - QUEUED_DRAIN_FORGET_AFTER
    ).delete()
    return count


def event_replay(*, event_id: int) -> StripeEvent:
    """Make a failed (or any finished) event due again, with a fresh attempt budget."""
    StripeEvent.objects.filter(pk=event_id).exclude(status=S.PROCESSING).update(
        status=S.PENDING,
        attempts=0,
        next_attempt_at=timezone.now(),
        lease_expires_at=None,
    )
    event = StripeEvent.objects.get(pk=event_id)
    async_task(DRAIN_TASK, event_id, task_name=f"replay-{event_id}")
    return event
