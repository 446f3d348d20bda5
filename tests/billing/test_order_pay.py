"""Paying an unpaid order again: `POST /api/v1/payments/orders/{id}/pay/`.

Over real HTTP to a live server, with localstripe as Stripe and its signed
webhooks delivered back: a failed 3-D Secure check fails the order and says so,
and the customer pays the same order again with another card; an order made
without a card is paid later; a declined card is followed by a good one. The
order's one PaymentIntent is reused, so there is one charge, and it is
fulfilled once.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
from django.db import connection, transaction
from django.utils import timezone

from billing.models import Fulfilment, Order, Payment, Refund
from billing.services.events import events_drain
from billing.services.orders import order_pay
from billing.services.payments import order_transition, payment_apply, payment_record
from billing.stripe_objects import PaymentIntentData
from bookings.models import Booking, SeatHold, Service
from credits.selectors import credits_balance_get
from kernel.errors import ConflictError
from tests.billing.conftest import wait_for_event
from tests.billing.factories import OrderFactory
from tests.billing.test_e2e_payments import BUY_100, Http, card
from tests.bookings.factories import ServiceFactory, ServiceSessionFactory
from tests.bookings.purchases import http_for, purchase

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

THREE_D_SECURE = "4000002500003155"
DECLINED = "4000000000000341"
GOOD = "4242424242424242"


@pytest.fixture
def http(live_server, user) -> Http:
    return http_for(live_server, user)


@pytest.fixture
def other_http(live_server, other_user) -> Http:
    return http_for(live_server, other_user)


def pay(http: Http, order_id: int, payment_method_id: str | int):
    return http.post(f"/payments/orders/{order_id}/pay/", {"payment_method_id": payment_method_id})


def test_failed_3d_secure_fails_the_order_then_another_card_pays_it_once(http, live_stripe, user):
    created = http.post("/payments/create/", {**BUY_100, "payment_method_id": card(THREE_D_SECURE)})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "requires_action"

    live_stripe.authenticate_3ds(body["payment_intent_id"], body["client_secret"], success=False)
    wait_for_event("payment_intent.payment_failed", body["payment_intent_id"])
    events_drain()
    seen = http.get(f"/payments/orders/{body['order_id']}/").json()
    assert seen["status"] == "failed"
    assert seen["failure_code"] == "payment_intent_authentication_failure"
    assert "authentication" in seen["failure_message"]

    paid = pay(http, body["order_id"], card(GOOD))
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "paid"
    assert paid.json()["order_id"] == body["order_id"]
    order = Order.objects.get(pk=body["order_id"])
    assert order.status == Order.Status.PAID
    assert (order.failure_code, order.pay_attempts) == ("", 1)
    # The same PaymentIntent, charged once.
    assert [p.stripe_payment_intent_id for p in order.payments.all()] == [body["payment_intent_id"]]
    wait_for_event("payment_intent.succeeded", body["payment_intent_id"])
    events_drain()
    assert Fulfilment.objects.filter(order=order).count() == 1
    assert credits_balance_get(user_id=user.pk) == 100
    assert not order.refunds.exists()


def test_an_order_made_without_a_card_is_paid_later(http, live_stripe, user):
    created = http.post("/payments/create/", BUY_100)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "pending"

    paid = pay(http, created.json()["order_id"], "pm_card_visa")
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "paid"
    assert paid.json()["payment_intent_id"] == created.json()["payment_intent_id"]
    assert credits_balance_get(user_id=user.pk) == 100


def test_a_declined_card_then_a_good_one_pays_the_same_order(http, live_stripe, user):
    declined = http.post("/payments/create/", {**BUY_100, "payment_method_id": card(DECLINED)})
    assert declined.status_code == 402, declined.text
    order_id = declined.json()["extra"]["order_id"]
    first = http.get(f"/payments/orders/{order_id}/").json()
    assert first["status"] == "failed"
    assert first["failure_code"] and first["failure_message"]

    again = pay(http, order_id, card(DECLINED))
    assert again.status_code == 402, again.text
    assert again.json()["code"] == "card_declined"
    # The second decline is the order's news too: the buyer sees why it failed again.
    seen = http.get(f"/payments/orders/{order_id}/").json()
    assert (seen["status"], seen["failure_code"], seen["failure_message"]) == (
        "failed",
        first["failure_code"],
        first["failure_message"],
    )

    paid = pay(http, order_id, card(GOOD))
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "paid"
    order = Order.objects.get(pk=order_id)
    assert order.pay_attempts == 2
    assert order.payments.count() == 1
    assert Fulfilment.objects.filter(order=order).count() == 1
    assert credits_balance_get(user_id=user.pk) == 100


def test_a_paid_order_cannot_be_paid_again_and_others_orders_are_not_found(
    http, other_http, live_stripe, user
):
    created = http.post("/payments/create/", {**BUY_100, "payment_method_id": "pm_card_visa"})
    order_id = created.json()["order_id"]
    assert created.json()["status"] == "paid"

    again = pay(http, order_id, "pm_card_visa")
    assert again.status_code == 409, again.text
    assert again.json()["code"] == "order_state_conflict"
    assert again.json()["extra"]["status"] == "paid"

    pending = http.post("/payments/create/", BUY_100).json()["order_id"]
    assert pay(other_http, pending, "pm_card_visa").status_code == 404
    assert Order.objects.get(pk=pending).status == Order.Status.PENDING
    assert credits_balance_get(user_id=user.pk) == 100


def test_a_cancelled_order_cannot_be_paid(http, live_stripe):
    order_id = http.post("/payments/create/", BUY_100).json()["order_id"]
    assert http.post(f"/payments/orders/{order_id}/cancel/", {}).status_code == 200
    refused = pay(http, order_id, "pm_card_visa")
    assert refused.status_code == 409
    assert refused.json()["extra"]["status"] == "canceled"


def test_a_payment_the_webhook_has_not_brought_is_not_paid_over(http, live_stripe, user):
    """The customer confirmed in the browser, then pressed "pay" again: no second charge."""
    from tests.bookings.purchases import stripe_client

    created = http.post("/payments/create/", BUY_100).json()
    client = stripe_client()
    client.v1.payment_intents.update(
        created["payment_intent_id"], params={"payment_method": "pm_card_visa"}
    )
    client.v1.payment_intents.confirm(created["payment_intent_id"])

    refused = pay(http, created["order_id"], "pm_card_visa")
    assert refused.status_code == 409, refused.text
    order = Order.objects.get(pk=created["order_id"])
    assert order.status == Order.Status.PAID
    assert order.payments.count() == 1
    assert credits_balance_get(user_id=user.pk) == 100


@pytest.fixture
def one_seat(db) -> Service:
    service = ServiceFactory(name="Wheel throwing", kind=Service.Kind.WORKSHOP, price=4000)
    ServiceSessionFactory(service=service, capacity=1)
    return service


def test_a_failed_order_takes_its_free_seat_again_and_is_booked_once(http, live_stripe, one_seat):
    session = one_seat.sessions.get()
    failed = http.post("/payments/create/", purchase(one_seat, payment_method_id=card(DECLINED)))
    assert failed.status_code == 402, failed.text
    order_id = failed.json()["extra"]["order_id"]
    assert not SeatHold.objects.live(timezone.now()).filter(order_id=order_id).exists()

    paid = pay(http, order_id, card(GOOD))
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "paid"
    assert Booking.objects.filter(order_id=order_id, session=session).count() == 1
    assert not SeatHold.objects.filter(order_id=order_id, status="active").exists()


def test_a_failed_order_whose_seat_was_taken_is_refused_409(
    http, other_http, live_stripe, one_seat
):
    failed = http.post("/payments/create/", purchase(one_seat, payment_method_id=card(DECLINED)))
    assert failed.status_code == 402, failed.text
    order_id = failed.json()["extra"]["order_id"]
    bought = other_http.post("/payments/create/", purchase(one_seat))
    assert bought.status_code == 201, bought.text

    refused = pay(http, order_id, card(GOOD))
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "seats_unavailable"
    order = Order.objects.get(pk=order_id)
    assert order.status == Order.Status.FAILED
    assert order.payments.get().status != "succeeded"


def succeeded_intent(order: Order, intent_id: str) -> PaymentIntentData:
    return PaymentIntentData(
        id=intent_id,
        status="succeeded",
        amount=order.amount,
        currency=order.currency,
        client_secret=f"{intent_id}_secret_x",
        metadata=dict(order.metadata),
        amount_received=order.amount,
        latest_charge_id=f"ch_{intent_id}",
        last_error_code="",
        last_error_message="",
    )


def cancel_holding_the_lock(order_id: int, *, locked: threading.Event, hold_for: float) -> bool:
    """What a cancel does: lock the order, then move it to canceled, slowly."""
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        locked.set()
        time.sleep(hold_for)
        return order_transition(order, Order.Status.CANCELED)


def run_both(first, second) -> list:
    results: list = [None, None]

    def run(i: int, work) -> None:
        try:
            results[i] = work()
        except Exception as exc:  # asserted on below
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, w)) for i, w in enumerate((first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_a_payment_seen_before_its_row_racing_a_cancel_ends_canceled_and_refunded(user):
    """The new attempt's success arrives while a cancel holds the order's lock and
    before the attempt's Payment row exists: the order stays cancelled and the
    payment is refunded, once; never paid and cancelled both, never neither."""
    order = OrderFactory(user=user)
    locked = threading.Event()
    intent = succeeded_intent(order, "pi_race_cancel_first")

    def payment() -> object:
        assert locked.wait(10)
        return payment_record(intent=intent, target=Order.Status.PAID)

    canceled, outcome = run_both(
        lambda: cancel_holding_the_lock(order.pk, locked=locked, hold_for=0.5), payment
    )
    assert canceled is True, canceled
    assert not isinstance(outcome, Exception), outcome
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELED
    assert not Fulfilment.objects.filter(order=order).exists()
    payment_row = Payment.objects.get(stripe_payment_intent_id=intent.id)
    assert (payment_row.order_id, payment_row.status) == (order.pk, "succeeded")
    [refund] = Refund.objects.filter(order=order)
    assert (refund.source, refund.amount, refund.reverses_order) == ("automatic", 1000, False)
    assert credits_balance_get(user_id=user.pk) == 0


def test_a_payment_that_takes_the_lock_first_wins_and_the_cancel_does_nothing(user):
    order = OrderFactory(user=user)
    applied = threading.Event()
    intent = succeeded_intent(order, "pi_race_payment_first")

    def payment() -> object:
        with transaction.atomic():
            outcome = payment_apply(intent=intent, target=Order.Status.PAID)
            applied.set()
            time.sleep(0.5)
        return outcome

    def cancel() -> bool:
        assert applied.wait(10)
        return cancel_holding_the_lock(order.pk, locked=threading.Event(), hold_for=0)

    outcome, canceled = run_both(payment, cancel)
    assert canceled is False, canceled
    assert outcome.applied, outcome
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert Fulfilment.objects.filter(order=order).count() == 1
    assert not Refund.objects.filter(order=order).exists()
    assert credits_balance_get(user_id=user.pk) == 100


def test_a_cancel_overtaken_by_a_payment_is_refused_and_the_order_stays_paid(user, monkeypatch):
    """While Stripe cancels the order's PaymentIntent, another attempt (the buyer paying
    in a second tab) succeeds and is applied first: the cancel cannot move the paid order,
    and says so (409) rather than answering as if it had cancelled it."""
    from datetime import timedelta

    from billing import gateway
    from billing.services.orders import order_cancel
    from tests.billing.factories import PaymentFactory

    order = OrderFactory(user=user)
    Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - timedelta(minutes=3))
    PaymentFactory(order=order, stripe_payment_intent_id="pi_first_tab")

    def cancel_while_the_other_tab_pays(*, payment_intent_id: str, idempotency_key: str):
        payment_record(intent=succeeded_intent(order, "pi_second_tab"), target=Order.Status.PAID)
        cancelled = succeeded_intent(order, payment_intent_id)
        return dataclasses.replace(cancelled, status="canceled", amount_received=0)

    monkeypatch.setattr(gateway, "payment_intent_cancel", cancel_while_the_other_tab_pays)
    with pytest.raises(ConflictError, match="could not be cancelled; it is paid"):
        order_cancel(order_id=order.pk, user_id=user.pk)
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert Fulfilment.objects.filter(order=order).count() == 1
    assert credits_balance_get(user_id=user.pk) == 100


def test_a_second_success_seen_before_its_row_is_refunded_and_the_first_kept(user):
    """Two attempts of one order both succeeded (say a Checkout page still open, and
    another card): the second, first seen in its webhook, is refunded automatically."""
    order = OrderFactory(user=user)
    payment_record(intent=succeeded_intent(order, "pi_first_attempt"), target=Order.Status.PAID)
    outcome = payment_record(
        intent=succeeded_intent(order, "pi_second_attempt"), target=Order.Status.PAID
    )
    assert not outcome.applied
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    [refund] = Refund.objects.filter(order=order)
    assert refund.payment.stripe_payment_intent_id == "pi_second_attempt"
    assert (refund.source, refund.reverses_order) == ("automatic", False)
    assert Fulfilment.objects.filter(order=order).count() == 1
    assert credits_balance_get(user_id=user.pk) == 100


def test_a_second_success_told_again_applies_nothing_and_is_refunded_once(user):
    order = OrderFactory(user=user)
    payment_record(intent=succeeded_intent(order, "pi_first_paid"), target=Order.Status.PAID)
    second = succeeded_intent(order, "pi_second_told_twice")
    outcomes = [payment_record(intent=second, target=Order.Status.PAID) for _ in range(2)]
    assert [o.applied for o in outcomes] == [False, False]
    assert "paid is stale" in outcomes[1].reason
    assert Refund.objects.filter(order=order).count() == 1


def test_an_older_second_success_told_again_applies_nothing_and_is_refunded_once(user):
    """The second attempt's success arrives after newer news of it, twice: its row keeps
    the newer status, its refund is stored once, and nothing counts as applied."""
    order = OrderFactory(user=user)
    payment_record(intent=succeeded_intent(order, "pi_first_paid"), target=Order.Status.PAID)
    second = succeeded_intent(order, "pi_second_late")
    newer = dataclasses.replace(second, status="processing", amount_received=0)
    payment_record(intent=newer, target=Order.Status.PROCESSING, as_of=2_000_000_000)
    outcomes = [
        payment_record(intent=second, target=Order.Status.PAID, as_of=1_999_999_990)
        for _ in range(2)
    ]
    assert [o.applied for o in outcomes] == [False, False]
    assert "already being refunded" in outcomes[1].reason
    [refund] = Refund.objects.filter(order=order)
    assert refund.payment.stripe_payment_intent_id == "pi_second_late"
    assert Order.objects.get(pk=order.pk).status == Order.Status.PAID


def test_a_saved_card_pays_by_its_id_and_another_users_card_is_404(
    api, other_api, user, stripe_server
):
    from tests.billing.test_cards import add_card_via_setup_intent

    [saved] = add_card_via_setup_intent(api)["payment_methods"]
    [theirs] = add_card_via_setup_intent(other_api)["payment_methods"]
    order_id = api.post("/payments/create/", BUY_100).json()["order_id"]

    stolen = api.post(f"/payments/orders/{order_id}/pay/", {"payment_method_id": theirs["id"]})
    assert stolen.status_code == 404, stolen.content
    paid = api.post(f"/payments/orders/{order_id}/pay/", {"payment_method_id": saved["id"]})
    assert paid.status_code == 200, paid.content
    assert paid.json()["status"] == "paid"
    assert credits_balance_get(user_id=user.pk) == 100


def test_news_of_the_failed_attempt_that_arrives_late_does_not_fail_the_new_one(
    http, live_stripe, user
):
    created = http.post(
        "/payments/create/", {**BUY_100, "payment_method_id": card(THREE_D_SECURE)}
    ).json()
    intent_id = created["payment_intent_id"]
    live_stripe.authenticate_3ds(intent_id, created["client_secret"], success=False)
    late = wait_for_event("payment_intent.payment_failed", intent_id)  # stored, not processed

    # Paid again with a card that wants 3-D Secure too, before the worker ran.
    again = pay(http, created["order_id"], card(THREE_D_SECURE))
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "requires_action"
    events_drain()
    late.refresh_from_db()
    assert late.status == "processed"
    assert "stale" in late.last_error
    order = Order.objects.get(pk=created["order_id"])
    assert order.status == Order.Status.REQUIRES_ACTION

    live_stripe.authenticate_3ds(intent_id, again.json()["client_secret"], success=True)
    wait_for_event("payment_intent.succeeded", intent_id)
    events_drain()
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert Fulfilment.objects.filter(order=order).count() == 1
    assert credits_balance_get(user_id=user.pk) == 100


# --- an order whose first request left no payment -------------------------------------


def test_an_order_whose_first_payment_is_still_being_set_up_is_not_paid_over(user, stripe_server):
    order = OrderFactory(user=user)  # committed; its PaymentIntent request still in flight
    with pytest.raises(ConflictError, match="still being set up"):
        order_pay(order_id=order.pk, user_id=user.pk, payment_method_id="pm_card_visa")
    order.refresh_from_db()
    assert (order.status, order.pay_attempts) == (Order.Status.PENDING, 0)
    assert not order.payments.exists()


@pytest.mark.parametrize("first_request", ["failed", "two-minutes-ago", "ten-minutes-ago"])
def test_an_order_whose_first_request_left_no_payment_is_paid_with_a_new_one(
    user, stripe_server, monkeypatch, first_request
):
    from datetime import timedelta

    order = OrderFactory(user=user)
    if first_request == "failed":
        Order.objects.filter(pk=order.pk).update(gateway_error="Stripe could not be reached.")
    else:  # exactly when the first request's grace of two minutes ends, or well after
        minutes = 2 if first_request == "two-minutes-ago" else 10
        now = timezone.now()
        Order.objects.filter(pk=order.pk).update(created_at=now - timedelta(minutes=minutes))
        monkeypatch.setattr(timezone, "now", lambda: now)

    result = order_pay(order_id=order.pk, user_id=user.pk, payment_method_id="pm_card_visa")
    assert result.order.status == Order.Status.PAID
    assert result.order.pay_attempts == 1
    [payment] = result.order.payments.all()
    assert payment == result.payment
    assert (payment.status, payment.amount) == ("succeeded", 1000)
    assert Fulfilment.objects.filter(order=order).count() == 1
    assert credits_balance_get(user_id=user.pk) == 100


def test_a_checkout_order_is_paid_on_stripes_page_not_by_card(user, stripe_server):
    from datetime import timedelta

    order = OrderFactory(
        user=user, payment_type=Order.PaymentType.CHECKOUT, stripe_checkout_session_id="cs_open"
    )
    Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - timedelta(minutes=3))
    with pytest.raises(ConflictError, match="Checkout page"):
        order_pay(order_id=order.pk, user_id=user.pk, payment_method_id="pm_card_visa")
    assert not order.payments.exists()


def test_a_failed_checkout_order_may_be_paid_by_card(user, stripe_server):
    from datetime import timedelta

    order = OrderFactory(
        user=user, payment_type=Order.PaymentType.CHECKOUT, status=Order.Status.FAILED
    )
    Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - timedelta(minutes=3))
    result = order_pay(order_id=order.pk, user_id=user.pk, payment_method_id="pm_card_visa")
    assert result.order.status == Order.Status.PAID
    assert credits_balance_get(user_id=user.pk) == 100


def test_paying_with_a_payment_method_stripe_does_not_know_is_422_for_the_order(
    user, stripe_server
):
    from datetime import timedelta

    from billing import gateway

    order = OrderFactory(user=user)
    Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - timedelta(minutes=3))
    with pytest.raises(gateway.InvalidPaymentMethodError) as refused:
        order_pay(order_id=order.pk, user_id=user.pk, payment_method_id="pm_does_not_exist")
    assert refused.value.extra["order_id"] == order.pk
    assert Order.objects.get(pk=order.pk).status == Order.Status.PENDING


# --- the worker stores the PaymentIntent's row while the request is still at Stripe ----


def _worker_stores_each_new_payment_intent(monkeypatch) -> list[str]:
    """Stripe's event for a new PaymentIntent reaches the worker, which stores its
    `Payment`, before the request that asked for the PaymentIntent stores it."""
    from billing import gateway

    create = gateway.payment_intent_create
    stored: list[str] = []

    def create_and_race(**kwargs):
        intent = create(**kwargs)
        order_id = int(kwargs["metadata"]["order_id"])
        Payment.objects.create(
            order_id=order_id,
            stripe_payment_intent_id=intent.id,
            status=intent.status,
            amount=intent.amount,
            currency=intent.currency,
        )
        stored.append(intent.id)
        return intent

    monkeypatch.setattr(gateway, "payment_intent_create", create_and_race)
    return stored


def test_a_new_order_whose_payment_the_worker_stored_first_is_paid_once(
    user, stripe_server, monkeypatch
):
    from billing.services.orders import order_create
    from purchasables.types import PurchaseRequest

    stored = _worker_stores_each_new_payment_intent(monkeypatch)
    result = order_create(
        purchase=PurchaseRequest(user_id=user.pk, purchase_type="credits", credit_amount=100),
        amount="10.00",
        payment_method_id="pm_card_visa",
    )
    order = Order.objects.get(pk=result.order.pk)
    assert order.status == Order.Status.PAID
    [payment] = order.payments.all()
    assert payment.stripe_payment_intent_id == stored[0]
    assert payment.status == "succeeded"
    assert Fulfilment.objects.filter(order=order).count() == 1
    assert credits_balance_get(user_id=user.pk) == 100


def test_an_order_paid_again_whose_payment_the_worker_stored_first_is_paid_once(
    user, stripe_server, monkeypatch
):
    order = OrderFactory(user=user)
    Order.objects.filter(pk=order.pk).update(gateway_error="Stripe could not be reached.")
    stored = _worker_stores_each_new_payment_intent(monkeypatch)
    result = order_pay(order_id=order.pk, user_id=user.pk, payment_method_id="pm_card_visa")
    assert result.order.status == Order.Status.PAID
    [payment] = result.order.payments.all()
    assert payment == result.payment
    assert (payment.stripe_payment_intent_id, payment.status) == (stored[0], "succeeded")
    assert Fulfilment.objects.filter(order=order).count() == 1
    assert credits_balance_get(user_id=user.pk) == 100
