"""What our rows keep of what Stripe sends: text longer than its column (an event's
fields, a decline's code and message) as much as fits, never a failed write; an
event's creation time when it states one; and what the worker says when it cannot
give back the events it claimed."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from django.db import transaction

from billing.models import Order, StripeEvent
from billing.services import events
from billing.services.events import event_store, events_drain
from billing.services.payments import order_transition
from tests.billing.factories import OrderFactory
from tests.stripe_events import event, payment_intent

pytestmark = pytest.mark.django_db


def test_overlong_fields_are_stored_cut_to_their_columns():
    evt = event("payment_intent.succeeded", payment_intent(id="pi_long", amount=1000))
    evt["type"] = "payment_intent." + "x" * 200
    evt["api_version"] = "2099-01-01." + "v" * 80
    evt["data"]["object"]["id"] = "pi_" + "9" * 400
    stored, created = event_store(event=evt)
    assert created
    stored.refresh_from_db()
    assert stored.type == evt["type"][:100]
    assert stored.api_version == evt["api_version"][:50]
    assert stored.object_id == evt["data"]["object"]["id"][:255]
    assert StripeEvent.objects.filter(stripe_id=evt["id"]).count() == 1


def test_another_system_s_event_keeps_its_note_cut_to_4000_characters():
    long_id = "pi_" + "9" * 5000
    evt = event("payment_intent.succeeded", payment_intent(id=long_id, amount=1000, metadata={}))
    stored, _ = event_store(event=evt)
    events_drain()
    stored.refresh_from_db()
    assert stored.status == StripeEvent.Status.NOT_OURS
    assert stored.last_error == f"PaymentIntent {long_id}"[:4000]


@pytest.mark.parametrize(("failing", "unstarted"), [(1, 3), (2, 2)])
def test_a_worker_that_cannot_give_back_its_claims_says_how_many(
    monkeypatch, caplog, failing, unstarted
):
    batch = [object(), object(), object(), object()]
    ran = []

    def fails(event):
        ran.append(event)
        if len(ran) == failing:  # the events after it are left unstarted
            raise RuntimeError("the database went away")

    def cannot_release(claimed):
        raise RuntimeError("still away")

    monkeypatch.setattr(events, "event_process", fails)
    monkeypatch.setattr(events, "_release", cannot_release)
    with caplog.at_level(logging.ERROR, logger=events.log.name), pytest.raises(RuntimeError):
        events._batch_process(batch, deadline=float("inf"))
    assert f"could not release {unstarted} claimed events" in caplog.text


def test_a_decline_s_overlong_code_and_message_are_kept_cut_to_their_columns():
    order = OrderFactory()
    code, message = "card_" + "c" * 150, "Declined: " + "m" * 700
    with transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        assert order_transition(
            locked, Order.Status.FAILED, failure_code=code, failure_message=message
        )
    order.refresh_from_db()
    assert order.status == Order.Status.FAILED
    assert (order.failure_code, order.failure_message) == (code[:100], message[:500])


def test_an_event_keeps_when_stripe_made_it_and_none_when_it_does_not_say():
    evt = event("payment_intent.succeeded", payment_intent(id="pi_when", amount=1000))
    evt["created"] = 1_767_225_600
    stored, _ = event_store(event=evt)
    stored.refresh_from_db()
    assert stored.stripe_created == datetime(2026, 1, 1, tzinfo=UTC)
    undated = event("payment_intent.succeeded", payment_intent(id="pi_undated", amount=1000))
    undated["created"] = "yesterday"
    stored, _ = event_store(event=undated)
    stored.refresh_from_db()
    assert stored.stripe_created is None
