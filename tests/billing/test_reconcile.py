"""Reconciliation against localstripe: webhooks lost on purpose, then found again
through Stripe's events API and by re-reading stuck orders."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
import stripe
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from billing import gateway
from billing.models import Order, Payment, StripeEvent
from billing.services.events import events_drain
from billing.services.payments import order_target_status
from billing.services.reconcile import (
    ReconcileReport,
    events_reconcile,
    orders_stuck_recheck,
    reconcile,
)
from billing.stripe_objects import payment_intent_from_payload
from credits.selectors import credits_balance_get
from tests.stripe_events import new_id, payment_intent

pytestmark = pytest.mark.django_db

BUY_100 = {"is_credit_purchase": True, "credit_amount": 100}


def pay_in_the_browser(intent_id: str) -> None:
    """Stripe.js confirms the payment; its webhook never reaches us."""
    client = stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
    )
    client.v1.payment_intents.update(intent_id, params={"payment_method": "pm_card_visa"})
    client.v1.payment_intents.confirm(intent_id)


def test_a_lost_webhook_is_found_in_stripes_events_and_fulfils_once(api, user, stripe_server):
    body = api.post("/payments/create/", BUY_100).json()
    pay_in_the_browser(body["payment_intent_id"])
    assert Order.objects.get(pk=body["order_id"]).status == Order.Status.PENDING

    seen, new = events_reconcile(since=timezone.now() - timedelta(days=30))
    assert new >= 1
    assert StripeEvent.objects.filter(
        type="payment_intent.succeeded", object_id=body["payment_intent_id"]
    ).exists()
    events_drain()
    assert Order.objects.get(pk=body["order_id"]).status == Order.Status.PAID
    assert credits_balance_get(user_id=user.pk) == 100

    again_seen, again_new = events_reconcile(since=timezone.now() - timedelta(days=30))
    assert (again_seen, again_new) == (seen, 0)  # nothing stored twice
    events_drain()
    assert credits_balance_get(user_id=user.pk) == 100


def test_a_stuck_order_is_read_again_from_stripe(api, user, stripe_server):
    body = api.post("/payments/create/", BUY_100).json()
    pay_in_the_browser(body["payment_intent_id"])
    assert orders_stuck_recheck(older_than=timedelta(minutes=30)) == (0, 0)  # not stuck yet
    Order.objects.filter(pk=body["order_id"]).update(updated_at=timezone.now() - timedelta(hours=1))
    assert orders_stuck_recheck(older_than=timedelta(minutes=30)) == (1, 1)
    assert Order.objects.get(pk=body["order_id"]).status == Order.Status.PAID
    assert credits_balance_get(user_id=user.pk) == 100


def test_a_stuck_order_whose_buyer_never_tried_to_pay_stays_pending(api, stripe_server):
    body = api.post("/payments/create/", BUY_100).json()  # no card: Stripe waits for one
    Order.objects.filter(pk=body["order_id"]).update(updated_at=timezone.now() - timedelta(hours=1))
    assert orders_stuck_recheck(older_than=timedelta(minutes=30)) == (1, 0)
    order = Order.objects.get(pk=body["order_id"])
    assert (order.status, order.failure_code) == (Order.Status.PENDING, "")


def test_a_stuck_order_whose_card_was_declined_at_stripe_fails_with_the_decline(api, stripe_server):
    from tests.billing.test_e2e_payments import card

    body = api.post("/payments/create/", BUY_100).json()
    client = stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
    )
    intent_id = body["payment_intent_id"]
    client.v1.payment_intents.update(intent_id, params={"payment_method": card("4000000000000341")})
    with pytest.raises(stripe.CardError):  # in the browser; its webhook never reaches us
        client.v1.payment_intents.confirm(intent_id)
    Order.objects.filter(pk=body["order_id"]).update(updated_at=timezone.now() - timedelta(hours=1))
    assert orders_stuck_recheck(older_than=timedelta(minutes=30)) == (1, 1)
    order = Order.objects.get(pk=body["order_id"])
    assert order.status == Order.Status.FAILED
    assert order.failure_code


@pytest.mark.parametrize(
    ("at_stripe", "status"),
    [("canceled", Order.Status.CANCELED), ("requires_action", Order.Status.REQUIRES_ACTION)],
)
def test_a_stuck_order_takes_the_state_its_payment_has_at_stripe(
    api, user, stripe_server, at_stripe, status
):
    """Its PaymentIntent was cancelled at Stripe, or waits for 3-D Secure in the
    browser, and the webhook never reached us: the order follows Stripe, and no
    credits are granted."""
    from tests.billing.test_e2e_payments import card

    body = api.post("/payments/create/", BUY_100).json()
    client = stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
    )
    intent_id = body["payment_intent_id"]
    if at_stripe == "canceled":
        client.v1.payment_intents.cancel(intent_id)
    else:
        client.v1.payment_intents.update(
            intent_id, params={"payment_method": card("4000002500003155")}
        )
        client.v1.payment_intents.confirm(intent_id)
    assert client.v1.payment_intents.retrieve(intent_id).status == at_stripe
    Order.objects.filter(pk=body["order_id"]).update(updated_at=timezone.now() - timedelta(hours=1))
    assert orders_stuck_recheck(older_than=timedelta(minutes=30)) == (1, 1)
    assert Order.objects.get(pk=body["order_id"]).status == status
    assert credits_balance_get(user_id=user.pk) == 0


@pytest.mark.parametrize(
    ("at_stripe", "declined", "status"),
    [
        ("succeeded", False, Order.Status.PAID),
        ("processing", False, Order.Status.PROCESSING),
        ("requires_action", False, Order.Status.REQUIRES_ACTION),
        ("canceled", False, Order.Status.CANCELED),
        ("requires_payment_method", True, Order.Status.FAILED),
        ("requires_payment_method", False, None),
        ("requires_confirmation", False, None),
        ("requires_capture", False, None),
    ],
)
def test_the_state_of_a_payment_at_stripe_is_the_state_its_order_takes(at_stripe, declined, status):
    """Read from Stripe's answer: a declined payment fails its order; one still waiting
    for a card, a confirmation or a capture moves it nowhere."""
    obj = payment_intent(id=new_id("pi"), amount=1000, status=at_stripe)
    if not declined:
        obj["last_payment_error"] = None
    intent = payment_intent_from_payload(json.loads(json.dumps(obj)))
    assert order_target_status(intent) == status


def test_the_command_reports_what_it_did_with_progress(api, stripe_server):
    body = api.post("/payments/create/", BUY_100).json()
    pay_in_the_browser(body["payment_intent_id"])
    out, err = StringIO(), StringIO()
    call_command("reconcile", "--since", "1", stdout=out, stderr=err)
    assert "were new and are queued" in out.getvalue()
    assert "stuck orders re-read from Stripe" in out.getvalue()
    assert "events read" in err.getvalue()


class Terminal(StringIO):
    def isatty(self) -> bool:
        return True


def stuck_orders(api, count: int) -> None:
    """`count` orders paid at Stripe whose webhooks never came, unpaid here for an hour."""
    for _ in range(count):
        body = api.post("/payments/create/", BUY_100).json()
        pay_in_the_browser(body["payment_intent_id"])
    Order.objects.update(updated_at=timezone.now() - timedelta(hours=1))


def test_the_commands_progress_in_a_log_is_whole_lines(api, stripe_server):
    stuck_orders(api, 2)
    log = StringIO()  # a pipe or a file: not a terminal
    call_command("reconcile", "--since", "1", stdout=StringIO(), stderr=log)
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0].startswith("events read   ")
    assert lines[-1] == f"stuck orders  [{'#' * 30}] 2/2"
    # Every line is one display of one counter, never two run together.
    assert all(line.count("events read") + line.count("stuck orders") == 1 for line in lines)


def test_the_commands_progress_on_a_terminal_is_redrawn_and_each_counter_ends_its_line(
    api, stripe_server
):
    stuck_orders(api, 2)
    tty = Terminal()
    call_command("reconcile", "--since", "1", stdout=StringIO(), stderr=tty)
    lines = tty.getvalue().split("\n")
    assert lines[-1] == ""  # the last display's line is ended
    events, stuck = lines[:-1]
    assert events.startswith("\revents read   ") and "stuck orders" not in events
    assert stuck.count("\r") == 2 and stuck.endswith(f"stuck orders  [{'#' * 30}] 2/2")


def test_reconcile_reports_the_events_it_read_and_stored_and_the_orders_it_moved(
    api, user, stripe_server
):
    body = api.post("/payments/create/", BUY_100).json()
    pay_in_the_browser(body["payment_intent_id"])
    Order.objects.filter(pk=body["order_id"]).update(updated_at=timezone.now() - timedelta(hours=1))
    since = timezone.now() - timedelta(days=1)
    listed = list(gateway.events_since(created_after=int(since.timestamp())))
    assert listed

    report = reconcile(since=since, stuck_after=timedelta(minutes=30))

    assert report == ReconcileReport(
        events_seen=len(listed),
        events_new=StripeEvent.objects.count(),
        orders_checked=1,
        orders_moved=1,
    )
    assert report.events_new >= 1
    assert Order.objects.get(pk=body["order_id"]).status == Order.Status.PAID
    assert credits_balance_get(user_id=user.pk) == 100


def test_a_payment_stripe_cannot_read_does_not_keep_the_next_one_from_being_read(
    api, user, stripe_server
):
    body = api.post("/payments/create/", BUY_100).json()
    pay_in_the_browser(body["payment_intent_id"])
    order = Order.objects.get(pk=body["order_id"])
    # An earlier attempt's PaymentIntent that Stripe no longer knows comes first.
    paid = order.payments.get()
    paid.stripe_payment_intent_id = "pi_3UnknownToStripe"
    paid.save(update_fields=["stripe_payment_intent_id"])
    Payment.objects.create(
        order=order,
        stripe_payment_intent_id=body["payment_intent_id"],
        amount=order.amount,
        currency=order.currency,
    )
    Order.objects.filter(pk=order.pk).update(updated_at=timezone.now() - timedelta(hours=1))

    assert orders_stuck_recheck(older_than=timedelta(minutes=30)) == (1, 1)
    assert Order.objects.get(pk=order.pk).status == Order.Status.PAID
    assert credits_balance_get(user_id=user.pk) == 100
