"""Refunds: staff refunds through localstripe, dashboard refunds from Stripe-shaped events,
each Stripe refund applied exactly once, never more than was captured."""

from __future__ import annotations

import json

import pytest
import stripe
from django.conf import settings
from django.db import connection

from billing.models import Order, Payment, Refund, StripeEvent
from billing.services.events import events_drain
from billing.services.refunds import refund_record
from billing.tasks import refund_submit
from credits.models import CreditTransaction
from credits.selectors import credits_balance_get, credits_ledger_sum
from credits.services import credits_spend
from purchasables import hookimpl
from purchasables.errors import FulfilmentImpossibleError
from purchasables.registry import registry
from purchasables.types import PurchaseType, Quote
from tests.billing.conftest import post_webhook
from tests.billing.factories import PaymentFactory
from tests.billing.test_stripe_faults import FaultyProxy
from tests.stripe_events import event, fixture, new_id, payment_intent

pytestmark = pytest.mark.django_db

BUY_100 = {"is_credit_purchase": True, "credit_amount": 100, "payment_method_id": "pm_card_visa"}


def stripe_refunds() -> list:
    client = stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
    )
    return list(client.v1.refunds.list(params={"limit": 100}).data)


@pytest.fixture
def paid_order(api, user, stripe_server) -> Order:
    body = api.post("/payments/create/", BUY_100).json()
    assert body["status"] == "paid"
    return Order.objects.get(pk=body["order_id"])


def test_partial_then_full_refund_debits_credits_in_proportion(staff_api, api, user, paid_order):
    resp = staff_api.post(f"/payments/orders/{paid_order.pk}/refunds/", {"amount": "4.00"})
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["status"] == "succeeded"
    assert body["applied"] is True
    assert body["amount"] == 400
    assert body["stripe_refund_id"].startswith("re_")
    paid_order.refresh_from_db()
    assert paid_order.status == Order.Status.PARTIALLY_REFUNDED
    assert credits_balance_get(user_id=user.pk) == 60

    rest = staff_api.post(f"/payments/orders/{paid_order.pk}/refunds/", {"reason": "goodwill"})
    assert rest.status_code == 201
    assert rest.json()["amount"] == 600
    paid_order.refresh_from_db()
    assert paid_order.status == Order.Status.REFUNDED
    assert credits_balance_get(user_id=user.pk) == credits_ledger_sum(user_id=user.pk) == 0
    assert sorted(r.amount for r in stripe_refunds()) == [400, 600]
    detail = api.get(f"/payments/orders/{paid_order.pk}/").json()
    assert [r["amount"] for r in detail["refunds"]] == [400, 600]


def test_refunding_more_than_was_captured_is_409_and_nothing_reaches_stripe(staff_api, paid_order):
    resp = staff_api.post(f"/payments/orders/{paid_order.pk}/refunds/", {"amount": "10.01"})
    assert resp.status_code == 409
    assert resp.json()["code"] == "refund_exceeds_captured"
    assert resp.json()["extra"]["refundable"] == 1000
    staff_api.post(f"/payments/orders/{paid_order.pk}/refunds/", {})
    again = staff_api.post(f"/payments/orders/{paid_order.pk}/refunds/", {"amount": "0.01"})
    assert again.status_code == 409
    assert len(stripe_refunds()) == 1
    assert Refund.objects.count() == 1


def test_while_a_refund_of_everything_is_on_its_way_no_other_refund_is_taken(staff_api, paid_order):
    in_flight = Refund.objects.create(
        order=paid_order,
        payment=paid_order.payments.get(),
        amount=1000,
        currency="usd",
        source=Refund.Source.STAFF,
    )
    for body in ({}, {"amount": "0.01"}):
        resp = staff_api.post(f"/payments/orders/{paid_order.pk}/refunds/", body)
        assert resp.status_code == 409, body
        assert resp.json()["code"] == "refund_exceeds_captured"
        assert resp.json()["extra"]["refundable"] == 0
    assert list(Refund.objects.all()) == [in_flight]
    assert stripe_refunds() == []


def test_what_is_left_to_refund_is_never_below_zero(staff_api, paid_order):
    """A request of ours still on its way, and a refund made meanwhile in Stripe's
    dashboard, together hold more than the payment: nothing is left, not less."""
    payment = paid_order.payments.get()
    Refund.objects.create(
        order=paid_order, payment=payment, amount=1000, currency="usd", source="staff"
    )
    post_webhook(event("refund.updated", refund_obj(payment, 600)))
    events_drain()
    paid_order.refresh_from_db()
    assert paid_order.status == Order.Status.PARTIALLY_REFUNDED
    resp = staff_api.post(f"/payments/orders/{paid_order.pk}/refunds/", {})
    assert resp.status_code == 409
    assert (resp.json()["extra"]["refundable"], resp.json()["extra"]["requested"]) == (0, 0)


def paid_again(order: Order) -> Payment:
    """A second payment of the paid order (10.00), whose automatic refund is on its way."""
    second = PaymentFactory(
        order=order, status="succeeded", amount_received=1000, stripe_charge_id=new_id("ch")
    )
    Refund.objects.create(
        order=order,
        payment=second,
        amount=1000,
        currency="usd",
        source=Refund.Source.AUTOMATIC,
        reverses_order=False,
    )
    return second


@pytest.mark.parametrize(
    ("second_back", "first_back", "left"),
    [(700, 0, 300), (1000, 100, 0)],
    ids=["part-of-the-second", "all-of-the-second-and-some-of-the-first"],
)
def test_the_refunds_of_an_order_paid_twice_never_hold_more_than_it_captured(
    staff_api, paid_order, second_back, first_back, left
):
    """The order was paid twice: the second payment's automatic refund is on its way, and
    part of the payments were refunded in Stripe's dashboard meanwhile. 7.00 of the second:
    of the 20.00 captured, 17.00 are held, so staff may refund only the 3.00 left, though
    the first payment alone has 10.00. All of the second and 1.00 of the first: 21.00 are
    held, more than was captured, so nothing is left until the automatic refund is settled."""
    first = paid_order.payments.get()
    second = paid_again(paid_order)
    for payment, amount in ((second, second_back), (first, first_back)):
        if amount:
            post_webhook(event("refund.updated", refund_obj(payment, amount)))
    events_drain()
    resp = staff_api.post(f"/payments/orders/{paid_order.pk}/refunds/", {})
    if left:
        assert resp.status_code == 201, resp.content
        assert resp.json()["amount"] == left
    else:
        assert resp.status_code == 409, resp.content
        assert resp.json()["extra"]["refundable"] == 0
    assert [r.amount for r in stripe_refunds()] == ([left] if left else [])


def test_a_refund_that_failed_at_stripe_holds_none_of_the_money(staff_api, paid_order):
    """Stripe failed a refund of everything before it was applied: nothing was given
    back, so all of the payment is still there to refund."""
    payment = paid_order.payments.get()
    post_webhook(event("refund.failed", refund_obj(payment, 1000, status="failed")))
    events_drain()
    assert Refund.objects.get().status == Refund.Status.FAILED
    resp = staff_api.post(f"/payments/orders/{paid_order.pk}/refunds/", {})
    assert resp.status_code == 201, resp.content
    assert (resp.json()["amount"], resp.json()["status"]) == (1000, "succeeded")
    paid_order.refresh_from_db()
    assert paid_order.status == Order.Status.REFUNDED


def test_one_minor_unit_can_be_refunded_and_then_exactly_the_rest(staff_api, user, paid_order):
    smallest = staff_api.post(f"/payments/orders/{paid_order.pk}/refunds/", {"amount": "0.01"})
    assert smallest.status_code == 201, smallest.content
    assert smallest.json()["amount"] == 1
    paid_order.refresh_from_db()
    assert paid_order.status == Order.Status.PARTIALLY_REFUNDED
    assert credits_balance_get(user_id=user.pk) == 100  # a cent is worth no whole credit

    too_much = staff_api.post(f"/payments/orders/{paid_order.pk}/refunds/", {"amount": "10.00"})
    assert too_much.status_code == 409
    assert too_much.json()["extra"]["refundable"] == 999
    rest = staff_api.post(f"/payments/orders/{paid_order.pk}/refunds/", {"amount": "9.99"})
    assert rest.status_code == 201, rest.content
    paid_order.refresh_from_db()
    assert paid_order.status == Order.Status.REFUNDED
    assert credits_balance_get(user_id=user.pk) == 0
    assert sorted(r.amount for r in stripe_refunds()) == [1, 999]


def test_a_long_reason_is_kept_to_500_characters_here_and_at_stripe(user, paid_order):
    from billing.services.refunds import refund_create

    reason = "The buyer wrote at length. " * 30
    refund = refund_create(order_id=paid_order.pk, amount="2.50", reason=reason)
    assert refund.status == Refund.Status.SUCCEEDED
    assert refund.reason == reason[:500]
    [at_stripe] = stripe_refunds()
    assert (at_stripe.amount, at_stripe.metadata["reason"]) == (250, reason[:500])


def test_stripe_is_told_a_staff_refund_was_requested_by_the_customer(staff_api, paid_order):
    resp = staff_api.post(f"/payments/orders/{paid_order.pk}/refunds/", {"amount": "1.00"})
    assert resp.status_code == 201, resp.content
    assert [(r.amount, r.reason) for r in stripe_refunds()] == [(100, "requested_by_customer")]


def test_a_credit_pack_is_refunded_to_the_card_never_as_credits(staff_api, user, paid_order):
    resp = staff_api.post(f"/payments/orders/{paid_order.pk}/refunds/", {"to_credits": True})
    assert resp.status_code == 422, resp.content
    assert resp.json()["extra"]["field"] == "to_credits"
    assert not Refund.objects.exists()
    assert credits_balance_get(user_id=user.pk) == 100


def test_a_refund_after_spending_leaves_a_debt_that_blocks_spending(staff_api, user, paid_order):
    credits_spend(user_id=user.pk, amount=90, reference="coffee")
    staff_api.post(f"/payments/orders/{paid_order.pk}/refunds/", {})
    assert credits_balance_get(user_id=user.pk) == -90
    assert credits_ledger_sum(user_id=user.pk) == -90
    assert CreditTransaction.objects.filter(kind="refund").get().amount == -100


def test_only_staff_refund_and_only_paid_orders(api, staff_api, stripe_server, paid_order):
    assert api.post(f"/payments/orders/{paid_order.pk}/refunds/", {}).status_code == 403
    unpaid = api.post("/payments/create/", {"is_credit_purchase": True, "credit_amount": 10})
    resp = staff_api.post(f"/payments/orders/{unpaid.json()['order_id']}/refunds/", {})
    assert resp.status_code == 409
    assert staff_api.post("/payments/orders/987654/refunds/", {}).status_code == 404
    bad = staff_api.post(f"/payments/orders/{paid_order.pk}/refunds/", {"amount": "1.001"})
    assert bad.status_code == 422
    assert stripe_refunds() == []


# --- refunds made in Stripe's dashboard, as events ----------------------------------


@pytest.fixture
def paid_payment():
    """An order paid through a fixture-shaped webhook, with its charge id recorded."""
    payment = PaymentFactory()
    obj = payment_intent(
        id=payment.stripe_payment_intent_id, amount=1000, metadata=payment.order.metadata
    )
    post_webhook(event("payment_intent.succeeded", obj))
    events_drain()
    payment.refresh_from_db()
    assert payment.order.status == Order.Status.PAID
    return payment


def refund_obj(payment, amount: int, status: str = "succeeded", **kw) -> dict:
    obj = fixture("refund")
    obj.update(
        id=kw.pop("id", None) or new_id("re"),
        amount=amount,
        currency="usd",
        status=status,
        charge=payment.stripe_charge_id,
        payment_intent=payment.stripe_payment_intent_id,
        **kw,
    )
    return obj


def charge_refunded(payment, refunds: list[dict]) -> dict:
    charge = fixture("charge")
    charge.update(
        id=payment.stripe_charge_id,
        payment_intent=payment.stripe_payment_intent_id,
        amount=1000,
        amount_refunded=sum(r["amount"] for r in refunds),
        refunded=sum(r["amount"] for r in refunds) == 1000,
        refunds={"object": "list", "data": refunds, "has_more": False},
    )
    return event("charge.refunded", charge)


def test_dashboard_refunds_on_charge_refunded_are_applied_once_each(paid_payment):
    user_id = paid_payment.order.user_id
    first = refund_obj(paid_payment, 300)
    post_webhook(charge_refunded(paid_payment, [first]))
    events_drain()
    assert credits_balance_get(user_id=user_id) == 70
    # Stripe sends the charge again with both refunds; the first is not applied twice.
    second = refund_obj(paid_payment, 700)
    delivery = charge_refunded(paid_payment, [second, first])
    post_webhook(delivery)
    post_webhook(delivery)  # a duplicate delivery
    events_drain()
    assert Refund.objects.count() == 2
    assert set(Refund.objects.values_list("source", flat=True)) == {"stripe"}
    assert credits_balance_get(user_id=user_id) == 0
    assert Order.objects.get(pk=paid_payment.order_id).status == Order.Status.REFUNDED


def test_the_journal_notes_each_refund_of_a_refunded_charge_or_that_it_has_none(paid_payment):
    """What staff read for each event in the journal: the refunds it recorded, by id."""
    first = refund_obj(paid_payment, 300)
    with_one = post_webhook(charge_refunded(paid_payment, [first]))
    assert with_one.status_code == 200
    events_drain()
    post_webhook(charge_refunded(paid_payment, []))
    events_drain()
    notes = [
        e.last_error for e in StripeEvent.objects.filter(type="charge.refunded").order_by("id")
    ]
    assert notes[0].startswith(f"refund {first['id']} applied")
    assert notes[1] == "no refunds on the charge"


def test_refund_updated_before_charge_refunded_applies_once(paid_payment):
    refund = refund_obj(paid_payment, 1000)
    post_webhook(event("refund.updated", refund))
    post_webhook(event("refund.created", refund))
    post_webhook(charge_refunded(paid_payment, [refund]))
    assert events_drain() == 3
    assert set(StripeEvent.objects.values_list("status", flat=True)) == {"processed"}
    assert Refund.objects.get().applied_at is not None
    assert CreditTransaction.objects.filter(kind="refund").count() == 1
    assert credits_balance_get(user_id=paid_payment.order.user_id) == 0


def test_a_pending_refund_applies_only_when_it_succeeds(paid_payment):
    refund = refund_obj(paid_payment, 500, status="pending")
    post_webhook(event("refund.created", refund))
    events_drain()
    assert Refund.objects.get().status == Refund.Status.PENDING
    assert credits_balance_get(user_id=paid_payment.order.user_id) == 100
    post_webhook(event("refund.updated", {**refund, "status": "succeeded"}))
    events_drain()
    assert Refund.objects.get().applied_at is not None
    assert credits_balance_get(user_id=paid_payment.order.user_id) == 50


def test_the_event_of_a_refund_still_pending_says_so(paid_payment):
    refund = refund_obj(paid_payment, 500, status="pending")
    post_webhook(event("refund.created", refund))
    events_drain()
    stored = StripeEvent.objects.get(type="refund.created")
    assert (stored.status, stored.last_error) == ("processed", f"refund {refund['id']} is pending")


def test_a_failed_refund_is_recorded_and_nothing_is_reversed(paid_payment):
    refund = refund_obj(
        paid_payment, 500, status="failed", failure_reason="expired_or_canceled_card"
    )
    post_webhook(event("refund.failed", refund))
    events_drain()
    stored = Refund.objects.get()
    assert stored.status == Refund.Status.FAILED
    assert stored.failure_reason == "expired_or_canceled_card"
    assert stored.applied_at is None
    assert Order.objects.get(pk=paid_payment.order_id).status == Order.Status.PAID
    assert credits_balance_get(user_id=paid_payment.order.user_id) == 100


def test_a_refund_reported_without_its_currency_is_in_the_orders_currency(staff_api, paid_order):
    """A refund whose report leaves out the currency is of its payment, in the order's
    currency: it counts against what is left to refund."""
    unsaid = {**refund_obj(paid_order.payments.get(), 600), "currency": None}
    post_webhook(event("refund.updated", unsaid))
    events_drain()
    stored = Refund.objects.get()
    assert (stored.currency, stored.applied_at is not None) == ("usd", True)
    resp = staff_api.post(f"/payments/orders/{paid_order.pk}/refunds/", {})
    assert resp.status_code == 201, resp.content
    assert resp.json()["amount"] == 400


@pytest.mark.parametrize("status", ["succeeded", "canceled"])
def test_only_a_refund_that_failed_carries_a_failure_reason(paid_payment, status):
    """A refund Stripe reports succeeded, or canceled before it was paid out, did not fail:
    staff read no failure reason on it."""
    post_webhook(event("refund.updated", refund_obj(paid_payment, 500, status=status)))
    events_drain()
    stored = Refund.objects.get()
    assert (stored.status, stored.failure_reason) == (status, "")


@pytest.mark.parametrize("reported", [[600, 600], [1001]], ids=["two-parts", "one-cent-over"])
def test_refunds_reported_beyond_what_was_captured_reverse_nothing_more(paid_payment, reported):
    """The refunded total never exceeds what was captured: of refunds reported for a 10.00
    payment, the one that would take the total past it (a second 6.00, or a first 10.01)
    is stored but reverses nothing, and its event fails at once for staff to look at."""
    user_id = paid_payment.order.user_id
    for amount in reported:
        post_webhook(event("refund.updated", refund_obj(paid_payment, amount)))
        events_drain()

    *applied, beyond = reported
    order = Order.objects.get(pk=paid_payment.order_id)
    assert order.status == (Order.Status.PARTIALLY_REFUNDED if applied else Order.Status.PAID)
    left = 100 - sum(applied) // 10
    assert credits_balance_get(user_id=user_id) == credits_ledger_sum(user_id=user_id) == left
    assert sorted((r.amount, r.applied_at is None) for r in Refund.objects.all()) == sorted(
        [(a, False) for a in applied] + [(beyond, True)]
    )
    failed = StripeEvent.objects.get(status=StripeEvent.Status.FAILED)
    assert "RefundExceedsCapturedError" in failed.last_error


def test_a_refund_event_before_its_payment_is_stored_and_applied_once_it_is_paid():
    from django.utils import timezone

    payment = PaymentFactory(stripe_charge_id="ch_early")
    post_webhook(event("refund.updated", refund_obj(payment, 1000)))
    events_drain()
    stored = StripeEvent.objects.get()
    assert stored.status == StripeEvent.Status.RETRYING
    assert "RefundBeforePaymentError" in stored.last_error
    refund = Refund.objects.get()  # Stripe's answer is kept even though it waits
    assert (refund.status, refund.applied_at) == (Refund.Status.SUCCEEDED, None)

    paid = payment_intent(
        id=payment.stripe_payment_intent_id,
        amount=1000,
        metadata=payment.order.metadata,
        latest_charge="ch_early",
    )
    post_webhook(event("payment_intent.succeeded", paid))
    events_drain()
    StripeEvent.objects.filter(pk=stored.pk).update(next_attempt_at=timezone.now())
    events_drain()
    refund.refresh_from_db()
    assert refund.applied_at is not None
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.REFUNDED
    assert CreditTransaction.objects.filter(kind="refund").count() == 1
    assert credits_balance_get(user_id=payment.order.user_id) == 0


def test_a_webhook_that_races_our_own_refund_request_makes_one_row(paid_payment):
    """Stripe's webhook can be processed before our request has stored the `re_` id."""
    ours = Refund.objects.create(
        order=paid_payment.order,
        payment=paid_payment,
        amount=400,
        currency="usd",
        source=Refund.Source.STAFF,
    )
    stripe_says = refund_obj(paid_payment, 400, metadata={"refund_id": str(ours.pk)})
    post_webhook(event("refund.created", stripe_says))
    events_drain()
    # Now our own request's answer is recorded too.
    from billing.stripe_objects import refund_from_payload

    refund_record(data=refund_from_payload(stripe_says))
    assert Refund.objects.count() == 1
    ours.refresh_from_db()
    assert ours.stripe_refund_id == stripe_says["id"]
    assert ours.source == Refund.Source.STAFF
    assert CreditTransaction.objects.filter(kind="refund").count() == 1


# --- automatic refund when delivery is impossible ------------------------------------


class SoldOut:
    """A purchase type whose stock ran out between the order and its payment."""

    @hookimpl
    def tollgate_purchase_types(self):
        return [PurchaseType(name="sold-out", order_type="direct", label="Sold out")]

    @hookimpl
    def tollgate_quote(self, request):
        return Quote(amount=1500, currency="usd", description="the last one")

    @hookimpl
    def tollgate_fulfil(self, order):
        raise FulfilmentImpossibleError("The last seat was taken while you paid.")

    @hookimpl
    def tollgate_refund(self, order, refund):
        return {"reversed": "nothing to reverse"}


def test_an_undeliverable_paid_order_is_refunded_automatically_with_the_reason(api, stripe_server):
    with registry.plugin_registered(SoldOut(), name="sold-out"):
        body = api.post(
            "/payments/create/", {"purchase_type": "sold-out", "payment_method_id": "pm_card_visa"}
        ).json()
        order = Order.objects.get(pk=body["order_id"])
        assert order.status == Order.Status.PAID
        refund = Refund.objects.get(order=order)
        assert refund.source == Refund.Source.AUTOMATIC
        assert refund.status == Refund.Status.PENDING
        assert order.fulfilment.result == {"impossible": "The last seat was taken while you paid."}

        assert refund_submit(refund.pk) == "succeeded"  # what the worker runs
        order.refresh_from_db()
        assert order.status == Order.Status.REFUNDED
        assert order.failure_code == "fulfilment_impossible"
        assert order.failure_message == "The last seat was taken while you paid."
        assert [(r.amount, r.reason) for r in stripe_refunds()] == [(1500, "duplicate")]
        seen = api.get(f"/payments/orders/{order.pk}/").json()
        assert seen["status"] == "refunded"
        assert seen["failure_message"] == "The last seat was taken while you paid."


@pytest.mark.django_db(transaction=True)
def test_racing_refunds_never_exceed_what_was_captured(stripe_server, user, staff_user):
    import threading

    from django.db import connection

    from platform_core.auth import api_token_create
    from tests.conftest import PASSWORD, ApiClient

    buyer = ApiClient(api_token_create(username=user.username, password=PASSWORD)[0])
    order_id = buyer.post("/payments/create/", BUY_100).json()["order_id"]
    staff_token = api_token_create(username=staff_user.username, password=PASSWORD)[0]
    barrier = threading.Barrier(15)
    statuses: list[int] = []

    def refund_one() -> None:
        try:
            barrier.wait()
            resp = ApiClient(staff_token).post(
                f"/payments/orders/{order_id}/refunds/", {"amount": "1.00"}
            )
            statuses.append(resp.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=refund_one) for _ in range(15)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201] * 10 + [409] * 5
    assert len(stripe_refunds()) == 10
    assert Order.objects.get(pk=order_id).status == Order.Status.REFUNDED
    assert credits_balance_get(user_id=user.pk) == credits_ledger_sum(user_id=user.pk) == 0


@pytest.mark.parametrize(
    ("credits", "amount", "parts"),
    [
        (100, 1000, [333, 333, 334]),
        (7, 1000, [1] * 1000),
        (1200, 9900, [1, 9898, 1]),
        (3, 10, [5, 5]),
    ],
)
def test_proportional_refund_debits_add_up_to_exactly_the_credits(credits, amount, parts):
    from purchasables.builtin.credit_pack import refund_debit

    total, refunded = 0, 0
    for part in parts:
        debit = refund_debit(
            credits=credits, order_amount=amount, refunded_before=refunded, refunded_now=part
        )
        assert debit >= 0
        total += debit
        refunded += part
        assert total <= credits * refunded // amount
    assert total == credits


# --- a refund at Stripe is never sent twice ------------------------------------------


class RefundHookFails:
    """Credits whose refund hook fails until `healed`."""

    healed = False

    @hookimpl
    def tollgate_purchase_types(self):
        return [PurchaseType(name="fragile", order_type="credit", label="Fragile")]

    @hookimpl
    def tollgate_quote(self, request):
        return Quote(amount=1000, currency="usd", description="fragile")

    @hookimpl
    def tollgate_fulfil(self, order):
        return {}

    @hookimpl
    def tollgate_refund(self, order, refund):
        if not self.healed:
            raise RuntimeError("the refund hook fell over")
        return {"reversed": refund.amount}


class RefundsTold:
    """A purchase type that keeps what its refund hook is told."""

    def __init__(self) -> None:
        self.told: list = []

    @hookimpl
    def tollgate_purchase_types(self):
        return [PurchaseType(name="told", order_type="direct", label="Told")]

    @hookimpl
    def tollgate_quote(self, request):
        return Quote(amount=1000, currency="usd", description="told")

    @hookimpl
    def tollgate_fulfil(self, order):
        return {}

    @hookimpl
    def tollgate_refund(self, order, refund):
        self.told.append(refund)
        return {"reversed": refund.amount}


def test_the_plugin_is_told_each_stripe_refund_and_the_running_total(api, staff_api, stripe_server):
    plugin = RefundsTold()
    with registry.plugin_registered(plugin, name="told"):
        order_id = api.post(
            "/payments/create/", {"purchase_type": "told", "payment_method_id": "pm_card_visa"}
        ).json()["order_id"]
        part = staff_api.post(f"/payments/orders/{order_id}/refunds/", {"amount": "3.00"})
        rest = staff_api.post(
            f"/payments/orders/{order_id}/refunds/", {"reason": "the buyer changed their mind"}
        )
    assert part.status_code == rest.status_code == 201, (part.content, rest.content)
    assert [
        (t.refund_id, t.stripe_refund_id, t.amount, t.refunded_total, t.currency, t.reason)
        for t in plugin.told
    ] == [
        (part.json()["id"], part.json()["stripe_refund_id"], 300, 300, "usd", ""),
        (
            rest.json()["id"],
            rest.json()["stripe_refund_id"],
            700,
            1000,
            "usd",
            "the buyer changed their mind",
        ),
    ]
    assert all(t.stripe_refund_id.startswith("re_") for t in plugin.told)
    assert {t.stripe_dispute_id for t in plugin.told} == {""}


def test_refunds_reaching_past_the_price_leave_the_order_refunded(api, staff_api, stripe_server):
    """The order was paid twice (the second payment's automatic refund is on its way).
    Staff refund 6.00 as credits, and all 10.00 of the first payment are refunded in
    Stripe's dashboard too: 16.00 of the 10.00 price came back, within the 20.00 captured.
    The order is refunded, not partly."""
    plugin = RefundsTold()
    with registry.plugin_registered(plugin, name="told"):
        order_id = api.post(
            "/payments/create/", {"purchase_type": "told", "payment_method_id": "pm_card_visa"}
        ).json()["order_id"]
        order = Order.objects.get(pk=order_id)
        first = order.payments.get()
        paid_again(order)
        as_credits = staff_api.post(
            f"/payments/orders/{order_id}/refunds/", {"amount": "6.00", "to_credits": True}
        )
        assert as_credits.status_code == 201, as_credits.content
        post_webhook(event("refund.updated", refund_obj(first, 1000)))
        events_drain()
    assert [t.refunded_total for t in plugin.told] == [600, 1600]
    assert Order.objects.get(pk=order_id).status == Order.Status.REFUNDED


def _age(refund_id: int) -> None:
    from datetime import timedelta

    from django.utils import timezone

    old = timezone.now() - timedelta(minutes=5)
    Refund.objects.filter(pk=refund_id).update(created_at=old, submitted_at=old)


def test_a_refund_whose_apply_fails_is_applied_later_and_never_sent_again(
    api, staff_api, stripe_server
):
    from billing.services.refunds import refunds_resume

    plugin = RefundHookFails()
    with registry.plugin_registered(plugin, name="fragile"):
        order_id = api.post(
            "/payments/create/", {"purchase_type": "fragile", "payment_method_id": "pm_card_visa"}
        ).json()["order_id"]
        resp = staff_api.post(f"/payments/orders/{order_id}/refunds/", {"amount": "3.00"})
        assert resp.status_code == 201, resp.content
        assert resp.json()["status"] == "succeeded"
        assert resp.json()["applied"] is False
        refund = Refund.objects.get()
        _age(refund.pk)
        for _ in range(3):
            refunds_resume()
        assert len(stripe_refunds()) == 1  # never sent again
        plugin.healed = True
        assert refunds_resume() == 1  # the one refund it applied
        refund.refresh_from_db()
        assert refund.result == {"reversed": 300}
        assert Order.objects.get(pk=order_id).status == Order.Status.PARTIALLY_REFUNDED
        assert len(stripe_refunds()) == 1


def test_a_dashboard_refund_whose_apply_failed_is_applied_when_its_event_is_retried(
    api, stripe_server
):
    """The plugin's refund hook fails on a refund made in Stripe's dashboard: the refund
    is stored and its event retried; once the hook works, the retry applies it."""
    from django.utils import timezone

    plugin = RefundHookFails()
    with registry.plugin_registered(plugin, name="fragile"):
        order_id = api.post(
            "/payments/create/", {"purchase_type": "fragile", "payment_method_id": "pm_card_visa"}
        ).json()["order_id"]
        payment = Order.objects.get(pk=order_id).payments.get()
        post_webhook(event("refund.updated", refund_obj(payment, 300)))
        events_drain()
        stored = StripeEvent.objects.get(type="refund.updated")
        assert stored.status == StripeEvent.Status.RETRYING
        assert Refund.objects.get().applied_at is None

        plugin.healed = True
        StripeEvent.objects.filter(pk=stored.pk).update(next_attempt_at=timezone.now())
        events_drain()
    stored.refresh_from_db()
    assert stored.status == StripeEvent.Status.PROCESSED
    refund = Refund.objects.get()
    assert (refund.applied_at is not None, refund.result) == (True, {"reversed": 300})
    assert Order.objects.get(pk=order_id).status == Order.Status.PARTIALLY_REFUNDED


@pytest.mark.django_db(transaction=True)
def test_a_refund_whose_webhook_overtook_the_answer_and_failed_to_apply_is_applied_by_the_request(
    api, staff_api, stripe_server, settings
):
    """Stripe's webhook of a staff refund is processed before Stripe's answer reaches the
    request, and the plugin's refund hook fails there. It works again by the time the
    answer arrives: the request applies the refund it asked for, once, and says so."""
    plugin = RefundHookFails()
    proxy = FaultyProxy(stripe_server.base)
    settings.STRIPE_API_BASE = proxy.base

    def webhook_first(answer: bytes) -> None:
        try:
            post_webhook(event("refund.updated", json.loads(answer)))
            events_drain()
            plugin.healed = True
        finally:
            connection.close()

    try:
        with registry.plugin_registered(plugin, name="fragile"):
            order_id = api.post(
                "/payments/create/",
                {"purchase_type": "fragile", "payment_method_id": "pm_card_visa"},
            ).json()["order_id"]
            proxy.fail_next(("POST", "/v1/refunds"), webhook_first)
            resp = staff_api.post(f"/payments/orders/{order_id}/refunds/", {"amount": "3.00"})
    finally:
        proxy.close()
        settings.STRIPE_API_BASE = stripe_server.base
    assert resp.status_code == 201, resp.content
    assert (resp.json()["status"], resp.json()["applied"]) == ("succeeded", True)
    overtaking = StripeEvent.objects.get(type="refund.updated")
    assert overtaking.status == StripeEvent.Status.RETRYING
    refund = Refund.objects.get()
    assert (refund.stripe_refund_id, refund.result) == (
        resp.json()["stripe_refund_id"],
        {"reversed": 300},
    )
    assert Order.objects.get(pk=order_id).status == Order.Status.PARTIALLY_REFUNDED
    assert len(stripe_refunds()) == 1


def test_the_sweep_leaves_a_refund_whose_request_just_started_to_that_request(
    staff_user, paid_order, stripe_server
):
    from datetime import timedelta

    from django.utils import timezone

    from billing.services.refunds import refunds_resume

    payment = paid_order.payments.get()
    just_started, over_a_minute, never_sent = (
        Refund.objects.create(
            order=paid_order, payment=payment, amount=amount, currency="usd", source="staff"
        )
        for amount in (100, 200, 300)
    )
    a_minute_ago = timezone.now() - timedelta(seconds=61)
    Refund.objects.filter(pk=over_a_minute.pk).update(
        created_at=a_minute_ago, submitted_at=a_minute_ago
    )
    # Its request died before it was sent: made over a minute ago, never submitted.
    Refund.objects.filter(pk=never_sent.pk).update(created_at=a_minute_ago)
    assert refunds_resume() == 2
    for refund in (just_started, over_a_minute, never_sent):
        refund.refresh_from_db()
    assert (just_started.stripe_refund_id, just_started.submitted_at) == (None, None)
    assert over_a_minute.status == never_sent.status == Refund.Status.SUCCEEDED
    assert sorted(r.amount for r in stripe_refunds()) == [200, 300]


def test_a_refund_that_has_not_succeeded_is_never_applied(paid_payment):
    from billing.services.refunds import refund_apply

    for status in (Refund.Status.PENDING, Refund.Status.FAILED):
        refund = Refund.objects.create(
            order=paid_payment.order,
            payment=paid_payment,
            amount=1000,
            currency="usd",
            source="staff",
            status=status,
        )
        assert "needs nothing more" in refund_apply(refund_id=refund.pk)
        refund.refresh_from_db()
        assert refund.applied_at is None
    assert Order.objects.get(pk=paid_payment.order_id).status == Order.Status.PAID
    assert credits_balance_get(user_id=paid_payment.order.user_id) == 100


def test_a_refund_goes_to_the_payment_that_took_the_money_not_an_earlier_attempt(
    user, stripe_server
):
    from billing.services.refunds import refund_create
    from tests.billing.factories import OrderFactory

    order = OrderFactory(user=user)
    PaymentFactory(order=order, status="requires_payment_method", amount_received=0)
    client = stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
    )
    paying = client.v1.payment_intents.create(
        params={
            "amount": 1000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "metadata": dict(order.metadata),
        }
    )
    post_webhook(
        event(
            "payment_intent.succeeded",
            payment_intent(id=paying.id, amount=1000, metadata=order.metadata),
        )
    )
    events_drain()
    assert Order.objects.get(pk=order.pk).status == Order.Status.PAID

    refund = refund_create(order_id=order.pk, amount=None)
    assert (refund.status, refund.amount) == (Refund.Status.SUCCEEDED, 1000)
    assert refund.payment.stripe_payment_intent_id == paying.id
    assert Order.objects.get(pk=order.pk).status == Order.Status.REFUNDED


def test_a_refund_that_may_have_reached_stripe_is_looked_up_not_resent(
    staff_user, paid_order, stripe_server
):
    from billing.services.refunds import refunds_resume

    # Our request reached Stripe, but its answer was lost before we stored the id.
    payment = paid_order.payments.get()
    refund = Refund.objects.create(
        order=paid_order, payment=payment, amount=250, currency="usd", source="staff"
    )
    client = stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
    )
    at_stripe = client.v1.refunds.create(
        params={
            "payment_intent": payment.stripe_payment_intent_id,
            "amount": 250,
            "metadata": {"refund_id": str(refund.pk)},
        }
    )
    _age(refund.pk)
    refunds_resume()
    refund.refresh_from_db()
    assert refund.stripe_refund_id == at_stripe.id
    assert refund.applied_at is not None
    assert len(stripe_refunds()) == 1


def test_a_lost_answer_is_found_by_its_own_refund_id_among_the_payments_refunds(
    staff_user, paid_order, stripe_server
):
    """Refund 5's request reached Stripe but its answer was lost. The payment has other
    refunds at Stripe: two of ours (3 and 7) and one made in the dashboard (no metadata).
    The sweep takes refund 5's own, never another's, and sends nothing again."""
    from django.utils import timezone

    from billing.services.refunds import refunds_resume

    payment = paid_order.payments.get()
    client = stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
    )

    def at_stripe(amount: int, **metadata: str):
        return client.v1.refunds.create(
            params={
                "payment_intent": payment.stripe_payment_intent_id,
                "amount": amount,
                "metadata": metadata,
            }
        )

    for pk in (7, 3):
        Refund.objects.create(
            pk=pk,
            order=paid_order,
            payment=payment,
            amount=100,
            currency="usd",
            source="staff",
            status=Refund.Status.SUCCEEDED,
            stripe_refund_id=at_stripe(100, refund_id=str(pk)).id,
            applied_at=timezone.now(),
        )
    lost = Refund.objects.create(
        pk=5, order=paid_order, payment=payment, amount=250, currency="usd", source="staff"
    )
    own = at_stripe(250, refund_id="5")
    at_stripe(50)  # in the dashboard
    _age(lost.pk)
    refunds_resume()
    lost.refresh_from_db()
    assert (lost.stripe_refund_id, lost.status) == (own.id, Refund.Status.SUCCEEDED)
    assert len(stripe_refunds()) == 4


def test_an_unreachable_stripe_leaves_the_refund_pending_for_the_sweep(
    staff_api, paid_order, settings
):
    from billing.services.refunds import refunds_resume

    working = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    resp = staff_api.post(f"/payments/orders/{paid_order.pk}/refunds/", {"amount": "1.00"})
    assert resp.status_code == 502
    assert resp.json()["extra"]["retryable"] is True
    refund = Refund.objects.get()
    assert refund.status == Refund.Status.PENDING
    settings.STRIPE_API_BASE = working
    _age(refund.pk)
    assert refunds_resume() == 1
    refund.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED
    assert refund.applied_at is not None


def test_a_refund_stripe_refuses_for_good_fails_and_does_not_stop_the_sweep(
    staff_user, paid_order, stripe_server
):
    from billing.services.refunds import refunds_resume

    lost = PaymentFactory(order=paid_order, amount_received=0)  # a PaymentIntent Stripe lacks
    bad = Refund.objects.create(
        order=paid_order, payment=lost, amount=100, currency="usd", source="staff"
    )
    good = Refund.objects.create(
        order=paid_order,
        payment=paid_order.payments.first(),
        amount=100,
        currency="usd",
        source="staff",
    )
    _age(bad.pk)
    _age(good.pk)
    refunds_resume()
    bad.refresh_from_db()
    good.refresh_from_db()
    assert bad.status == Refund.Status.FAILED
    assert good.status == Refund.Status.SUCCEEDED
    # Its task run again (a worker that died before it finished): Stripe is not asked
    # again for a refund it refused for good.
    assert refund_submit(bad.pk) == Refund.Status.FAILED
    assert [r.amount for r in stripe_refunds()] == [100]


def test_a_long_failure_reason_from_stripe_is_kept_to_500_characters(paid_payment):
    why = "The bank returned the refund: " + "account closed; " * 40
    post_webhook(
        event("refund.failed", refund_obj(paid_payment, 500, "failed", failure_reason=why))
    )
    events_drain()
    stored = Refund.objects.get()
    assert (stored.status, stored.failure_reason) == (Refund.Status.FAILED, why[:500])


def test_an_older_refund_report_does_not_move_its_status_back(paid_payment):
    refund = refund_obj(paid_payment, 500, status="failed", failure_reason="lost_or_stolen_card")
    post_webhook(event("refund.failed", refund))
    post_webhook(event("refund.created", {**refund, "status": "pending"}))
    events_drain()
    assert Refund.objects.get().status == Refund.Status.FAILED


def test_a_refund_failing_after_it_was_applied_is_raised_to_staff(paid_payment):
    refund = refund_obj(paid_payment, 1000)
    post_webhook(event("refund.updated", refund))
    events_drain()
    assert credits_balance_get(user_id=paid_payment.order.user_id) == 0
    post_webhook(event("refund.failed", {**refund, "status": "failed"}))
    events_drain()
    failed = StripeEvent.objects.get(type="refund.failed")
    assert failed.status == StripeEvent.Status.FAILED
    assert "RefundFailedAfterApplyError" in failed.last_error
    assert Refund.objects.get().status == Refund.Status.FAILED
    # Stripe tells it again (refund.updated): staff are told again, not answered "failed".
    post_webhook(event("refund.updated", {**refund, "status": "failed"}))
    events_drain()
    again = StripeEvent.objects.get(type="refund.updated", status=StripeEvent.Status.FAILED)
    assert "RefundFailedAfterApplyError" in again.last_error


def test_support_staff_cannot_refund_through_the_api(support_user, paid_order):
    from tests.conftest import client_for

    resp = client_for(support_user).post(f"/payments/orders/{paid_order.pk}/refunds/", {})
    assert resp.status_code == 403
    assert not Refund.objects.exists()


def test_a_refund_that_overtakes_its_payment_event_is_kept_for_it(user, stripe_server):
    """A subscription cycle's refund can arrive before the `invoice.paid` that makes its
    order: it must wait for it, not be dropped as someone else's. Its PaymentIntent, at
    Stripe, is our customer's."""
    from django.utils import timezone

    from billing.models import StripeCustomer

    client = stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
    )
    customer = client.v1.customers.create(params={"email": "cycle@example.com"})
    StripeCustomer.objects.create(user=user, stripe_customer_id=customer.id)
    early_intent = client.v1.payment_intents.create(
        params={"amount": 1000, "currency": "usd", "customer": customer.id}
    ).id
    refund = fixture("refund")
    refund.update(id=new_id("re"), amount=500, status="succeeded", payment_intent=early_intent)
    post_webhook(event("refund.created", refund))
    events_drain()
    waiting = StripeEvent.objects.get(type="refund.created")
    assert waiting.status == StripeEvent.Status.RETRYING

    payment = PaymentFactory(
        stripe_payment_intent_id=early_intent, order__user=user, status="requires_payment_method"
    )
    paid = payment_intent(id=early_intent, amount=1000, metadata=payment.order.metadata)
    post_webhook(event("payment_intent.succeeded", paid))
    events_drain()
    StripeEvent.objects.filter(pk=waiting.pk).update(next_attempt_at=timezone.now())
    events_drain()
    waiting.refresh_from_db()
    assert waiting.status == StripeEvent.Status.PROCESSED
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.PARTIALLY_REFUNDED
    assert credits_balance_get(user_id=user.pk) == 50
