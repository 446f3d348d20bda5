"""Webhook intake and event processing, with events shaped from Stripe's fixtures and
signed exactly as Stripe signs them."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone
from django_q.models import OrmQ

from billing.models import Fulfilment, Order, StripeEvent
from billing.services.events import event_replay, events_drain
from credits.models import CreditTransaction
from credits.selectors import credits_balance_get, credits_ledger_sum
from purchasables import hookimpl
from purchasables.registry import registry
from purchasables.types import PurchaseType, Quote
from tests.billing.conftest import in_threads, post_webhook
from tests.billing.factories import OrderFactory, PaymentFactory
from tests.factories import UserFactory
from tests.stripe_events import ROTATED_SECRET, encode, event, new_id, payment_intent, sign

pytestmark = pytest.mark.django_db


@pytest.fixture
def payment():
    return PaymentFactory()


def succeeded(payment, **kw):
    obj = payment_intent(
        id=payment.stripe_payment_intent_id,
        amount=payment.order.amount,
        metadata=payment.order.metadata,
        **kw,
    )
    return event("payment_intent.succeeded", obj)


def failed(payment):
    obj = payment_intent(
        id=payment.stripe_payment_intent_id,
        amount=payment.order.amount,
        status="requires_payment_method",
        metadata=payment.order.metadata,
    )
    return event("payment_intent.payment_failed", obj)


# --- intake ---------------------------------------------------------------------


def test_a_signed_event_is_stored_and_queued_then_processed(payment):
    evt = succeeded(payment)
    resp = post_webhook(evt)
    assert resp.status_code == 200
    assert resp.json() == {"received": True, "duplicate": False, "id": evt["id"]}
    stored = StripeEvent.objects.get(stripe_id=evt["id"])
    assert stored.status == StripeEvent.Status.PENDING
    assert stored.object_id == payment.stripe_payment_intent_id
    assert OrmQ.objects.count() == 1  # enqueued with the event
    # Nothing was fulfilled on the request path.
    assert not Fulfilment.objects.exists()

    assert events_drain() == 1
    stored.refresh_from_db()
    assert stored.status == StripeEvent.Status.PROCESSED
    assert stored.attempts == 1
    payment.order.refresh_from_db()
    assert payment.order.status == Order.Status.PAID
    assert credits_balance_get(user_id=payment.order.user_id) == 100


def test_a_body_with_a_byte_order_mark_is_stored_as_parsed(payment):
    """Stored by the one-statement path (a drain is open), not from its raw text."""
    post_webhook(succeeded(PaymentFactory()))  # opens a drain to ride on
    evt = succeeded(payment)
    resp = post_webhook(b"\xef\xbb\xbf" + encode(evt))
    assert resp.status_code == 200
    assert StripeEvent.objects.get(stripe_id=evt["id"]).payload == evt
    assert OrmQ.objects.count() == 1


def test_the_same_event_twice_is_stored_once_and_fulfils_once(payment):
    evt = succeeded(payment)
    assert post_webhook(evt).json()["duplicate"] is False
    second = post_webhook(evt)
    assert second.status_code == 200
    assert second.json()["duplicate"] is True
    assert StripeEvent.objects.count() == 1
    assert OrmQ.objects.count() == 1
    events_drain()
    events_drain()
    assert CreditTransaction.objects.count() == 1


def test_two_events_for_one_payment_fulfil_once(payment):
    """Stripe may send a second Event object for the same occurrence."""
    post_webhook(succeeded(payment))
    post_webhook(succeeded(payment))
    assert StripeEvent.objects.count() == 2
    assert events_drain() == 2
    assert Fulfilment.objects.count() == 1
    assert CreditTransaction.objects.count() == 1
    notes = sorted(StripeEvent.objects.values_list("last_error", flat=True))
    assert notes == ["order is now paid", "order is paid; paid is stale"]


def test_two_events_for_a_payment_of_one_minor_unit_pay_once_and_refund_nothing():
    from billing.models import Refund

    payment = PaymentFactory(order__amount=1)
    post_webhook(succeeded(payment))
    post_webhook(succeeded(payment))
    assert events_drain() == 2
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.PAID
    assert not Refund.objects.exists()
    notes = sorted(StripeEvent.objects.values_list("last_error", flat=True))
    assert notes == ["order is now paid", "order is paid; paid is stale"]


def test_payment_failed_after_succeeded_leaves_the_order_paid(payment):
    post_webhook(succeeded(payment))
    events_drain()
    post_webhook(failed(payment))
    events_drain()
    payment.order.refresh_from_db()
    assert payment.order.status == Order.Status.PAID
    assert payment.order.failure_code == ""
    assert CreditTransaction.objects.count() == 1


def test_succeeded_after_failed_pays_the_order(payment):
    """A failed attempt is not final: the customer retried the same PaymentIntent."""
    post_webhook(failed(payment))
    events_drain()
    payment.order.refresh_from_db()
    assert payment.order.status == Order.Status.FAILED
    assert payment.order.failure_code == "insufficient_funds"
    post_webhook(succeeded(payment))
    events_drain()
    payment.order.refresh_from_db()
    assert payment.order.status == Order.Status.PAID
    assert credits_balance_get(user_id=payment.order.user_id) == 100


def test_localstripe_event_shape_is_read(payment):
    """API 2017-08-15: an embedded charge in latest_charge and no amount_received."""
    obj = payment_intent(
        id=payment.stripe_payment_intent_id,
        amount=payment.order.amount,
        metadata=payment.order.metadata,
        latest_charge={"id": "ch_embedded", "object": "charge", "amount": 1000},
    )
    del obj["amount_received"]
    evt = event("payment_intent.succeeded", obj)
    evt["api_version"] = "2017-08-15"
    post_webhook(evt)
    events_drain()
    payment.refresh_from_db()
    assert payment.stripe_charge_id == "ch_embedded"
    assert payment.amount_received == 1000
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.PAID


def test_an_unknown_event_type_is_stored_and_ignored(db):
    evt = event("customer.tax_id.created", {"id": "txi_123", "object": "tax_id"})
    assert post_webhook(evt).status_code == 200
    events_drain()
    stored = StripeEvent.objects.get(stripe_id=evt["id"])
    assert stored.status == StripeEvent.Status.IGNORED


def test_an_event_for_a_payment_that_is_not_ours_is_recorded_as_such_and_changes_nothing(db):
    obj = payment_intent(id="pi_someone_else", amount=500, metadata={})
    post_webhook(event("payment_intent.succeeded", obj))
    events_drain()
    stored = StripeEvent.objects.get()
    assert stored.status == StripeEvent.Status.NOT_OURS
    assert stored.attempts == 1
    assert "another system's" in stored.last_error
    assert not Order.objects.exists()


@pytest.mark.parametrize("amount", [1, 999, 1001])
def test_an_amount_that_differs_from_the_order_fails_at_once_and_grants_nothing(payment, amount):
    """Less than the order costs, or more: either way the payment is not the order's."""
    evt = succeeded(payment)
    evt["data"]["object"]["amount"] = amount
    post_webhook(evt)
    events_drain()
    stored = StripeEvent.objects.get()
    assert stored.status == StripeEvent.Status.FAILED
    assert stored.attempts == 1
    assert "PaymentMismatchError" in stored.last_error
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.PENDING
    assert not CreditTransaction.objects.exists()


# --- signatures ------------------------------------------------------------------


@pytest.mark.parametrize(
    "tamper",
    [
        "missing",
        "forged",
        "wrong_secret",
        "stale",
        "body_altered",
        "new_timestamp_old_signature",
        "not_utf8",
    ],
)
def test_a_bad_signature_is_refused_and_nothing_is_stored(payment, tamper):
    evt = succeeded(payment)
    body = encode(evt)
    header = sign(body)
    if tamper == "missing":
        header = None
    elif tamper == "forged":
        header = f"t={int(time.time())},v1={'0' * 64}"
    elif tamper == "wrong_secret":
        header = sign(body, "whsec_attacker")
    elif tamper == "stale":
        header = sign(body, timestamp=int(time.time()) - 301)
    elif tamper == "body_altered":
        body = body.replace(b'"amount": 1000', b'"amount": 1')
    elif tamper == "new_timestamp_old_signature":
        old = sign(body, timestamp=int(time.time()) - 400)
        header = f"t={int(time.time())}," + old.split(",", 1)[1]
    elif tamper == "not_utf8":
        body = b"\xff\xfe" + body
    headers = {"Stripe-Signature": header} if header else {}
    resp = Client().post(
        "/api/v1/payments/webhook/", body, content_type="application/json", headers=headers
    )
    assert resp.status_code == 400
    assert resp.json()["code"] == "bad_signature"
    assert not StripeEvent.objects.exists()
    assert not OrmQ.objects.exists()


def test_a_signature_within_the_tolerance_is_accepted(payment):
    resp = post_webhook(succeeded(payment), timestamp=int(time.time()) - 290)
    assert resp.status_code == 200


def test_both_secrets_are_accepted_during_rotation(payment):
    assert post_webhook(succeeded(payment)).status_code == 200
    assert post_webhook(succeeded(payment), secret=ROTATED_SECRET).status_code == 200
    assert StripeEvent.objects.count() == 2


def test_a_signed_body_that_is_not_an_event_is_refused(db):
    body = b'["not", "an", "event"]'
    resp = Client().post(
        "/api/v1/payments/webhook/",
        body,
        content_type="application/json",
        headers={"Stripe-Signature": sign(body)},
    )
    assert resp.status_code == 400
    assert not StripeEvent.objects.exists()


# --- failures, retries, replay -----------------------------------------------------


class FlakyCredits:
    """A purchase type whose fulfilment writes to the ledger, then fails `failures` times."""

    def __init__(self, failures: int, error: str = "the plugin fell over half-way") -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    @hookimpl
    def tollgate_purchase_types(self):
        return [PurchaseType(name="flaky", order_type="credit", label="Flaky")]

    @hookimpl
    def tollgate_quote(self, request):
        return Quote(amount=1000, currency="usd", description="flaky", data={"credits": 100})

    @hookimpl
    def tollgate_fulfil(self, order):
        from credits.services import credits_grant

        self.calls += 1
        credits_grant(user_id=order.user_id, amount=100, reference=f"order-{order.order_id}")
        if self.calls <= self.failures:
            raise RuntimeError(self.error)
        return {"ok": True}


def _make_due(evt_id: str) -> None:
    StripeEvent.objects.filter(stripe_id=evt_id).update(next_attempt_at=timezone.now())


def test_a_failure_half_way_rolls_back_and_the_retry_fulfils_once():
    plugin = FlakyCredits(failures=1)
    with registry.plugin_registered(plugin, name="flaky"):
        payment = PaymentFactory(order__purchase_type="flaky")
        evt = succeeded(payment)
        post_webhook(evt)
        events_drain()
        stored = StripeEvent.objects.get()
        assert stored.status == StripeEvent.Status.RETRYING
        assert "the plugin fell over half-way" in stored.last_error
        assert stored.next_attempt_at > timezone.now()
        # Rolled back: no ledger entry, no fulfilment, order not paid.
        assert not CreditTransaction.objects.exists()
        assert not Fulfilment.objects.exists()
        assert Order.objects.get(pk=payment.order_id).status == Order.Status.PENDING
        # Not due yet: the back-off holds it.
        assert events_drain() == 0

        _make_due(evt["id"])
        assert events_drain() == 1
        stored.refresh_from_db()
        assert stored.status == StripeEvent.Status.PROCESSED
        assert stored.attempts == 2
        assert Order.objects.get(pk=payment.order_id).status == Order.Status.PAID
        assert CreditTransaction.objects.count() == 1
        assert credits_ledger_sum(user_id=payment.order.user_id) == 100


def test_after_the_last_attempt_the_event_is_failed_and_can_be_replayed(settings):
    settings.TOLLGATE = {**settings.TOLLGATE, "EVENT_MAX_ATTEMPTS": 3}
    plugin = FlakyCredits(failures=3)
    with registry.plugin_registered(plugin, name="flaky"):
        payment = PaymentFactory(order__purchase_type="flaky")
        evt = succeeded(payment)
        post_webhook(evt)
        for _ in range(3):
            _make_due(evt["id"])
            events_drain()
        stored = StripeEvent.objects.get()
        assert stored.status == StripeEvent.Status.FAILED
        assert stored.attempts == 3
        assert stored.next_attempt_at is None
        _make_due(evt["id"])
        assert events_drain() == 0  # failed events stay put until replayed

        event_replay(event_id=stored.pk)
        assert events_drain() == 1
        stored.refresh_from_db()
        assert stored.status == StripeEvent.Status.PROCESSED
        assert stored.attempts == 1  # a fresh budget: the replay is its first attempt
        assert CreditTransaction.objects.count() == 1


def test_each_failed_attempt_waits_its_step_of_the_back_off_and_then_its_last(settings):
    settings.TOLLGATE = {
        **settings.TOLLGATE,
        "EVENT_RETRY_BACKOFF": [10, 20, 40],
        "EVENT_MAX_ATTEMPTS": 5,
    }
    plugin = FlakyCredits(failures=4)
    with registry.plugin_registered(plugin, name="flaky"):
        payment = PaymentFactory(order__purchase_type="flaky")
        evt = succeeded(payment)
        post_webhook(evt)
        waits = []
        for _ in range(4):
            _make_due(evt["id"])
            before = timezone.now()
            assert events_drain() == 1
            stored = StripeEvent.objects.get()
            assert stored.status == StripeEvent.Status.RETRYING
            waits.append(stored.next_attempt_at - before)
        # Attempt n waits the schedule's nth step; past its end, the last step again.
        for wait, seconds in zip(waits, [10, 20, 40, 40], strict=True):
            assert timedelta(seconds=seconds) <= wait < timedelta(seconds=seconds + 5)
        assert stored.attempts == 4
        assert not CreditTransaction.objects.exists()


def test_an_event_past_a_lowered_attempt_limit_fails_at_its_next_failure(settings):
    plugin = FlakyCredits(failures=10)
    with registry.plugin_registered(plugin, name="flaky"):
        evt = succeeded(PaymentFactory(order__purchase_type="flaky"))
        post_webhook(evt)
        StripeEvent.objects.update(status=StripeEvent.Status.RETRYING, attempts=4)
        settings.TOLLGATE = {**settings.TOLLGATE, "EVENT_MAX_ATTEMPTS": 3}
        assert events_drain() == 1
    stored = StripeEvent.objects.get()
    assert (stored.status, stored.attempts) == (StripeEvent.Status.FAILED, 5)
    assert stored.next_attempt_at is None


def test_a_failure_keeps_the_last_4000_characters_of_its_traceback():
    error = "the plugin fell over: " + "x" * 5000 + " (the end)"
    with registry.plugin_registered(FlakyCredits(failures=1, error=error), name="flaky"):
        post_webhook(succeeded(PaymentFactory(order__purchase_type="flaky")))
        events_drain()
    stored = StripeEvent.objects.get()
    assert stored.status == StripeEvent.Status.RETRYING
    assert len(stored.last_error) == 4000
    assert stored.last_error.endswith(error[-3000:] + "\n")  # the end says what broke


def test_an_event_whose_worker_died_is_taken_again_after_its_lease(payment):
    evt = succeeded(payment)
    post_webhook(evt)
    # A worker claimed it (attempt counted) and was killed before finishing.
    StripeEvent.objects.filter(stripe_id=evt["id"]).update(
        status=StripeEvent.Status.PROCESSING,
        attempts=1,
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )
    assert events_drain() == 0  # still leased
    StripeEvent.objects.filter(stripe_id=evt["id"]).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert events_drain() == 1
    stored = StripeEvent.objects.get()
    assert stored.status == StripeEvent.Status.PROCESSED
    assert stored.attempts == 2
    assert CreditTransaction.objects.count() == 1


# --- concurrency (real threads, real PostgreSQL transactions) --------------------------


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_deliveries_of_one_event_store_it_once_and_fulfil_once():
    payment = PaymentFactory()
    evt = succeeded(payment)
    body = encode(evt)

    def deliver(i: int) -> int:
        resp = Client().post(
            "/api/v1/payments/webhook/",
            body,
            content_type="application/json",
            headers={"Stripe-Signature": sign(body)},
        )
        return resp.status_code

    assert in_threads(20, deliver) == [200] * 20
    assert StripeEvent.objects.count() == 1
    assert in_threads(20, lambda i: events_drain()).count(1) == 1
    assert Fulfilment.objects.count() == 1
    assert CreditTransaction.objects.count() == 1
    assert credits_balance_get(user_id=payment.order.user_id) == 100


@pytest.mark.django_db(transaction=True)
def test_twenty_distinct_events_for_one_payment_processed_concurrently_fulfil_once():
    payment = PaymentFactory()
    for _ in range(20):
        post_webhook(succeeded(payment))
    assert StripeEvent.objects.count() == 20
    taken = in_threads(20, lambda i: events_drain(limit=1))
    assert all(isinstance(t, int) for t in taken), taken
    assert sum(taken) == 20
    assert set(StripeEvent.objects.values_list("status", flat=True)) == {"processed"}
    assert Fulfilment.objects.count() == 1
    assert CreditTransaction.objects.count() == 1
    assert credits_balance_get(user_id=payment.order.user_id) == 100


@pytest.mark.django_db(transaction=True)
def test_news_of_a_new_payment_applied_by_several_workers_at_once_pays_once_and_fails_none():
    """Each worker finds no payment row, then waits for the order's lock; the first
    records the payment, and the others find it is their order's and change nothing.
    (Ids past the first few hundred: compared as numbers, not as objects.)"""
    order = OrderFactory(id=1_000_011, user=UserFactory(id=2_000_011))
    obj = payment_intent(id=new_id("pi"), amount=order.amount, metadata=order.metadata)
    for _ in range(4):
        post_webhook(event("payment_intent.succeeded", obj))
    workers = []
    with transaction.atomic():
        Order.objects.select_for_update().get(pk=order.pk)  # held until all four wait
        for _ in range(4):
            workers.append(threading.Thread(target=_drain_one_and_close))
            workers[-1].start()
        deadline = time.monotonic() + 30
        while _waiting_for_a_lock() < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        all_waited = _waiting_for_a_lock() == 4
    for worker in workers:
        worker.join(timeout=60)
    assert all_waited
    statuses = list(StripeEvent.objects.values_list("status", flat=True))
    assert statuses == [StripeEvent.Status.PROCESSED] * 4, StripeEvent.objects.values_list(
        "last_error", flat=True
    )
    assert Order.objects.get(pk=order.pk).status == Order.Status.PAID
    assert Fulfilment.objects.count() == 1
    assert credits_balance_get(user_id=order.user_id) == 100


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("named", ["later", "earlier"])
def test_news_of_a_payment_recorded_meanwhile_for_another_order_never_pays_the_order_it_names(
    named,
):
    """The PaymentIntent names one order; while its worker waits for that order's lock,
    the payment is recorded for another (whose Checkout Session cited it). The worker
    finds the payment is not its order's: nothing is paid, for a person to look at."""
    earlier, later = OrderFactory(), OrderFactory()
    assert earlier.pk < later.pk
    order, other = (later, earlier) if named == "later" else (earlier, later)
    obj = payment_intent(id=new_id("pi"), amount=order.amount, metadata=order.metadata)
    post_webhook(event("payment_intent.succeeded", obj))
    with transaction.atomic():
        Order.objects.select_for_update().get(pk=order.pk)
        PaymentFactory(order=other, stripe_payment_intent_id=obj["id"])
        worker = threading.Thread(target=_drain_one_and_close)
        worker.start()
        deadline = time.monotonic() + 30
        while _waiting_for_a_lock() < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    worker.join(timeout=60)
    stored = StripeEvent.objects.get()
    assert stored.status == StripeEvent.Status.FAILED
    assert "PaymentMismatchError" in stored.last_error
    assert Order.objects.get(pk=later.pk).status == Order.Status.PENDING
    assert Order.objects.get(pk=earlier.pk).status == Order.Status.PENDING
    assert not Fulfilment.objects.exists()
    assert not CreditTransaction.objects.exists()


def _drain_one_and_close() -> None:
    try:
        events_drain(limit=1)
    finally:
        connection.close()


def _waiting_for_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # else read once per transaction
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_an_event_whose_worker_dies_every_time_ends_failed(payment, settings):
    settings.TOLLGATE = {**settings.TOLLGATE, "EVENT_MAX_ATTEMPTS": 3}
    evt = succeeded(payment)
    post_webhook(evt)
    StripeEvent.objects.filter(stripe_id=evt["id"]).update(
        status=StripeEvent.Status.PROCESSING,
        attempts=3,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    assert events_drain() == 0
    stored = StripeEvent.objects.get()
    assert stored.status == StripeEvent.Status.FAILED
    assert "stopped during each of its 3 attempts" in stored.last_error
    assert not CreditTransaction.objects.exists()


def test_a_stale_failure_cannot_pull_back_a_payment_that_succeeded(payment):
    post_webhook(succeeded(payment))
    events_drain()
    post_webhook(failed(payment))
    events_drain()
    payment.refresh_from_db()
    assert payment.status == "succeeded"
    assert payment.amount_received == 1000


def test_older_news_does_not_move_an_unpaid_order_backwards(payment):
    processing = event(
        "payment_intent.processing",
        payment_intent(
            id=payment.stripe_payment_intent_id,
            amount=1000,
            status="processing",
            metadata=payment.order.metadata,
        ),
    )
    declined = failed(payment)
    declined["created"] = processing["created"] + 5
    post_webhook(declined)
    events_drain()
    post_webhook(processing)  # delivered late
    events_drain()
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.FAILED


def processing(payment):
    obj = payment_intent(
        id=payment.stripe_payment_intent_id,
        amount=1000,
        status="processing",
        metadata=payment.order.metadata,
    )
    return event("payment_intent.processing", obj)


def test_news_from_the_same_second_as_the_last_is_not_older_and_applies(payment):
    declined = failed(payment)
    declined["created"] = (news := processing(payment))["created"]
    post_webhook(news)
    events_drain()
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.PROCESSING
    post_webhook(declined)
    events_drain()
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.FAILED


def test_a_decline_longer_than_the_order_keeps_is_kept_to_its_first_characters(payment):
    code, message = "card_declined_" + "x" * 120, "Your card was declined. " * 30
    declined = failed(payment)
    declined["data"]["object"]["last_payment_error"].update(decline_code=code, message=message)
    post_webhook(declined)
    events_drain()
    order = Order.objects.get(pk=payment.order_id)
    assert order.status == Order.Status.FAILED
    assert (order.failure_code, order.failure_message) == (code[:100], message[:500])


def test_a_success_older_than_the_last_news_still_pays_the_order(payment):
    news = processing(payment)
    paid = succeeded(payment)
    paid["created"] = news["created"] - 5
    post_webhook(news)
    events_drain()
    post_webhook(paid)  # delivered late
    events_drain()
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.PAID
    assert credits_balance_get(user_id=payment.order.user_id) == 100


def test_reading_the_payment_from_stripe_keeps_older_news_stale(payment):
    """The order's payment read again from Stripe (a request, or the stuck-order
    recheck) carries no event time: news older than the last event stays stale."""
    from billing.services.payments import payment_record
    from billing.stripe_objects import payment_intent_from_payload

    news = processing(payment)
    post_webhook(news)
    events_drain()
    read_again = payment_intent_from_payload(news["data"]["object"])
    assert not payment_record(intent=read_again, target=Order.Status.PROCESSING).applied
    declined = failed(payment)
    declined["created"] = news["created"] - 5
    post_webhook(declined)
    events_drain()
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.PROCESSING
    assert "stale" in StripeEvent.objects.get(stripe_id=declined["id"]).last_error


def test_a_payment_that_succeeds_after_the_order_was_canceled_is_refunded(payment):
    from billing.models import Refund

    Order.objects.filter(pk=payment.order_id).update(status=Order.Status.CANCELED)
    post_webhook(succeeded(payment))
    events_drain()
    order = Order.objects.get(pk=payment.order_id)
    assert order.status == Order.Status.CANCELED
    [refund] = Refund.objects.all()
    assert (refund.source, refund.amount, refund.reverses_order) == ("automatic", 1000, False)
    assert "after the order was canceled" in refund.reason
    assert OrmQ.objects.filter(key__isnull=False).count() >= 1  # its submission is queued
    assert not CreditTransaction.objects.exists()
    post_webhook(succeeded(payment))  # told again: still one refund
    events_drain()
    assert Refund.objects.count() == 1


def test_a_second_payment_for_a_paid_order_is_refunded_and_the_first_kept(payment):
    from billing.models import Refund

    post_webhook(succeeded(payment))
    events_drain()
    second = PaymentFactory(order=payment.order)
    post_webhook(succeeded(second))
    events_drain()
    [refund] = Refund.objects.all()
    assert refund.payment == second
    assert "second payment" in refund.reason
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.PAID
    assert CreditTransaction.objects.count() == 1


def test_the_workers_log_lines_name_the_event_and_the_order(payment):
    import io
    import json
    import logging

    from platform_core.ops.logs import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("billing")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        evt = succeeded(payment)
        post_webhook(evt)
        events_drain()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    fulfilled = next(line for line in lines if "fulfilled" in line["message"])
    assert fulfilled["stripe_event_id"] == evt["id"]
    assert fulfilled["event_type"] == "payment_intent.succeeded"
    assert fulfilled["order_id"] == payment.order_id
    assert fulfilled["user_id"] == payment.order.user_id
    assert fulfilled["payment_intent_id"] == payment.stripe_payment_intent_id
