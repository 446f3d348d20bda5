"""Billing's SQL module: its rule for model signals, and writes that match `save()`'s.

The rule: each row its statements insert is announced with `post_save` as
`create()` announces it; what they update or delete is announced by nothing.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import DatabaseError
from django.db.models import signals
from django.utils import timezone

from billing import sql, tasks
from billing.models import Fulfilment, Order, Payment, QueuedDrain, StripeEvent
from billing.services import events
from billing.services.events import event_store
from tests.billing.factories import OrderFactory, PaymentFactory
from tests.stripe_events import event, new_id, payment_intent

pytestmark = pytest.mark.django_db

MODEL_SIGNALS = {
    "pre_save": signals.pre_save,
    "post_save": signals.post_save,
    "pre_delete": signals.pre_delete,
    "post_delete": signals.post_delete,
}


def succeeded(order: Order, intent_id: str) -> dict:
    return event(
        "payment_intent.succeeded",
        payment_intent(id=intent_id, amount=order.amount, metadata=order.metadata),
    )


# --- the rule for model signals ----------------------------------------------------------


WRITTEN = sorted({*sql.MODELS_INSERTED, *sql.MODELS_UPDATED}, key=lambda m: m._meta.label)


@pytest.mark.parametrize("model", WRITTEN, ids=lambda m: m._meta.label)
def test_nothing_in_the_product_listens_for_what_the_sql_does_not_announce(model):
    """A receiver would miss the writes that matter most (an order paid, an event
    processed): only the `post_save` of a model the SQL inserts and never updates may
    have one."""
    announced = {"post_save"} if model not in sql.MODELS_UPDATED else set()
    listening = {name for name, signal in MODEL_SIGNALS.items() if signal.has_listeners(model)}
    assert listening <= announced, f"{model._meta.label} has {listening} receivers"


def test_the_listener_check_sees_a_listener():
    def receiver(**kwargs):
        pass

    signals.post_save.connect(receiver, sender=Order, weak=False)
    try:
        assert signals.post_save.has_listeners(Order)
    finally:
        signals.post_save.disconnect(receiver, sender=Order)
    assert not signals.post_save.has_listeners(Order)


def test_the_worker_announces_what_it_inserts_by_hand_and_nothing_else():
    """An event riding on a queued drain, the drain's close, claim and finish, a known
    payment and a first-seen one, their orders paid and fulfilled: all of it through
    the SQL module; only the new rows are announced, each as `create()` would."""
    known = PaymentFactory()
    first_seen = OrderFactory()
    event_store(event=succeeded(known.order, known.stripe_payment_intent_id))  # opens a drain
    [drain] = QueuedDrain.objects.all()
    heard: list[tuple[str, type, bool | None]] = []
    receivers = {}
    for name, signal in MODEL_SIGNALS.items():
        receivers[name] = lambda sender, _name=name, **kw: heard.append(
            (_name, sender, kw.get("created"))
        )
        signal.connect(receivers[name], weak=False)
    try:
        _, riding = event_store(event=succeeded(first_seen, new_id("pi")))
        assert riding
        assert tasks.events_drain_queued(drain.pk) == 2
        # The receivers hear what the ORM writes.
        first_seen.refresh_from_db()
        first_seen.save(update_fields=["updated_at"])
    finally:
        for name, signal in MODEL_SIGNALS.items():
            signal.disconnect(receivers[name])

    assert set(StripeEvent.objects.values_list("status", flat=True)) == {"processed"}
    assert Fulfilment.objects.count() == 2
    assert Payment.objects.filter(order=first_seen).count() == 1
    assert [h for h in heard if h[1] in WRITTEN] == [
        ("post_save", StripeEvent, True),  # the rider
        ("post_save", Fulfilment, True),  # the known payment's order
        ("post_save", Payment, True),  # the first-seen payment
        ("post_save", Fulfilment, True),
        ("pre_save", Order, None),  # the ORM's save, for comparison
        ("post_save", Order, False),
    ]


# --- writes as save() makes them ------------------------------------------------------


@pytest.fixture
def announced():
    """The `post_save`s sent while the test runs: (sender, instance, created, using)."""
    heard: list[tuple] = []

    def receiver(sender, instance, created, using, **kwargs):
        heard.append((sender, instance, created, using))

    signals.post_save.connect(receiver, weak=False)
    yield heard
    signals.post_save.disconnect(receiver)


def test_a_row_update_writes_the_named_fields_and_stamps_auto_now(announced):
    order = OrderFactory()
    announced.clear()
    before = Order.objects.get(pk=order.pk).updated_at
    order.status = Order.Status.PROCESSING
    order.description = "not written"
    sql.row_update(order, fields=["status", "updated_at"])
    stored = Order.objects.get(pk=order.pk)
    assert stored.status == Order.Status.PROCESSING
    assert stored.description == "100 credits"
    assert stored.updated_at > before
    assert stored.updated_at == order.updated_at
    assert announced == []


def test_a_row_update_of_a_missing_row_raises_as_save_does():
    order = OrderFactory()
    Order.objects.filter(pk=order.pk).delete()
    with pytest.raises(DatabaseError, match="did not affect any rows"):
        sql.row_update(order, fields=["status"])


def test_a_row_insert_is_read_back_as_saved_and_announced_as_created(announced):
    order = OrderFactory()
    announced.clear()
    fulfilment = sql.row_insert(Fulfilment(order=order, result={"credits": 100, "note": "é"}))
    assert announced == [(Fulfilment, fulfilment, True, "default")]
    assert fulfilment is not None and fulfilment.pk is not None
    assert not fulfilment._state.adding and fulfilment._state.db == "default"
    stored = Fulfilment.objects.get(pk=fulfilment.pk)
    assert stored.order_id == order.pk
    assert stored.result == {"credits": 100, "note": "é"}
    assert stored.created_at == fulfilment.created_at  # auto_now_add stamped
    assert abs(stored.created_at - timezone.now()) < timedelta(minutes=1)


def test_a_row_insert_unless_exists_inserts_and_announces_nothing_on_a_duplicate(announced):
    payment = PaymentFactory()
    announced.clear()
    twin = Payment(
        order=payment.order,
        stripe_payment_intent_id=payment.stripe_payment_intent_id,
        status="succeeded",
        amount=payment.amount,
        currency=payment.currency,
    )
    assert sql.row_insert(twin, unless_exists="stripe_payment_intent_id") is None
    assert twin.pk is None
    assert announced == []
    [stored] = Payment.objects.filter(stripe_payment_intent_id=payment.stripe_payment_intent_id)
    assert (stored.pk, stored.status) == (payment.pk, "requires_payment_method")


# --- reads --------------------------------------------------------------------------


def test_the_payment_and_order_read_is_what_the_orm_reads():
    payment = PaymentFactory(stripe_charge_id=new_id("ch"), stripe_event_at=1_700_000_000)
    found = sql.payment_and_order_locked(intent_id=payment.stripe_payment_intent_id)
    expected = Payment.objects.select_related("order").get(pk=payment.pk)
    for field in Payment._meta.concrete_fields:
        assert getattr(found, field.attname) == getattr(expected, field.attname), field.name
    for field in Order._meta.concrete_fields:
        assert getattr(found.order, field.attname) == getattr(expected.order, field.attname)
    assert isinstance(found.order.metadata, dict)
    assert sql.payment_and_order_locked(intent_id=new_id("pi")) is None


def test_an_event_finish_by_an_attempt_that_lost_its_lease_changes_nothing():
    stored, _ = event_store(event=succeeded(OrderFactory(), new_id("pi")))
    [claimed], retaken = sql.events_claim(size=1, lease=events.LEASE, max_attempts=8)
    assert (claimed.pk, claimed.attempts, retaken) == (stored.pk, 1, False)
    StripeEvent.objects.filter(pk=claimed.pk).update(attempts=2)  # taken again since
    assert not sql.event_finish(event_id=claimed.pk, attempts=1, status="processed", note="")
    assert StripeEvent.objects.get(pk=claimed.pk).status == StripeEvent.Status.PROCESSING
    assert sql.event_finish(event_id=claimed.pk, attempts=2, status="processed", note="done")
    row = StripeEvent.objects.get(pk=claimed.pk)
    assert (row.status, row.last_error, row.lease_expires_at) == ("processed", "done", None)
    assert row.processed_at is not None
