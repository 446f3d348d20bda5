"""Stripe events: store on receipt, process in the worker, retry until resolved.

The rule: `event_store` does no Stripe call and runs no plugin code; it only
inserts the event (unique on Stripe's id) and enqueues its processing in the
same transaction, so an event that was answered 200 is never lost. Everything
else happens in `events_drain`, which takes due events with
`SELECT … FOR UPDATE SKIP LOCKED`, so any number of workers can run it.
"""

from __future__ import annotations

import logging
import traceback
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from billing.models import StripeEvent
from billing.services.event_handlers import HANDLERS
from kernel.log_context import log_ids

log = logging.getLogger(__name__)

# A processing event whose worker has not finished by then is taken again.
LEASE = timedelta(minutes=5)
DRAIN_TASK = "billing.tasks.events_drain"


def event_store(*, event: dict[str, Any]) -> tuple[StripeEvent, bool]:
    """Insert a verified event and enqueue its processing; a duplicate is a no-op."""
    data_object = (event.get("data") or {}).get("object") or {}
    created = event.get("created")
    try:
        with transaction.atomic():
            stored = StripeEvent.objects.create(
                stripe_id=event["id"],
                type=str(event.get("type") or "")[:100],
                api_version=str(event.get("api_version") or "")[:50],
                object_id=str(data_object.get("id") or "")[:255],
                livemode=bool(event.get("livemode")),
                stripe_created=(
                    datetime.fromtimestamp(created, tz=UTC) if isinstance(created, int) else None
                ),
                payload=event,
                next_attempt_at=timezone.now(),
            )
            # Enqueued inside the transaction on purpose: with django-q2's
            # database broker the task row commits with the event or not at all.
            async_task(DRAIN_TASK, stored.pk, task_name=f"event-{stored.pk}")
    except IntegrityError:
        return StripeEvent.objects.get(stripe_id=event["id"]), False
    return stored, True


# --- processing ----------------------------------------------------------------------


def _claimable(event_id: int | None) -> list[tuple[Q, str]]:
    """Where to look for work, in order: events due, then events whose worker died.

    Each is one partial index's condition with that index's own order, so the
    query reads only live rows; an `OR` of the two ordered by id made PostgreSQL
    walk every finished event, slower with each one stored (128 ms at 100k).
    """
    now = timezone.now()
    scopes = [
        (
            Q(
                status__in=[StripeEvent.Status.PENDING, StripeEvent.Status.RETRYING],
                next_attempt_at__lte=now,
            ),
            "next_attempt_at",
        ),
        (Q(status=StripeEvent.Status.PROCESSING, lease_expires_at__lt=now), "lease_expires_at"),
    ]
    if event_id is not None:
        scopes = [(condition & Q(pk=event_id), order) for condition, order in scopes]
    return scopes


def _claim(event_id: int | None = None) -> StripeEvent | None:
    """Take one due event (this one, if given) and count the attempt before running it.

    The attempt is counted in its own committed transaction, so a worker killed
    mid-event still used up an attempt and a poison event cannot loop forever.
    """
    with transaction.atomic():
        event = None
        for condition, order in _claimable(event_id):
            event = (
                StripeEvent.objects.select_for_update(skip_locked=True)
                .filter(condition)
                .order_by(order)
                .first()
            )
            if event is not None:
                break
        if event is None:
            return None
        event.status = StripeEvent.Status.PROCESSING
        event.attempts += 1
        event.lease_expires_at = timezone.now() + LEASE
        event.save(update_fields=["status", "attempts", "lease_expires_at"])
        return event


def _backoff(attempts: int) -> timedelta:
    schedule = settings.TOLLGATE["EVENT_RETRY_BACKOFF"]
    return timedelta(seconds=schedule[min(attempts, len(schedule)) - 1])


def event_process(event: StripeEvent) -> str:
    """Run the handler for a claimed event and record how it ended.

    Handlers call services that own their transactions and are idempotent (a
    refund stored is kept even when applying it must wait), so a handler that
    fails half-way, or whose worker dies before the event is marked, is simply
    run again.
    """
    handler = HANDLERS.get(event.type)
    mine = StripeEvent.objects.filter(pk=event.pk, attempts=event.attempts)
    try:
        if handler is None:
            status, note = StripeEvent.Status.IGNORED, f"no handler for {event.type}"
        else:
            with log_ids(event_id=event.pk, stripe_event_id=event.stripe_id, event_type=event.type):
                note = handler(event.payload)
            status = StripeEvent.Status.PROCESSED
        mine.update(
            status=status, processed_at=timezone.now(), last_error=note, lease_expires_at=None
        )
        return status
    except Exception as exc:
        final = not getattr(exc, "retryable", True) or (
            event.attempts >= settings.TOLLGATE["EVENT_MAX_ATTEMPTS"]
        )
        status = StripeEvent.Status.FAILED if final else StripeEvent.Status.RETRYING
        mine.update(
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
        status=StripeEvent.Status.PROCESSING,
        lease_expires_at__lt=timezone.now(),
        attempts__gte=max_attempts,
    ).update(
        status=StripeEvent.Status.FAILED,
        lease_expires_at=None,
        next_attempt_at=None,
        last_error=f"The worker stopped during each of its {max_attempts} attempts "
        "(killed or timed out); replay it once the cause is fixed.",
    )


def events_drain(*, first_event_id: int | None = None, limit: int | None = None) -> int:
    """Process due events, this one first if given; answers how many were taken."""
    limit = limit or settings.TOLLGATE["EVENT_DRAIN_BATCH"]
    events_give_up_on_dead_leases()
    taken = 0
    if first_event_id is not None:
        event = _claim(first_event_id)
        if event is not None:
            event_process(event)
            taken += 1
    while taken < limit:
        event = _claim()
        if event is None:
            break
        event_process(event)
        taken += 1
    return taken


def event_replay(*, event_id: int) -> StripeEvent:
    """Make a failed (or any finished) event due again, with a fresh attempt budget."""
    StripeEvent.objects.filter(pk=event_id).exclude(status=StripeEvent.Status.PROCESSING).update(
        status=StripeEvent.Status.PENDING,
        attempts=0,
        next_attempt_at=timezone.now(),
        lease_expires_at=None,
    )
    event = StripeEvent.objects.get(pk=event_id)
    async_task(DRAIN_TASK, event_id, task_name=f"replay-{event_id}")
    return event
