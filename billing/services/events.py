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
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Now
from django.utils import timezone
from django_q.tasks import async_task

from billing import sql
from billing.metadata import NotOursError
from billing.models import QueuedDrain, StripeEvent
from billing.services.event_handlers import HANDLED_IN_EVENT_TRANSACTION, HANDLERS
from kernel.errors import error_retryable
from kernel.log_context import log_ids

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
    # The usual way: one statement, riding on a queued drain (see the module docstring).
    rode, stored = sql.event_insert_riding(
        columns=columns, event=event, body=body or json.dumps(event), now=now
    )
    if rode:
        if stored is None:  # a duplicate: it answers only who came first
            return StripeEvent(stripe_id=event["id"]), False
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


def _drain_ride_or_enqueue() -> None:
    """Make sure a drain task starts after the caller's transaction commits.

    Rides on an open queued drain, or enqueues one. Enqueued inside the caller's
    transaction on purpose: with django-q2's database broker the task row
    commits with the event or not at all.
    """
    if sql.queued_drain_ride():
        return
    drain = QueuedDrain.objects.create(open_until=Now() + RIDE_WINDOW)
    async_task(QUEUED_DRAIN_TASK, drain.pk, task_name=f"drain-{drain.pk}")


def events_drain_enqueue() -> None:
    """Make sure a drain task runs soon (a drain that stopped before the work did)."""
    with transaction.atomic():
        _drain_ride_or_enqueue()


# --- processing ----------------------------------------------------------------------


def _claim_batch(first_event_id: int | None, size: int) -> tuple[list[StripeEvent], bool]:
    """Claim up to `size` due events (this one first, if given) in one statement, or
    one event whose worker died; and whether it was one whose worker died (then alone).

    The attempt of each is counted by the claim itself, committed before any of
    them runs, so a worker killed mid-batch still used up an attempt of the
    event it was running, and a poison event cannot loop forever; the events it
    had not started wait for their lease (see `_release` for a drain that stops).
    """
    return sql.events_claim(
        first_event_id=first_event_id,
        size=size,
        lease=LEASE,
        max_attempts=settings.TOLLGATE["EVENT_MAX_ATTEMPTS"],
    )


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


class LeaseLostError(Exception):
    """A later attempt took the event while this one ran (its lease ran out)."""


def _event_finish(event: StripeEvent, status: str, note: str, *, owned: bool = False) -> str:
    """Record how a claimed event ended, unless a later attempt has taken it since.

    With `owned` (called inside the handler's transaction), a lost lease raises, so
    the handler's work is rolled back and only the attempt that owns the event
    commits its outcome.
    """
    owns = sql.event_finish(event_id=event.pk, attempts=event.attempts, status=status, note=note)
    if owned and not owns:
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
    sql.queued_drain_close(drain_id=drain_id)
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
