"""Disputes end to end: orders paid through localstripe, `charge.dispute.*` events built
from Stripe's own dispute fixture and signed as Stripe signs them.

While a dispute is open the order's credits cannot be spent; a won dispute gives
them back; a lost one debits them once, however often and in whatever order its
events arrive, leaving a debt for what was already spent.
"""

from __future__ import annotations

import itertools
import time

import pytest
import stripe
from django.conf import settings
from django.utils import timezone

from billing.metadata import metadata_marker
from billing.models import Dispute, Order, Refund, StripeEvent
from billing.services.disputes import dispute_record
from billing.services.events import events_drain
from billing.stripe_objects import dispute_from_payload
from bookings.models import Booking, Service
from credits.models import CreditTransaction
from credits.selectors import credits_balance_get, credits_frozen_get, credits_ledger_sum
from credits.services import credits_grant
from purchasables import hookimpl
from purchasables.registry import registry
from purchasables.types import PurchaseType, Quote
from tests.billing.conftest import in_threads, post_webhook
from tests.billing.factories import OrderFactory, PaymentFactory
from tests.billing.test_refunds import refund_obj
from tests.bookings.factories import ServiceFactory, ServiceSessionFactory
from tests.bookings.purchases import purchase
from tests.stripe_events import event, fixture, new_id, payment_intent

pytest_plugins = ["tests.bookings.fixtures"]
pytestmark = pytest.mark.django_db

BUY_100 = {"is_credit_purchase": True, "credit_amount": 100, "payment_method_id": "pm_card_visa"}


@pytest.fixture
def paid_order(api, user, stripe_server) -> Order:
    """100 credits for 10.00 USD, paid with a card through localstripe."""
    body = api.post("/payments/create/", BUY_100).json()
    assert body["status"] == "paid"
    order = Order.objects.get(pk=body["order_id"])
    assert order.payments.get().stripe_charge_id.startswith("ch_")
    return order


def dispute_obj(order: Order, *, status: str = "needs_response", **overrides) -> dict:
    """Stripe's dispute fixture, made a dispute of the order's payment."""
    payment = order.payments.get()
    obj = fixture("dispute")
    obj.update(
        id=new_id("dp"),
        amount=order.amount,
        currency=order.currency,
        charge=payment.stripe_charge_id,
        payment_intent=payment.stripe_payment_intent_id,
        reason="fraudulent",
        status=status,
        created=int(time.time()),
    )
    obj.update(overrides)
    return obj


def deliver(type: str, obj: dict, *, at: int, evt_id: str | None = None) -> dict:
    """Sign and post one event whose `created` is `at`, then run the worker's drain."""
    evt = event(type, obj, id=evt_id)
    evt["created"] = at
    assert post_webhook(evt).status_code == 200
    events_drain()
    return evt


def spend(api, amount: int, reference: str):
    return api.post("/credits/spend/", {"amount": amount, "reference": reference})


def test_an_open_dispute_freezes_the_credits_until_it_is_won(api, user, paid_order):
    dp = dispute_obj(paid_order)
    t0 = int(time.time())
    deliver("charge.dispute.created", dp, at=t0)

    refused = spend(api, 1, "during-the-dispute")
    assert refused.status_code == 409
    assert refused.json()["code"] == "insufficient_credits"
    assert refused.json()["extra"]["frozen"] == 100
    # Nothing left the ledger: the balance is still its sum.
    assert credits_balance_get(user_id=user.pk) == credits_ledger_sum(user_id=user.pk) == 100
    assert credits_frozen_get(user_id=user.pk) == 100
    assert api.get("/credits/balance/").json()["frozen"] == 100
    dispute = Dispute.objects.get()
    assert (dispute.order_id, dispute.outcome, dispute.amount) == (paid_order.pk, "open", 1000)
    assert dispute.evidence_due_by is not None
    assert dispute.frozen_at is not None

    deliver("charge.dispute.updated", {**dp, "status": "under_review"}, at=t0 + 1)
    deliver("charge.dispute.closed", {**dp, "status": "won"}, at=t0 + 2)
    deliver("charge.dispute.funds_reinstated", {**dp, "status": "won"}, at=t0 + 3)

    assert spend(api, 30, "after-it-was-won").status_code == 201
    assert credits_balance_get(user_id=user.pk) == credits_ledger_sum(user_id=user.pk) == 70
    body = api.get("/credits/balance/").json()
    assert (body["balance"], body["frozen"], body["currency_unit"]) == (70, 0, "credits")
    assert body["by_category"] == {"paid": 70, "promotional": 0}
    dispute.refresh_from_db()
    assert (dispute.status, dispute.outcome) == ("won", "won")
    assert dispute.released_at is not None and dispute.reversed_at is None
    paid_order.refresh_from_db()
    assert paid_order.status == Order.Status.PAID
    assert not Refund.objects.exists()
    assert set(StripeEvent.objects.values_list("status", flat=True)) == {"processed"}


def test_a_lost_dispute_debits_once_and_what_was_spent_becomes_a_debt(api, user, paid_order):
    assert spend(api, 30, "before-the-dispute").status_code == 201
    dp = dispute_obj(paid_order)
    t0 = int(time.time())
    deliver("charge.dispute.created", dp, at=t0)
    assert credits_frozen_get(user_id=user.pk) == 70  # what was left of the 100
    assert spend(api, 1, "during").status_code == 409

    lost = deliver("charge.dispute.closed", {**dp, "status": "lost"}, at=t0 + 2)

    def books() -> tuple:
        return (
            credits_balance_get(user_id=user.pk),
            credits_ledger_sum(user_id=user.pk),
            credits_frozen_get(user_id=user.pk),
            list(CreditTransaction.objects.filter(kind="refund").values_list("amount", flat=True)),
            Refund.objects.count(),
            Order.objects.get(pk=paid_order.pk).status,
        )

    after_loss = (-30, -30, 0, [-100], 1, Order.Status.REFUNDED)
    assert books() == after_loss
    # The same event twice, a copy under another id, and older news arriving late.
    post_webhook(lost)
    events_drain()
    deliver("charge.dispute.closed", {**dp, "status": "lost"}, at=t0 + 2)
    deliver("charge.dispute.funds_withdrawn", {**dp, "status": "needs_response"}, at=t0 + 1)
    deliver("charge.dispute.updated", {**dp, "status": "under_review"}, at=t0 + 1)
    deliver("charge.dispute.created", dp, at=t0)
    assert books() == after_loss
    dispute = Dispute.objects.get()
    assert (dispute.status, dispute.outcome) == ("lost", "lost")
    refund = Refund.objects.get()
    assert (refund.source, refund.amount, refund.stripe_refund_id) == ("dispute", 1000, None)
    assert refund.reason == f"Dispute {dispute.stripe_dispute_id} lost (fraudulent)"
    assert dispute.refund_id == refund.pk
    assert CreditTransaction.objects.get(kind="refund").memo == (
        f"Dispute {dispute.stripe_dispute_id} lost: order {paid_order.pk}"
    )
    assert spend(api, 1, "in-debt").status_code == 409
    assert set(StripeEvent.objects.values_list("status", flat=True)) == {"processed"}


def test_a_loss_reported_before_the_dispute_opened_debits_once_and_freezes_nothing(
    api, user, paid_order
):
    dp = dispute_obj(paid_order)
    t0 = int(time.time())
    deliver("charge.dispute.closed", {**dp, "status": "lost"}, at=t0 + 5)
    deliver("charge.dispute.created", dp, at=t0)
    deliver("charge.dispute.updated", {**dp, "status": "under_review"}, at=t0 + 1)

    assert credits_balance_get(user_id=user.pk) == credits_ledger_sum(user_id=user.pk) == 0
    assert credits_frozen_get(user_id=user.pk) == 0
    dispute = Dispute.objects.get()
    assert (dispute.status, dispute.frozen_at, dispute.released_at) == ("lost", None, None)
    assert CreditTransaction.objects.filter(kind="refund").count() == 1


def test_news_of_the_same_second_goes_forward_and_a_closed_dispute_stays_closed(paid_order):
    """Stripe's `created` has whole seconds: of two reports of one second, the status
    further along a dispute's life wins, whichever arrives last, and the same status
    again brings its new details; a later second wins whatever its status; once
    closed, a dispute stays closed."""
    dp = dispute_obj(paid_order)
    t0 = int(time.time())

    def tell(status: str, at: int, **more) -> Dispute:
        dispute_record(data=dispute_from_payload({**dp, "status": status, **more}), as_of=at)
        return Dispute.objects.get()

    walk = [
        "warning_needs_response",
        "warning_under_review",
        "needs_response",
        "under_review",
        "appeal_needs_response",
        "appeal_under_review",
    ]
    for second, (earlier, further) in enumerate(itertools.pairwise(walk), start=t0):
        assert tell(earlier, second).status == earlier
        assert tell(further, second).status == further
        assert tell(earlier, second).status == further, f"{earlier} after {further}"
    first = Dispute.objects.get()
    assert (first.stripe_charge_id, first.currency) == (dp["charge"], "usd")
    assert first.closed_at is None

    assert tell("needs_response", t0 + 10).status == "needs_response"
    assert tell("needs_response", t0 + 10, amount=600).amount == 600
    won = tell("won", t0 + 11)
    assert (won.status, won.outcome) == ("won", "won")
    assert won.closed_at is not None
    assert tell("needs_response", t0 + 12).status == "won"


def test_a_dispute_is_dated_from_when_the_customer_opened_it(paid_order):
    """Staff (the admin, the dashboard's disputes of a period) see when the customer
    opened the dispute, Stripe's `created`, from its first report on; later news does
    not move it."""
    from datetime import UTC, datetime

    opened = int(time.time()) - 3 * 86400
    dp = dispute_obj(paid_order, created=opened)
    t0 = int(time.time())
    deliver("charge.dispute.created", dp, at=t0)
    assert Dispute.objects.get().opened_at == datetime.fromtimestamp(opened, tz=UTC)
    deliver("charge.dispute.updated", {**dp, "status": "under_review"}, at=t0 + 1)
    dispute = Dispute.objects.get()
    assert (dispute.status, dispute.opened_at) == (
        "under_review",
        datetime.fromtimestamp(opened, tz=UTC),
    )


def test_a_status_stripe_adds_later_ranks_with_the_first_open_one(paid_order):
    """Stripe adds dispute statuses now and then (`prevented` came late). One this version
    does not know ranks with the earliest, `warning_needs_response`: of reports of one
    second, neither outranks the other, so the last delivered stands."""
    dp = dispute_obj(paid_order)
    second = int(time.time())

    def tell(status: str) -> str:
        dispute_record(data=dispute_from_payload({**dp, "status": status}), as_of=second)
        return Dispute.objects.get().status

    assert tell("warning_needs_response") == "warning_needs_response"
    assert tell("warning_pending_something_new") == "warning_pending_something_new"
    assert tell("warning_needs_response") == "warning_needs_response"
    assert tell("warning_under_review") == "warning_under_review"
    assert tell("warning_pending_something_new") == "warning_under_review"


@pytest.mark.parametrize(
    "names",
    [{"payment_intent": None}, {"charge": "ch_not_recorded"}],
    ids=["only-the-charge", "a-charge-not-recorded"],
)
def test_a_dispute_finds_its_order_by_either_id_of_its_payment(api, user, paid_order, names):
    """Older API versions name the charge and no PaymentIntent: the charge recorded on
    the payment finds the order. A charge the payment has not recorded (one Checkout
    made) leaves the PaymentIntent to find it. Either way its credits are frozen at once."""
    dp = dispute_obj(paid_order, **names)
    deliver("charge.dispute.created", dp, at=int(time.time()))
    dispute = Dispute.objects.get()
    assert (dispute.order_id, dispute.frozen_at is not None) == (paid_order.pk, True)
    assert credits_frozen_get(user_id=user.pk) == 100
    assert StripeEvent.objects.get().status == "processed"


def test_an_open_disputes_older_news_delivered_late_changes_nothing(paid_order):
    """The event's own `created` orders the news, not the order of delivery."""
    dp = dispute_obj(paid_order)
    t0 = int(time.time())
    deliver("charge.dispute.updated", {**dp, "status": "under_review"}, at=t0 + 1)
    deliver("charge.dispute.created", {**dp, "amount": 900}, at=t0)

    dispute = Dispute.objects.get()
    assert (dispute.status, dispute.amount, dispute.stripe_event_at) == (
        "under_review",
        1000,
        t0 + 1,
    )
    assert set(StripeEvent.objects.values_list("status", flat=True)) == {"processed"}
    fresh, late = StripeEvent.objects.order_by("id").values_list("last_error", flat=True)
    assert "(older news)" not in fresh and "(older news)" in late


def test_a_dispute_of_another_systems_charge_is_recorded_and_not_retried(stripe_server):
    """Another system on the same Stripe account took a card payment; its customer disputes it."""
    client = stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
    )
    theirs = client.v1.payment_intents.create(
        params={
            "amount": 2500,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "metadata": {"order_id": "987654"},
        }
    ).to_dict()
    charge = theirs["latest_charge"]
    charge_id = charge["id"] if isinstance(charge, dict) else charge
    dp = fixture("dispute")
    dp.update(id=new_id("dp"), amount=2500, charge=charge_id, payment_intent=None)
    deliver("charge.dispute.created", dp, at=int(time.time()))

    stored = StripeEvent.objects.get()
    assert (stored.status, stored.attempts) == ("processed", 1)
    dispute = Dispute.objects.get()
    assert (dispute.outcome, dispute.order_id, dispute.payment_id) == ("not_ours", None, None)
    assert dispute.stripe_payment_intent_id == theirs["id"]
    assert not Refund.objects.exists() and not CreditTransaction.objects.exists()


def test_another_systems_payment_naming_one_of_our_order_ids_is_still_not_ours(stripe_server):
    """Another system on the account keys its PaymentIntents by `order_id` too, and one
    matches an order of ours, amount and currency included; without this deployment's
    marker its dispute is recorded as not ours and not retried."""
    order = OrderFactory(amount=2500, currency="usd")
    client = stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
    )
    theirs = client.v1.payment_intents.create(
        params={
            "amount": 2500,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "metadata": {"order_id": str(order.pk)},
        }
    ).to_dict()
    dp = fixture("dispute")
    dp.update(id=new_id("dp"), amount=2500, charge="ch_theirs", payment_intent=theirs["id"])
    deliver("charge.dispute.created", dp, at=int(time.time()))

    stored = StripeEvent.objects.get()
    assert (stored.status, stored.attempts) == ("processed", 1)
    dispute = Dispute.objects.get()
    assert (dispute.outcome, dispute.order_id) == ("not_ours", None)


def test_a_dispute_before_its_payment_is_recorded_waits_then_freezes(api, user, stripe_server):
    body = api.post("/payments/create/", {"is_credit_purchase": True, "credit_amount": 100})
    order = Order.objects.get(pk=body.json()["order_id"])
    intent_id = order.payments.get().stripe_payment_intent_id
    dp = fixture("dispute")
    dp.update(id=new_id("dp"), amount=1000, charge="ch_not_yet_known", payment_intent=intent_id)
    t0 = int(time.time())
    early = deliver("charge.dispute.created", dp, at=t0)
    stored = StripeEvent.objects.get(stripe_id=early["id"])
    assert stored.status == StripeEvent.Status.RETRYING
    assert "DisputeBeforePaymentError" in stored.last_error
    assert not Dispute.objects.exists()

    paid = payment_intent(
        id=intent_id, amount=1000, metadata=order.metadata, latest_charge="ch_not_yet_known"
    )
    deliver("payment_intent.succeeded", paid, at=t0 + 1)
    assert credits_balance_get(user_id=user.pk) == 100
    StripeEvent.objects.filter(pk=stored.pk).update(next_attempt_at=timezone.now())
    events_drain()

    stored.refresh_from_db()
    assert stored.status == StripeEvent.Status.PROCESSED
    assert Dispute.objects.get().order_id == order.pk
    assert credits_frozen_get(user_id=user.pk) == 100
    assert spend(api, 1, "frozen").status_code == 409


def test_a_disputed_workshop_booking_is_marked_then_cancelled_when_lost(
    api, user, stripe_server, workshop
):
    session = workshop.sessions.get()
    resp = api.post("/payments/create/", purchase(workshop, {"service_session_id": session.pk}))
    assert resp.status_code == 201, resp.content
    order = Order.objects.get(pk=resp.json()["order_id"])
    assert order.status == Order.Status.PAID
    dp = dispute_obj(order, reason="product_not_received")
    t0 = int(time.time())

    deliver("charge.dispute.created", dp, at=t0)
    [mine] = api.get("/bookings/").json()["items"]
    assert mine["status"] == "confirmed" and mine["disputed_at"] is not None
    assert Booking.objects.get().disputed_at is not None

    deliver("charge.dispute.closed", {**dp, "status": "lost"}, at=t0 + 1)
    booking = Booking.objects.get()
    assert booking.status == Booking.Status.CANCELED
    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
    assert Refund.objects.get().source == Refund.Source.DISPUTE


def test_a_won_dispute_restores_the_workshop_booking(api, user, stripe_server, workshop):
    session = workshop.sessions.get()
    resp = api.post("/payments/create/", purchase(workshop, {"service_session_id": session.pk}))
    order = Order.objects.get(pk=resp.json()["order_id"])
    dp = dispute_obj(order)
    t0 = int(time.time())
    deliver("charge.dispute.created", dp, at=t0)
    assert Booking.objects.get().disputed_at is not None
    deliver("charge.dispute.closed", {**dp, "status": "won"}, at=t0 + 1)
    booking = Booking.objects.get()
    assert (booking.status, booking.disputed_at) == (Booking.Status.CONFIRMED, None)


def test_an_inquiry_closed_without_a_dispute_restores_the_workshop_booking(
    api, user, stripe_server, workshop
):
    session = workshop.sessions.get()
    resp = api.post("/payments/create/", purchase(workshop, {"service_session_id": session.pk}))
    order = Order.objects.get(pk=resp.json()["order_id"])
    dp = dispute_obj(order, status="warning_needs_response")
    t0 = int(time.time())
    deliver("charge.dispute.created", dp, at=t0)
    assert Booking.objects.get().disputed_at is not None
    deliver("charge.dispute.closed", {**dp, "status": "warning_closed"}, at=t0 + 1)
    booking = Booking.objects.get()
    assert (booking.status, booking.disputed_at) == (Booking.Status.CONFIRMED, None)
    dispute = Dispute.objects.get()
    assert (dispute.outcome, dispute.reversed_at) == ("closed", None)
    assert not Refund.objects.filter(source=Refund.Source.DISPUTE).exists()


def test_a_dispute_of_a_payment_that_came_after_the_order_was_canceled_takes_nothing(user):
    """The late payment is refunded automatically and the order delivered nothing: its
    dispute freezes nothing and, lost, reverses nothing."""
    payment = PaymentFactory(order__user=user)
    Order.objects.filter(pk=payment.order_id).update(status=Order.Status.CANCELED)
    late = payment_intent(
        id=payment.stripe_payment_intent_id, amount=1000, metadata=payment.order.metadata
    )
    deliver("payment_intent.succeeded", late, at=int(time.time()))
    order = Order.objects.get(pk=payment.order_id)
    dp = dispute_obj(order)
    t0 = int(time.time())
    deliver("charge.dispute.created", dp, at=t0)
    deliver("charge.dispute.closed", {**dp, "status": "lost"}, at=t0 + 1)

    dispute = Dispute.objects.get()
    assert (dispute.outcome, dispute.frozen_at, dispute.reversed_at) == ("lost", None, None)
    assert not Refund.objects.filter(source=Refund.Source.DISPUTE).exists()
    assert Order.objects.get(pk=order.pk).status == Order.Status.CANCELED
    assert set(StripeEvent.objects.values_list("status", flat=True)) == {"processed"}


# --- what the reader takes, and the harder paths ------------------------------------


def test_the_reader_takes_the_current_shape_and_older_ones():
    current = dispute_from_payload(fixture("dispute"))  # Stripe's own, current version
    assert (current.id, current.amount, current.currency) == (
        "dp_1Pgc71B7WZ01zgkWMevJiAUx",
        1000,
        "usd",
    )
    assert (current.charge_id, current.payment_intent_id) == ("ch_1PgafuB7WZ01zgkWXYmPNZs8", "")
    assert (current.status, current.reason, current.evidence_due_by) == (
        "warning_needs_response",
        "general",
        1723679999,
    )
    with_intent = dispute_from_payload({**fixture("dispute"), "payment_intent": "pi_123"})
    assert with_intent.payment_intent_id == "pi_123"
    # An older version: the charge expanded with its PaymentIntent, the deadline at the
    # top level, no `evidence_details`, a closing status of its own.
    old = {
        "id": "dp_old",
        "object": "dispute",
        "amount": 500,
        "currency": "EUR",
        "charge": {"id": "ch_old", "object": "charge", "payment_intent": {"id": "pi_old"}},
        "evidence_due_by": 1500000000,
        "status": "charge_refunded",
        "reason": "duplicate",
        "created": 1490000000,
    }
    read = dispute_from_payload(old)
    assert (read.charge_id, read.payment_intent_id, read.currency) == ("ch_old", "pi_old", "eur")
    assert (read.evidence_due_by, read.created, read.status) == (
        1500000000,
        1490000000,
        "charge_refunded",
    )


def test_a_dispute_after_a_partial_refund_freezes_and_takes_only_what_is_left(
    api, staff_api, user, paid_order
):
    resp = staff_api.post(f"/payments/orders/{paid_order.pk}/refunds/", {"amount": "4.00"})
    assert resp.status_code == 201, resp.content
    assert credits_balance_get(user_id=user.pk) == 60
    dp = dispute_obj(paid_order)  # the customer disputes all 10.00 anyway
    t0 = int(time.time())
    deliver("charge.dispute.created", dp, at=t0)
    assert credits_frozen_get(user_id=user.pk) == 60

    deliver("charge.dispute.closed", {**dp, "status": "lost"}, at=t0 + 1)
    reversal = Refund.objects.get(source=Refund.Source.DISPUTE)
    assert reversal.amount == 600  # what the refund had not given back already
    assert credits_balance_get(user_id=user.pk) == credits_ledger_sum(user_id=user.pk) == 0
    assert credits_frozen_get(user_id=user.pk) == 0
    paid_order.refresh_from_db()
    assert paid_order.status == Order.Status.REFUNDED


def test_a_lost_dispute_of_an_order_paid_twice_takes_only_what_the_order_has_left(
    api, staff_api, user, paid_order
):
    """A second payment of the paid order is money being given back, not more of the
    order: a lost dispute after a partial refund reverses the rest of the price only."""
    dp = dispute_obj(paid_order)  # of the first payment, all 10.00 of it
    second = PaymentFactory(order=paid_order)
    twice = payment_intent(
        id=second.stripe_payment_intent_id,
        amount=paid_order.amount,
        metadata=paid_order.metadata,
    )
    deliver("payment_intent.succeeded", twice, at=int(time.time()))
    second.refresh_from_db()
    assert second.amount_received == paid_order.amount
    assert Refund.objects.get(payment=second).reverses_order is False
    resp = staff_api.post(f"/payments/orders/{paid_order.pk}/refunds/", {"amount": "4.00"})
    assert resp.status_code == 201, resp.content
    assert credits_balance_get(user_id=user.pk) == 60

    t0 = int(time.time())
    deliver("charge.dispute.created", dp, at=t0)
    assert credits_frozen_get(user_id=user.pk) == 60
    deliver("charge.dispute.closed", {**dp, "status": "lost"}, at=t0 + 1)

    reversal = Refund.objects.get(source=Refund.Source.DISPUTE)
    assert reversal.amount == 600
    assert credits_balance_get(user_id=user.pk) == credits_ledger_sum(user_id=user.pk) == 0
    paid_order.refresh_from_db()
    assert paid_order.status == Order.Status.REFUNDED


def test_a_lost_dispute_of_a_split_orders_card_payment_takes_what_the_card_has_left(
    api, staff_api, user, stripe_server
):
    """45.00 paid with 20 credits and 22.50 by card; 10.00 refunded (5.00 to the card,
    4 credits back). The buyer disputes all 22.50 of the card payment and loses: the
    reversal is what the card has left, 17.50."""
    service = ServiceFactory(kind=Service.Kind.WORKSHOP, price=4500, credit_price=40)
    ServiceSessionFactory(service=service)
    credits_grant(user_id=user.pk, amount=20, reference="fund")
    body = api.post(
        "/payments/create/",
        {"service_id": service.pk, "apply_credits": True, "payment_method_id": "pm_card_visa"},
    ).json()
    order = Order.objects.get(pk=body["order_id"])
    assert (order.status, order.card_amount) == (Order.Status.PAID, 2250)
    resp = staff_api.post(f"/payments/orders/{order.pk}/refunds/", {"amount": "10.00"})
    assert resp.status_code == 201, resp.content
    assert sorted((r.method, r.amount) for r in order.refunds.all()) == [
        ("card", 500),
        ("credits", 450),
    ]

    dp = dispute_obj(order, amount=2250)
    t0 = int(time.time())
    deliver("charge.dispute.created", dp, at=t0)
    deliver("charge.dispute.closed", {**dp, "status": "lost"}, at=t0 + 1)

    reversal = Refund.objects.get(source=Refund.Source.DISPUTE)
    assert reversal.amount == 1750
    assert Booking.objects.get(order_id=order.pk).status == Booking.Status.CANCELED


def test_a_dispute_freezes_and_reverses_the_last_cent_and_nothing_once_all_is_refunded(
    api, staff_api, user, paid_order
):
    """An order refunded all but 0.01 still has that cent at stake; one refunded in full
    has nothing: its dispute freezes nothing and its loss reverses nothing."""
    refunded = Order.objects.get(pk=api.post("/payments/create/", BUY_100).json()["order_id"])
    for order, amount in ((paid_order, "9.99"), (refunded, "10.00")):
        resp = staff_api.post(f"/payments/orders/{order.pk}/refunds/", {"amount": amount})
        assert resp.status_code == 201, resp.content
    assert credits_balance_get(user_id=user.pk) == 1  # the credit the last cent paid for

    t0 = int(time.time())
    for order in (paid_order, refunded):
        dp = dispute_obj(order)
        deliver("charge.dispute.created", dp, at=t0)
        deliver("charge.dispute.closed", {**dp, "status": "lost"}, at=t0 + 1)

    last_cent = Dispute.objects.get(order=paid_order)
    assert last_cent.frozen_at is not None and last_cent.refund.amount == 1
    nothing = Dispute.objects.get(order=refunded)
    assert (nothing.outcome, nothing.frozen_at, nothing.refund) == ("lost", None, None)
    assert nothing.reversed_at is not None
    assert Refund.objects.filter(source=Refund.Source.DISPUTE).count() == 1
    assert credits_balance_get(user_id=user.pk) == credits_ledger_sum(user_id=user.pk) == 0
    assert set(StripeEvent.objects.values_list("status", flat=True)) == {"processed"}


def test_a_dispute_of_ours_with_no_payment_row_yet_waits_and_is_not_called_foreign(
    stripe_server,
):
    """Stripe's PaymentIntent carries our marker and names an order of ours (same amount
    and currency) that has not recorded it: the dispute waits instead of being written off."""
    order = OrderFactory(amount=1000, currency="usd")
    client = stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
    )
    intent = client.v1.payment_intents.create(
        params={
            "amount": 1000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "metadata": {"order_id": str(order.pk), **metadata_marker()},
        }
    ).to_dict()
    dp = fixture("dispute")
    dp.update(id=new_id("dp"), amount=1000, charge="ch_unknown", payment_intent=intent["id"])
    deliver("charge.dispute.created", dp, at=int(time.time()))
    stored = StripeEvent.objects.get()
    assert stored.status == StripeEvent.Status.RETRYING
    assert "DisputeBeforePaymentError" in stored.last_error
    assert not Dispute.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_reports_of_one_lost_dispute_reverse_it_once(user):
    """Four workers apply the open and the closing news of one dispute at once."""
    payment = PaymentFactory(order__user=user)
    paid = payment_intent(
        id=payment.stripe_payment_intent_id, amount=1000, metadata=payment.order.metadata
    )
    deliver("payment_intent.succeeded", paid, at=int(time.time()))
    order = Order.objects.get(pk=payment.order_id)
    assert order.status == Order.Status.PAID
    dp = dispute_obj(order)
    t0 = int(time.time())
    reports = [
        (dispute_from_payload(dp), t0),
        (dispute_from_payload({**dp, "status": "lost"}), t0 + 2),
        (dispute_from_payload({**dp, "status": "under_review"}), t0 + 1),
        (dispute_from_payload({**dp, "status": "lost"}), t0 + 2),
    ]
    results = in_threads(4, lambda i: dispute_record(data=reports[i][0], as_of=reports[i][1]))
    assert not [r for r in results if isinstance(r, Exception)], results

    dispute = Dispute.objects.get()
    assert (dispute.status, dispute.outcome) == ("lost", "lost")
    assert Refund.objects.filter(source=Refund.Source.DISPUTE).count() == 1
    assert CreditTransaction.objects.filter(kind="refund").count() == 1
    assert credits_balance_get(user_id=user.pk) == credits_ledger_sum(user_id=user.pk) == 0
    assert credits_frozen_get(user_id=user.pk) == 0


class DisputesTold:
    """A purchase type sold for money or credits that keeps what its dispute hook is told."""

    def __init__(self) -> None:
        self.told: list[tuple[str, int]] = []

    @hookimpl
    def tollgate_purchase_types(self):
        return [PurchaseType(name="disputes-told", order_type="direct", label="Disputes told")]

    @hookimpl
    def tollgate_quote(self, request):
        return Quote(amount=1000, currency="usd", description="disputes told", credits=10)

    @hookimpl
    def tollgate_fulfil(self, order):
        return {}

    @hookimpl
    def tollgate_refund(self, order, refund):
        return {"reversed": refund.amount}

    @hookimpl
    def tollgate_dispute(self, order, dispute):
        self.told.append((dispute.state, dispute.at_stake))
        return {}


def test_a_dispute_released_after_refunds_took_back_more_than_the_card_paid_has_nothing_at_stake(
    api, staff_api, user, stripe_server
):
    """10.00 paid with 4 credits and 6.00 by card; the card payment is disputed and frozen.
    Meanwhile staff refund the 6.00 as credits, and 4.00 of the card in Stripe's dashboard:
    the refunds took back more than the card paid. The dispute, won, tells the plugin
    nothing is left at stake, never less than nothing."""
    plugin = DisputesTold()
    credits_grant(user_id=user.pk, amount=4, reference="fund")
    with registry.plugin_registered(plugin, name="disputes-told"):
        body = api.post(
            "/payments/create/",
            {
                "purchase_type": "disputes-told",
                "apply_credits": True,
                "payment_method_id": "pm_card_visa",
            },
        ).json()
        order = Order.objects.get(pk=body["order_id"])
        assert (order.status, order.card_amount, order.credits_value) == ("paid", 600, 400)
        dp = dispute_obj(order, amount=600)
        t0 = int(time.time())
        deliver("charge.dispute.created", dp, at=t0)

        as_credits = staff_api.post(
            f"/payments/orders/{order.pk}/refunds/", {"amount": "6.00", "to_credits": True}
        )
        assert as_credits.status_code == 201, as_credits.content
        deliver("refund.updated", refund_obj(order.payments.get(), 400), at=t0 + 1)
        assert Order.objects.get(pk=order.pk).status == Order.Status.REFUNDED

        deliver("charge.dispute.closed", {**dp, "status": "won"}, at=t0 + 2)
    assert plugin.told == [("open", 600), ("won", 0)]
    assert set(StripeEvent.objects.values_list("status", flat=True)) == {"processed"}


def test_a_dispute_for_more_than_the_charge_reverses_only_what_was_paid(api, user, paid_order):
    """Stripe may dispute more than the charge (the customer's bank converted currencies):
    a lost dispute reverses what the order was paid, 10.00, not the 10.01 disputed."""
    dp = dispute_obj(paid_order, amount=1001)
    t0 = int(time.time())
    deliver("charge.dispute.created", dp, at=t0)
    deliver("charge.dispute.closed", {**dp, "status": "lost"}, at=t0 + 1)
    assert Refund.objects.get(source=Refund.Source.DISPUTE).amount == 1000
    assert Order.objects.get(pk=paid_order.pk).status == Order.Status.REFUNDED
    assert credits_balance_get(user_id=user.pk) == credits_ledger_sum(user_id=user.pk) == 0
    assert set(StripeEvent.objects.values_list("status", flat=True)) == {"processed"}
