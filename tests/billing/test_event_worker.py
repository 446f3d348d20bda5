"""The event worker's machinery: batch claims, releases, queued drains and what one event costs.

Concurrency tests use real threads with their own connections against committed
rows (`transaction=True`), and close those connections.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import OrmQ

from billing import sql, tasks
from billing.models import Fulfilment, Order, Payment, QueuedDrain, StripeEvent
from billing.services import events
from billing.services.events import event_process, event_store, events_drain
from billing.services.payments import payment_apply, payment_record, payment_row_for
from billing.stripe_objects import payment_intent_from_payload
from credits.models import CreditTransaction
from credits.selectors import credits_balance_get, credits_ledger_sum
from credits.services import credits_grant
from tests.billing.conftest import in_threads
from tests.billing.factories import OrderFactory, PaymentFactory
from tests.stripe_events import encode, event, new_id, payment_intent

pytestmark = pytest.mark.django_db


def succeeded(payment: Payment) -> dict:
    obj = payment_intent(
        id=payment.stripe_payment_intent_id,
        amount=payment.order.amount,
        metadata=payment.order.metadata,
    )
    return event("payment_intent.succeeded", obj)


def claim(first_event_id: int | None = None, size: int = events.CLAIM_BATCH) -> list[StripeEvent]:
    """Claim due events as a drain does, and process none of them (a worker that dies)."""
    claimed, _ = events._claim_batch(first_event_id, size)
    return claimed


def stored_events(n: int, *, status: str = StripeEvent.Status.PENDING, **fields) -> list[int]:
    """`n` due events of a type nothing handles (processing them marks them ignored),
    due one after another in the order they were stored, as events that arrived."""
    now = timezone.now()
    rows = [
        StripeEvent(
            stripe_id=new_id("evt"),
            type="test.unhandled",
            payload={"id": f"x{i}"},
            status=status,
            next_attempt_at=now - timedelta(microseconds=n - i),
            **fields,
        )
        for i in range(n)
    ]
    return [e.pk for e in StripeEvent.objects.bulk_create(rows)]


# --- what one event costs ----------------------------------------------------------------


def test_draining_one_paid_event_runs_at_most_twelve_statements():
    """The worker's hot path, through the drain a task runs: the dead-lease sweep and
    the claim, then one read of the payment and its order (locked), the payment, the
    order, the ledger entry with the balance in one statement (in the plugin's
    savepoint and its release), the fulfilment with its result, the event's status,
    in one transaction (inside this test's transaction its begin and commit are a
    savepoint and its release).
    """
    payment = PaymentFactory()
    credits_grant(user_id=payment.order.user_id, amount=5, reference="earlier")  # an account
    stored, _ = event_store(event=succeeded(payment))
    with CaptureQueriesContext(connection) as ctx:
        assert events_drain() == 1
    statements = [q["sql"] for q in ctx.captured_queries]
    assert len(statements) <= 12, "\n".join(statements)
    reads = [s for s in statements if s.startswith("SELECT")]
    assert len(reads) == 1 and "FOR UPDATE" in reads[0], reads
    assert StripeEvent.objects.get(pk=stored.pk).status == StripeEvent.Status.PROCESSED
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.PAID
    assert Fulfilment.objects.get(order_id=payment.order_id).result["credits"] == 100
    assert credits_balance_get(user_id=payment.order.user_id) == 105
    assert credits_ledger_sum(user_id=payment.order.user_id) == 105


def test_a_drain_claims_its_batch_in_one_statement():
    payments = [PaymentFactory() for _ in range(5)]
    for payment in payments:
        event_store(event=succeeded(payment))
    with CaptureQueriesContext(connection) as ctx:
        assert events_drain() == 5
    claims = [q["sql"] for q in ctx.captured_queries if "FOR UPDATE SKIP LOCKED" in q["sql"]]
    assert len(claims) == 1  # five events fit in one batch, and a short batch ends the drain
    # the dead-lease sweep, the claim, and the five events (a first account costs one more)
    assert len(ctx.captured_queries) <= 2 + 5 * 10
    assert Fulfilment.objects.count() == CreditTransaction.objects.count() == 5


def test_a_grant_inside_a_transaction_is_one_statement(user):
    credits_grant(user_id=user.pk, amount=5, reference="first")
    with transaction.atomic(), CaptureQueriesContext(connection) as ctx:
        entry = credits_grant(user_id=user.pk, amount=7, reference="second", kind="purchase")
    assert len(ctx.captured_queries) == 1  # no savepoint of its own, no second read
    assert (entry.amount, entry.balance_after, entry.kind) == (7, 12, "purchase")
    assert credits_balance_get(user_id=user.pk) == credits_ledger_sum(user_id=user.pk) == 12


def test_a_new_payment_row_is_one_statement_and_a_known_one_is_found():
    order = OrderFactory()
    intent = payment_intent_from_payload(
        payment_intent(id=new_id("pi"), amount=order.amount, status="requires_payment_method")
    )
    with CaptureQueriesContext(connection) as ctx:
        first = payment_row_for(order=order, intent=intent, locked=False)
    assert len(ctx.captured_queries) == 1
    assert "ON CONFLICT" in ctx.captured_queries[0]["sql"]
    again = payment_row_for(order=order, intent=intent, locked=False)
    assert again.pk == first.pk
    assert Payment.objects.filter(stripe_payment_intent_id=intent.id).count() == 1
    assert (again.order_id, again.status, again.amount) == (
        order.pk,
        "requires_payment_method",
        order.amount,
    )


# --- claims ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_claimers_never_take_the_same_event():
    expired = timezone.now() - timedelta(seconds=1)
    due = stored_events(90)
    dead = stored_events(
        30, status=StripeEvent.Status.PROCESSING, attempts=1, lease_expires_at=expired
    )

    def claim_all(i: int) -> list[int]:
        taken: list[int] = []
        while batch := claim(size=7):
            taken += [e.pk for e in batch]
        return taken

    results = in_threads(6, claim_all)
    assert all(isinstance(r, list) for r in results), results
    claimed = [pk for r in results for pk in r]
    assert len(claimed) == len(set(claimed)), "an event was claimed twice"
    assert sorted(claimed) == sorted(due + dead)
    rows = StripeEvent.objects.filter(pk__in=due + dead)
    assert set(rows.values_list("status", flat=True)) == {StripeEvent.Status.PROCESSING}
    assert sorted(rows.filter(pk__in=due).values_list("attempts", flat=True)) == [1] * 90
    assert sorted(rows.filter(pk__in=dead).values_list("attempts", flat=True)) == [2] * 30


def test_an_event_whose_worker_died_is_retaken_alone():
    """If it is what kills its worker, it must not take a batch of other events with it."""
    due = stored_events(5)
    expired = timezone.now() - timedelta(seconds=1)
    dead = stored_events(
        2, status=StripeEvent.Status.PROCESSING, attempts=1, lease_expires_at=expired
    )
    assert [e.pk for e in claim()] == [dead[0]]
    assert [e.pk for e in claim()] == [dead[1]]
    assert [e.pk for e in claim()] == due
    assert events_drain() == 0


def test_a_drain_goes_on_after_retaking_an_event_whose_worker_died():
    due = stored_events(3)
    expired = timezone.now() - timedelta(seconds=1)
    dead = stored_events(
        2, status=StripeEvent.Status.PROCESSING, attempts=3, lease_expires_at=expired
    )
    assert events_drain() == 5
    rows = StripeEvent.objects.filter(pk__in=due + dead)
    assert set(rows.values_list("status", flat=True)) == {StripeEvent.Status.IGNORED}
    assert sorted(rows.filter(pk__in=dead).values_list("attempts", flat=True)) == [4, 4]


def test_a_claim_takes_the_named_event_first_and_counts_every_attempt():
    older = stored_events(3)
    named = stored_events(1)[0]
    batch = claim(named, size=2)
    assert [e.pk for e in batch] == [named, older[0]]
    assert all(e.attempts == 1 and e.status == "processing" for e in batch)
    assert [e.payload for e in batch] == [{"id": "x0"}, {"id": "x0"}]
    stored = StripeEvent.objects.get(pk=named)
    assert stored.lease_expires_at > timezone.now() + timedelta(minutes=4)


def test_a_drain_leaves_the_events_it_claimed_to_others_for_five_minutes():
    """Longer than django-q2's task timeout (120 s), which bounds a whole drain; then an
    event whose worker died is taken again."""
    ids = stored_events(2)
    before = timezone.now()
    assert len(claim()) == 2  # … and the worker dies
    after = timezone.now()
    for lease in StripeEvent.objects.filter(pk__in=ids).values_list("lease_expires_at", flat=True):
        assert before + timedelta(minutes=5) <= lease <= after + timedelta(minutes=5)


def test_a_replayed_event_is_processed_ahead_of_an_older_backlog():
    backlog = stored_events(events.CLAIM_BATCH + 2)
    [replayed] = stored_events(1, status=StripeEvent.Status.FAILED, attempts=8)
    events.event_replay(event_id=replayed)
    assert tasks.events_drain(replayed) == len(backlog) + 1
    order = StripeEvent.objects.order_by("processed_at").values_list("pk", flat=True)
    assert list(order) == [replayed, *backlog]


def test_a_drain_for_one_event_goes_on_through_the_whole_backlog_behind_it():
    """The named event goes first; the batches after it are full ones of the backlog,
    and the drain stops only when a claim comes back short."""
    backlog = stored_events(events.CLAIM_BATCH * 2 + 10)
    [replayed] = stored_events(1, status=StripeEvent.Status.FAILED, attempts=8)
    events.event_replay(event_id=replayed)
    assert tasks.events_drain(replayed) == len(backlog) + 1
    assert not StripeEvent.objects.exclude(status=StripeEvent.Status.IGNORED).exists()


def test_a_worker_killed_mid_batch_leaves_the_batch_to_its_lease():
    ids = stored_events(5)
    assert len(claim()) == 5  # … and the worker dies before processing any of them
    assert events_drain() == 0  # leased: nobody else takes them
    StripeEvent.objects.filter(pk__in=ids).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert events_drain() == 5
    rows = StripeEvent.objects.filter(pk__in=ids)
    assert set(rows.values_list("status", "attempts")) == {(StripeEvent.Status.IGNORED, 2)}


def test_a_drain_that_fails_mid_batch_releases_what_it_had_not_started(monkeypatch):
    ids = stored_events(5)
    real = events.event_process
    calls: list[int] = []

    def process(event: StripeEvent) -> str:
        calls.append(event.pk)
        if len(calls) == 2:
            raise RuntimeError("the database went away")
        return real(event)

    monkeypatch.setattr(events, "event_process", process)
    with pytest.raises(RuntimeError):
        events_drain()
    rows = {e.pk: e for e in StripeEvent.objects.filter(pk__in=ids)}
    assert (rows[ids[0]].status, rows[ids[0]].attempts) == (StripeEvent.Status.IGNORED, 1)
    # The one that was running keeps its lease and its counted attempt.
    assert (rows[ids[1]].status, rows[ids[1]].attempts) == (StripeEvent.Status.PROCESSING, 1)
    assert rows[ids[1]].lease_expires_at is not None
    # The rest are due again, as if never claimed, and a drain is queued for them.
    for pk in ids[2:]:
        assert (rows[pk].status, rows[pk].attempts, rows[pk].lease_expires_at) == (
            StripeEvent.Status.PENDING,
            0,
            None,
        )
        assert rows[pk].next_attempt_at <= timezone.now()
    assert QueuedDrain.objects.exists()

    monkeypatch.setattr(events, "event_process", real)
    assert events_drain() == 3
    StripeEvent.objects.filter(pk=ids[1]).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert events_drain() == 1
    assert StripeEvent.objects.get(pk=ids[1]).attempts == 2


@pytest.mark.parametrize("failing", [0, 2, 4])
def test_only_the_events_after_the_one_that_failed_are_released(monkeypatch, failing):
    ids = stored_events(5)
    real = events.event_process

    def process(event: StripeEvent) -> str:
        if event.pk == ids[failing]:
            raise RuntimeError("the database went away")
        return real(event)

    monkeypatch.setattr(events, "event_process", process)
    with pytest.raises(RuntimeError):
        events_drain()
    rows = {e.pk: e for e in StripeEvent.objects.filter(pk__in=ids)}
    assert [(rows[pk].status, rows[pk].attempts) for pk in ids] == (
        [(StripeEvent.Status.IGNORED, 1)] * failing
        + [(StripeEvent.Status.PROCESSING, 1)]
        + [(StripeEvent.Status.PENDING, 0)] * (4 - failing)
    )
    assert rows[ids[failing]].lease_expires_at is not None


@pytest.mark.parametrize("earlier", [1, 2])
def test_a_released_retry_keeps_its_earlier_attempts(monkeypatch, earlier):
    [retry] = stored_events(1, status=StripeEvent.Status.RETRYING, attempts=earlier)
    [fresh] = stored_events(1)
    clock = iter([0.0, 1e9, 1e9])  # the deadline passes before the first event starts
    monkeypatch.setattr(events, "monotonic", lambda: next(clock))
    assert events_drain() == 0  # both claimed, then released unstarted
    rows = {e.pk: e for e in StripeEvent.objects.filter(pk__in=[retry, fresh])}
    assert (rows[retry].status, rows[retry].attempts) == (StripeEvent.Status.RETRYING, earlier)
    assert (rows[fresh].status, rows[fresh].attempts) == (StripeEvent.Status.PENDING, 0)


def test_a_drain_out_of_time_releases_the_rest_and_hands_them_on(monkeypatch):
    ids = stored_events(4)
    clock = iter([0.0, 0.0, 1e9, 1e9, 1e9])  # the deadline passes after the first event
    monkeypatch.setattr(events, "monotonic", lambda: next(clock))
    OrmQ.objects.all().delete()
    QueuedDrain.objects.all().delete()
    assert events_drain() == 1
    statuses = list(StripeEvent.objects.filter(pk__in=ids).order_by("id").values_list("status"))
    assert statuses == [("ignored",), ("pending",), ("pending",), ("pending",)]
    assert QueuedDrain.objects.count() == 1 and OrmQ.objects.count() == 1


def test_a_drain_starts_an_event_at_the_very_end_of_its_budget_and_none_after(monkeypatch):
    ids = stored_events(3)
    budget = events.DRAIN_TIME_BUDGET.total_seconds()
    clock = iter([0.0, budget, budget + 0.001, budget + 0.001])
    monkeypatch.setattr(events, "monotonic", lambda: next(clock))
    assert events_drain() == 1
    statuses = list(StripeEvent.objects.filter(pk__in=ids).order_by("id").values_list("status"))
    assert statuses == [("ignored",), ("pending",), ("pending",)]


def test_a_redelivery_after_its_drain_task_started_is_answered_as_a_duplicate():
    evt = succeeded(PaymentFactory())
    first, created = event_store(event=evt)
    assert created
    for drain in QueuedDrain.objects.all():  # the task started: no drain takes riders now
        sql.queued_drain_close(drain_id=drain.pk)
    again, created = event_store(event=evt)
    assert not created
    assert again.pk == first.pk
    assert StripeEvent.objects.filter(stripe_id=evt["id"]).count() == 1


def test_a_drain_stopped_by_its_batch_limit_hands_the_rest_on(settings):
    settings.TOLLGATE = {**settings.TOLLGATE, "EVENT_DRAIN_BATCH": 2}
    stored_events(3)
    OrmQ.objects.all().delete()
    assert events_drain() == 2
    assert QueuedDrain.objects.count() == 1 and OrmQ.objects.count() == 1
    assert events_drain() == 1


@pytest.mark.parametrize("batches", [1, 3])
def test_a_drain_with_more_than_a_batch_to_do_queues_a_second_drain_once(monkeypatch, batches):
    """One helper however long the backlog (no riding here: each ask would be a new task)."""
    monkeypatch.setattr(events, "RIDE_WINDOW", timedelta(0))
    stored_events(events.CLAIM_BATCH * batches + 1)
    OrmQ.objects.all().delete()
    assert events_drain() == events.CLAIM_BATCH * batches + 1
    assert QueuedDrain.objects.count() == 1 and OrmQ.objects.count() == 1


def test_a_backlog_is_still_processed_when_its_second_drain_cannot_be_queued(monkeypatch):
    """The task queue refuses the helper drain a full first batch asks for: the drain
    goes on with what it claimed instead of leaving it to the lease."""
    ids = stored_events(events.CLAIM_BATCH + 1)
    OrmQ.objects.all().delete()

    def broker_down(*args, **kwargs):
        raise ConnectionError("the task queue is unreachable")

    monkeypatch.setattr(events, "async_task", broker_down)
    assert events_drain() == events.CLAIM_BATCH + 1
    statuses = set(StripeEvent.objects.filter(pk__in=ids).values_list("status", flat=True))
    assert statuses == {StripeEvent.Status.IGNORED}
    assert not QueuedDrain.objects.exists() and not OrmQ.objects.exists()


@pytest.mark.parametrize(("due", "helped"), [(24, False), (25, True)])
def test_a_drain_claims_25_at_a_time_and_asks_for_help_when_its_first_claim_is_full(due, helped):
    stored_events(due)
    OrmQ.objects.all().delete()
    with CaptureQueriesContext(connection) as ctx:
        assert events_drain() == due
    claims = [q for q in ctx.captured_queries if "FOR UPDATE SKIP LOCKED" in q["sql"]]
    assert len(claims) == (2 if helped else 1)  # a full claim is followed by another
    assert QueuedDrain.objects.exists() is helped and OrmQ.objects.exists() is helped


def test_a_caller_that_sets_its_own_limit_sees_to_the_rest():
    stored_events(3)
    OrmQ.objects.all().delete()
    assert events_drain(limit=2) == 2
    assert not OrmQ.objects.exists()


# --- queued drains ----------------------------------------------------------------------


def test_a_drain_takes_no_more_than_its_limit_across_batches():
    limit = events.CLAIM_BATCH + 5
    ids = stored_events(events.CLAIM_BATCH + 10)
    assert events_drain(limit=limit) == limit
    statuses = list(StripeEvent.objects.filter(pk__in=ids).order_by("id").values_list("status"))
    assert statuses == [("ignored",)] * limit + [("pending",)] * 5


def test_events_stored_together_ride_on_one_queued_task():
    payments = [PaymentFactory() for _ in range(3)]
    for payment in payments:
        event_store(event=succeeded(payment))
    assert OrmQ.objects.count() == 1
    [drain] = QueuedDrain.objects.all()
    assert tasks.events_drain_queued(drain.pk) == 3
    assert not QueuedDrain.objects.exists()
    assert Fulfilment.objects.count() == 3


def test_an_event_riding_on_a_queued_task_is_stored_by_one_statement_as_received():
    first, second = PaymentFactory(), PaymentFactory()
    event_store(event=succeeded(first))
    evt = succeeded(second)
    body = encode(evt)
    with CaptureQueriesContext(connection) as ctx:
        stored, created = event_store(event=evt, body=body.decode())
    assert created
    assert len(ctx.captured_queries) == 1
    assert OrmQ.objects.count() == 1  # it rode on the first event's task
    row = StripeEvent.objects.get(pk=stored.pk)
    assert (row.stripe_id, row.type, row.object_id) == (
        evt["id"],
        "payment_intent.succeeded",
        second.stripe_payment_intent_id,
    )
    assert row.payload == evt
    assert row.status == StripeEvent.Status.PENDING
    assert row.next_attempt_at == row.received_at == stored.received_at
    with CaptureQueriesContext(connection) as ctx:
        again, created = event_store(event=evt, body=body.decode())
    assert not created
    assert again.stripe_id == evt["id"]
    assert len(ctx.captured_queries) == 1
    assert StripeEvent.objects.filter(stripe_id=evt["id"]).count() == 1


@pytest.mark.django_db(transaction=True)
def test_simultaneous_deliveries_riding_on_one_task_store_the_event_once(monkeypatch):
    monkeypatch.setattr(events, "RIDE_WINDOW", timedelta(minutes=1))
    event_store(event=succeeded(PaymentFactory()))
    evt = succeeded(PaymentFactory())
    created = in_threads(8, lambda i: event_store(event=evt, body=encode(evt).decode())[1])
    assert sorted(created) == [False] * 7 + [True]
    assert StripeEvent.objects.filter(stripe_id=evt["id"]).count() == 1
    assert OrmQ.objects.count() == 1


def test_a_queued_task_takes_riders_only_for_its_window():
    first, second = PaymentFactory(), PaymentFactory()
    event_store(event=succeeded(first))
    QueuedDrain.objects.update(open_until=timezone.now() - timedelta(milliseconds=1))
    event_store(event=succeeded(second))
    assert QueuedDrain.objects.count() == 2
    assert OrmQ.objects.count() == 2


def test_the_sweep_forgets_queued_drains_whose_task_was_lost():
    old = QueuedDrain.objects.create()
    QueuedDrain.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - events.QUEUED_DRAIN_FORGET_AFTER - timedelta(seconds=1)
    )
    recent = QueuedDrain.objects.create()
    tasks.events_drain()
    assert list(QueuedDrain.objects.values_list("pk", flat=True)) == [recent.pk]


@pytest.mark.django_db(transaction=True)
def test_a_queued_task_waits_for_the_events_riding_on_it(monkeypatch):
    """An event committed after the drain task was queued, riding on it, is still drained by
    it: the task's first step waits for that event's transaction to commit."""
    monkeypatch.setattr(events, "RIDE_WINDOW", timedelta(minutes=1))
    first, rider = PaymentFactory(), PaymentFactory()
    event_store(event=succeeded(first))
    [drain] = QueuedDrain.objects.all()
    stored, release = threading.Event(), threading.Event()
    drained: list = []

    def ride() -> None:
        try:
            with transaction.atomic():
                event_store(event=succeeded(rider))
                stored.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    def drain_task() -> None:
        try:
            drained.append(tasks.events_drain_queued(drain.pk))
        finally:
            connection.close()

    riding = threading.Thread(target=ride)
    riding.start()
    try:
        assert stored.wait(timeout=30)
        draining = threading.Thread(target=drain_task)
        draining.start()
        time.sleep(0.5)
        waited = draining.is_alive()
    finally:
        release.set()
        riding.join(timeout=30)
    draining.join(timeout=30)
    assert waited, "the drain looked before the rider committed"
    assert drained == [2]
    assert OrmQ.objects.count() == 1  # the rider enqueued nothing
    assert set(StripeEvent.objects.values_list("status", flat=True)) == {"processed"}
    assert Fulfilment.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_started_drain_takes_no_new_riders_and_does_not_wait_for_them(monkeypatch):
    """Once its task has closed it, a queued drain is passed over: a new event enqueues a
    task of its own, and the drain waits only for the riders that came before."""
    monkeypatch.setattr(events, "RIDE_WINDOW", timedelta(minutes=1))
    first, early, late = PaymentFactory(), PaymentFactory(), PaymentFactory()
    event_store(event=succeeded(first))
    [drain] = QueuedDrain.objects.all()
    stored = {"early": threading.Event(), "late": threading.Event()}
    release = {"early": threading.Event(), "late": threading.Event()}
    drained: list = []

    def store(payment: Payment, name: str) -> None:
        try:
            with transaction.atomic():
                event_store(event=succeeded(payment))
                stored[name].set()
                release[name].wait(timeout=30)
        finally:
            connection.close()

    def drain_task() -> None:
        try:
            drained.append(tasks.events_drain_queued(drain.pk))
        finally:
            connection.close()

    riders = [threading.Thread(target=store, args=(early, "early"))]
    draining = threading.Thread(target=drain_task)
    riders[0].start()
    try:
        assert stored["early"].wait(timeout=30)
        draining.start()
        time.sleep(0.3)  # closed, and waiting for the early rider
        held = draining.is_alive()
        riders.append(threading.Thread(target=store, args=(late, "late")))
        riders[1].start()
        late_went_on = stored["late"].wait(timeout=5)
        release["early"].set()
        draining.join(timeout=30)
        finished_before_late = not draining.is_alive()
    finally:
        for event in release.values():
            event.set()
        for rider in riders:
            rider.join(timeout=30)
        draining.join(timeout=30)
    assert held, "the drain looked before the early rider committed"
    assert late_went_on, "a closed drain held up a new event"
    assert finished_before_late, "the drain waited for an event that came after it closed"
    assert drained == [2]  # the first event and the early rider's
    assert OrmQ.objects.count() == 2  # the late event enqueued a task of its own
    late_event = StripeEvent.objects.get(object_id=late.stripe_payment_intent_id)
    assert late_event.status == StripeEvent.Status.PENDING


# --- payments ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_recording_a_payment_locks_the_order_before_the_payment():
    """Every writer takes an order's lock before its payment's; so must the one-statement
    read, or it could deadlock with them."""
    payment = PaymentFactory()
    intent = payment_intent_from_payload(succeeded(payment)["data"]["object"])
    blocked, done = threading.Event(), []

    def record() -> None:
        try:
            blocked.set()
            done.append(payment_record(intent=intent, target=Order.Status.PAID).reason)
        finally:
            connection.close()

    def payment_lockable(i: int) -> bool:
        with transaction.atomic():
            return bool(list(Payment.objects.select_for_update(nowait=True).filter(pk=payment.pk)))

    with transaction.atomic():
        Order.objects.select_for_update().get(pk=payment.order_id)
        recorder = threading.Thread(target=record)
        recorder.start()
        assert blocked.wait(timeout=30)
        time.sleep(0.3)  # the recorder now waits for the order's lock
        assert recorder.is_alive()
        assert in_threads(1, payment_lockable) == [True]
    recorder.join(timeout=30)
    assert done == ["order is now paid"]
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.PAID


@pytest.mark.django_db(transaction=True)
def test_payment_apply_refuses_to_run_outside_a_transaction():
    payment = PaymentFactory()
    intent = payment_intent_from_payload(succeeded(payment)["data"]["object"])
    with pytest.raises(RuntimeError, match="inside a transaction"):
        payment_apply(intent=intent, target=Order.Status.PAID)
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.PENDING


def test_an_attempt_that_lost_its_lease_rolls_back_its_work():
    """The worker was slow; its lease ran out and another attempt took the event. This
    attempt's fulfilment must not commit: only the owner's outcome counts."""
    payment = PaymentFactory()
    event_store(event=succeeded(payment))
    [claimed] = claim()
    StripeEvent.objects.filter(pk=claimed.pk).update(attempts=claimed.attempts + 1)  # retaken
    event_process(claimed)
    payment.order.refresh_from_db()
    assert payment.order.status == Order.Status.PENDING
    assert not Fulfilment.objects.exists()
    assert not CreditTransaction.objects.exists()
    stored = StripeEvent.objects.get(pk=claimed.pk)
    assert (stored.status, stored.attempts) == (StripeEvent.Status.PROCESSING, claimed.attempts + 1)


def test_a_slow_attempt_at_an_event_nothing_handles_leaves_it_to_the_later_one_quietly(caplog):
    """Its lease ran out and another attempt took the event: the slow one records
    nothing and reports no failure (the event is the later attempt's to finish)."""
    [event_id] = stored_events(1)
    [claimed] = claim()
    StripeEvent.objects.filter(pk=event_id).update(attempts=claimed.attempts + 1)  # retaken
    with caplog.at_level(logging.INFO, logger=events.log.name):
        event_process(claimed)
    stored = StripeEvent.objects.get(pk=event_id)
    assert (stored.status, stored.attempts) == (StripeEvent.Status.PROCESSING, claimed.attempts + 1)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
