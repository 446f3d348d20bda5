"""Which payments are ours, and what happens to one that no order can take.

Other systems share the Stripe account and put `order_id` in their metadata too:
a payment attaches to an order only with this deployment's marker and the
order's own amount, currency, customer and user. Events are shaped from
Stripe's fixtures, signed and delivered through the webhook.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from billing.metadata import DEPLOYMENT_KEY, metadata_is_ours
from billing.models import Order, Payment, Refund, StripeCustomer, StripeEvent
from billing.services.refunds import card_refundable
from credits.models import CreditTransaction
from credits.selectors import credits_balance_get
from tests.billing.conftest import deliver
from tests.billing.factories import OrderFactory, PaymentFactory
from tests.billing.test_cards import add_card_via_setup_intent
from tests.billing.test_checkout import session_event
from tests.billing.test_subscriptions import plan, stripe_plan  # noqa: F401 - fixtures
from tests.conftest import client_for
from tests.factories import UserFactory
from tests.stripe_events import event, fixture, new_id, payment_intent, stripe_client

pytestmark = pytest.mark.django_db

BUY_100 = {"is_credit_purchase": True, "credit_amount": 100, "payment_method_id": "pm_card_visa"}


def first_seen_success(order: Order, **overrides) -> dict:
    """A `payment_intent.succeeded` for a PaymentIntent Tollgate has no row of."""
    fields = {"amount": order.amount, "currency": order.currency, "metadata": order.metadata}
    return event(
        "payment_intent.succeeded",
        payment_intent(id=new_id("pi"), **{**fields, **overrides}),
    )


# --- the marker -----------------------------------------------------------------------


def test_every_stripe_object_tollgate_makes_carries_the_deployment_marker(
    api, staff_api, user, stripe_server, settings
):
    settings.TOLLGATE = {**settings.TOLLGATE, "DEPLOYMENT": "shop-eu"}
    body = api.post("/payments/create/", BUY_100).json()
    assert body["status"] == "paid"
    order = Order.objects.get(pk=body["order_id"])
    assert order.metadata[DEPLOYMENT_KEY] == "shop-eu"
    client = stripe_client()
    [intent] = client.v1.payment_intents.list(params={"limit": 100}).data
    assert intent.metadata[DEPLOYMENT_KEY] == "shop-eu"
    assert api.post("/payments/methods/setup/").status_code == 201
    customer = client.v1.customers.retrieve(
        StripeCustomer.objects.get(user=user).stripe_customer_id
    )
    assert customer.metadata[DEPLOYMENT_KEY] == "shop-eu"
    [setup] = client.v1.setup_intents.list(params={"limit": 100}).data
    assert setup.metadata[DEPLOYMENT_KEY] == "shop-eu"
    assert staff_api.post(f"/payments/orders/{order.pk}/refunds/", {}).status_code == 201
    [refund] = client.v1.refunds.list(params={"limit": 100}).data
    assert refund.metadata[DEPLOYMENT_KEY] == "shop-eu"
    assert not metadata_is_ours({"order_id": str(order.pk), DEPLOYMENT_KEY: "tollgate"})


def test_a_subscription_tollgate_starts_carries_the_marker(api, stripe_plan):  # noqa: F811
    add_card_via_setup_intent(api)
    resp = api.post("/payments/subscriptions/", {"plan_id": stripe_plan.pk})
    assert resp.status_code == 201, resp.content
    sub_id = resp.json()["subscription"]["stripe_subscription_id"]
    subscription = stripe_client().v1.subscriptions.retrieve(sub_id)
    assert metadata_is_ours(subscription.metadata.to_dict())


# --- a foreign or mismatched payment never attaches to our order ----------------------


@pytest.fixture
def paid_order(api, stripe_server) -> Order:
    body = api.post("/payments/create/", BUY_100).json()
    assert body["status"] == "paid"
    return Order.objects.get(pk=body["order_id"])


def _foreign_metadata(order: Order) -> dict:
    return {k: v for k, v in order.metadata.items() if k != DEPLOYMENT_KEY}


@pytest.mark.parametrize(
    ("case", "overrides", "outcome"),
    [
        # Another system's real payment: its own order_id happens to be ours.
        (
            "foreign",
            lambda o: {"metadata": _foreign_metadata(o), "currency": "eur", "amount": 121000},
            StripeEvent.Status.NOT_OURS,
        ),
        ("other_currency", lambda o: {"currency": "eur", "amount": 121000}, "failed"),
        ("same_amount_other_currency", lambda o: {"currency": "eur"}, "failed"),
        ("other_amount", lambda o: {"amount": 121000}, "failed"),
        ("other_customer", lambda o: {"customer": "cus_someone_else"}, "failed"),
        (
            "other_user",
            lambda o: {"metadata": {**o.metadata, "user_id": str(UserFactory().pk)}},
            "failed",
        ),
    ],
)
def test_a_payment_that_is_not_the_orders_never_joins_it_and_refund_all_stays_at_its_own(
    paid_order, staff_api, case, overrides, outcome
):
    stored = deliver(first_seen_success(paid_order, **overrides(paid_order)))
    assert stored.status == outcome, stored.last_error
    assert stored.attempts == 1  # final at once, never retried
    if outcome == "failed":
        assert "PaymentMismatchError" in stored.last_error
    assert Payment.objects.filter(order=paid_order).count() == 1
    assert not Refund.objects.exists()  # nobody's money is refunded for it

    resp = staff_api.post(f"/payments/orders/{paid_order.pk}/refunds/", {})
    assert resp.status_code == 201, resp.content
    [refund] = stripe_client().v1.refunds.list(params={"limit": 100}).data
    assert (refund.amount, refund.currency) == (1000, "usd")
    paid_order.refresh_from_db()
    assert paid_order.status == Order.Status.REFUNDED


def test_a_first_seen_payment_of_the_users_own_stripe_customer_pays_the_order():
    """What `other_customer` is not: the customer of the order's user fits the order."""
    order = OrderFactory()
    StripeCustomer.objects.create(user=order.user, stripe_customer_id="cus_the_buyers_own")
    stored = deliver(first_seen_success(order, customer="cus_the_buyers_own"))
    assert stored.status == StripeEvent.Status.PROCESSED, stored.last_error
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert Payment.objects.get(order=order).stripe_payment_intent_id == stored.object_id


@pytest.mark.parametrize("amount", [999, 1001])
def test_news_of_a_first_seen_payment_for_another_amount_never_moves_the_order(amount):
    """The failed event tells staff the payment's amount and the order's."""
    order = OrderFactory()
    obj = payment_intent(
        id=new_id("pi"), amount=amount, status="processing", metadata=order.metadata
    )
    stored = deliver(event("payment_intent.processing", obj))
    assert stored.status == StripeEvent.Status.FAILED
    assert "PaymentMismatchError" in stored.last_error
    assert f"it is for {amount}, the order's card part {order.card_amount}" in stored.last_error
    assert Order.objects.get(pk=order.pk).status == Order.Status.PENDING
    assert not Payment.objects.exists()


@pytest.mark.parametrize("named", ["someone_else", "nobody"])
def test_a_first_seen_payment_for_another_user_says_whose_it_is_for_staff(named):
    """The failed event tells staff which user the payment names, or that it names none."""
    order = OrderFactory()
    if named == "nobody":
        metadata = {k: v for k, v in order.metadata.items() if k != "user_id"}
        whose = "(none)"
    else:
        whose = str(UserFactory().pk)
        metadata = {**order.metadata, "user_id": whose}
    stored = deliver(first_seen_success(order, metadata=metadata))
    assert stored.status == StripeEvent.Status.FAILED
    assert f"it is for user {whose}, the order {order.user_id}'s" in stored.last_error
    assert Order.objects.get(pk=order.pk).status == Order.Status.PENDING
    assert not CreditTransaction.objects.exists()


@pytest.mark.parametrize("currency", ["eur", "zar"])
def test_a_first_seen_payment_in_another_currency_pays_and_grants_nothing(currency):
    """The failed event tells staff the payment's currency and the order's."""
    order = OrderFactory()
    assert order.currency == "usd"
    stored = deliver(first_seen_success(order, currency=currency))
    assert stored.status == StripeEvent.Status.FAILED
    assert "PaymentMismatchError" in stored.last_error
    assert f"it is in {currency}, the order in usd" in stored.last_error
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
    assert not Payment.objects.exists()
    assert not CreditTransaction.objects.exists()


@pytest.mark.parametrize("currency", ["eur", "zar"])
def test_a_known_payment_of_the_right_amount_in_another_currency_grants_nothing(currency):
    payment = PaymentFactory()
    assert payment.order.currency == "usd"
    obj = payment_intent(
        id=payment.stripe_payment_intent_id,
        amount=payment.order.amount,
        currency=currency,
        metadata=payment.order.metadata,
    )
    stored = deliver(event("payment_intent.succeeded", obj))
    assert stored.status == StripeEvent.Status.FAILED
    assert "PaymentMismatchError" in stored.last_error
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.PENDING
    assert not CreditTransaction.objects.exists()


@pytest.mark.parametrize("change", [100, -100])
@pytest.mark.parametrize("news", ["payment_intent.processing", "payment_intent.requires_action"])
def test_news_of_a_known_payment_changed_at_stripe_to_another_amount_moves_nothing(news, change):
    """Its amount changed at Stripe since Tollgate made it, up or down: the order stays
    where it was and the event fails for staff, as news of a first-seen one would."""
    payment = PaymentFactory()
    status = news.removeprefix("payment_intent.")
    obj = payment_intent(
        id=payment.stripe_payment_intent_id,
        amount=payment.order.amount + change,
        status=status,
        metadata=payment.order.metadata,
    )
    stored = deliver(event(news, obj))
    assert stored.status == StripeEvent.Status.FAILED
    assert f"is for {payment.order.amount + change} usd" in stored.last_error
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.PENDING


def test_a_foreign_checkout_session_naming_our_order_is_not_ours():
    order = OrderFactory(payment_type=Order.PaymentType.CHECKOUT)
    session = _session_without_marker(order, fixture("checkout.session")["customer"])
    stored = deliver(event("checkout.session.completed", session))
    assert stored.status == StripeEvent.Status.NOT_OURS
    assert Order.objects.get(pk=order.pk).status == Order.Status.PENDING
    assert not Payment.objects.exists()


def _session_without_marker(order: Order, customer: str) -> dict:
    session = fixture("checkout.session")
    session.update(
        id=new_id("cs_test"),
        status="complete",
        payment_status="paid",
        amount_total=order.amount,
        currency=order.currency,
        customer=customer,
        metadata=_foreign_metadata(order),
        client_reference_id=str(order.pk),
        payment_intent=new_id("pi"),
    )
    return session


def test_a_checkout_session_of_a_customer_we_do_not_know_is_not_ours():
    order = OrderFactory(payment_type=Order.PaymentType.CHECKOUT)
    session = _session_without_marker(order, customer="cus_someone_else")
    stored = deliver(event("checkout.session.completed", session))
    assert stored.status == StripeEvent.Status.NOT_OURS
    assert Order.objects.get(pk=order.pk).status == Order.Status.PENDING
    assert not Payment.objects.exists()


def test_a_checkout_session_of_our_customer_without_the_marker_pays_nothing_and_is_ours():
    """Our own customer paid on a session Tollgate never made (from Stripe's dashboard):
    the event is ours and done, but without the marker it names no order to pay."""
    order = OrderFactory(payment_type=Order.PaymentType.CHECKOUT)
    StripeCustomer.objects.create(user=order.user, stripe_customer_id="cus_ours")
    session = _session_without_marker(order, customer="cus_ours")
    stored = deliver(event("checkout.session.completed", session))
    assert stored.status == StripeEvent.Status.PROCESSED, stored.last_error
    assert Order.objects.get(pk=order.pk).status == Order.Status.PENDING
    assert not Payment.objects.exists()
    assert not CreditTransaction.objects.exists()


# --- a payment of ours that no order can take is refunded, once -------------------------


def _paid_elsewhere(order: Order) -> None:
    """The order was paid by its own payment first."""
    payment = PaymentFactory(order=order)
    own = payment_intent(
        id=payment.stripe_payment_intent_id, amount=order.amount, metadata=order.metadata
    )
    assert deliver(event("payment_intent.succeeded", own)).status == "processed"


@pytest.mark.parametrize("state", ["canceled", "paid"])
def test_a_payment_first_seen_in_a_webhook_that_no_order_can_take_is_refunded_once(state):
    order = OrderFactory()
    if state == "canceled":
        Order.objects.filter(pk=order.pk).update(status=Order.Status.CANCELED)
    else:
        _paid_elsewhere(order)
    evt = first_seen_success(order)
    intent_id = evt["data"]["object"]["id"]
    stored = deliver(evt)
    assert stored.status == StripeEvent.Status.PROCESSED
    assert "Refunding it" in stored.last_error
    [refund] = Refund.objects.all()
    assert refund.payment.stripe_payment_intent_id == intent_id
    assert (refund.source, refund.amount, refund.reverses_order) == ("automatic", 1000, False)
    order.refresh_from_db()
    assert order.status == (Order.Status.CANCELED if state == "canceled" else Order.Status.PAID)
    assert CreditTransaction.objects.count() == (0 if state == "canceled" else 1)

    again = event("payment_intent.succeeded", evt["data"]["object"])
    deliver(again)
    assert Refund.objects.count() == 1

    shown = client_for(order.user).get(f"/payments/orders/{order.pk}/")
    assert shown.status_code == 200
    assert [r["source"] for r in shown.json()["refunds"]] == ["automatic"]


@pytest.mark.parametrize("news", ["processing", "requires_action"])
def test_a_second_payment_of_a_paid_order_is_refunded_only_once_it_succeeds(news):
    """Until Stripe says the money moved there is nothing to give back: news that the
    second payment is under way refunds nothing; its success is refunded, once."""
    order = OrderFactory()
    _paid_elsewhere(order)
    second = payment_intent(
        id=new_id("pi"), amount=order.amount, status=news, metadata=order.metadata
    )
    stored = deliver(event(f"payment_intent.{news}", second))
    assert stored.status == StripeEvent.Status.PROCESSED
    assert not Refund.objects.exists()
    assert Order.objects.get(pk=order.pk).status == Order.Status.PAID

    succeeded = payment_intent(id=second["id"], amount=order.amount, metadata=order.metadata)
    deliver(event("payment_intent.succeeded", succeeded))
    [refund] = Refund.objects.all()
    assert refund.payment.stripe_payment_intent_id == second["id"]
    assert (refund.source, refund.amount, refund.reverses_order) == ("automatic", 1000, False)


def _refunded_at_stripe(payment: dict, amount: int, **metadata: str) -> dict:
    """Stripe's report of a succeeded refund of a PaymentIntent (an event's object)."""
    refund = fixture("refund")
    refund.update(
        id=new_id("re"),
        amount=amount,
        currency="usd",
        status="succeeded",
        payment_intent=payment["id"],
        charge=payment["latest_charge"],
        metadata=metadata,
    )
    return refund


def _second_payment_given_back(order: Order) -> tuple[Refund, dict]:
    """The order paid by its own payment, then by a second one, which is refunded
    automatically and whose refund Stripe reports succeeded."""
    _paid_elsewhere(order)
    second = first_seen_success(order)["data"]["object"]
    deliver(event("payment_intent.succeeded", second))
    [refund] = Refund.objects.all()
    at_stripe = _refunded_at_stripe(second, 1000, **order.metadata, refund_id=str(refund.pk))
    assert deliver(event("refund.updated", at_stripe)).status == StripeEvent.Status.PROCESSED
    refund.refresh_from_db()
    return refund, at_stripe


def test_a_second_payment_refunded_at_stripe_gives_back_that_payment_and_the_order_keeps_its_own():
    order = OrderFactory()
    refund, at_stripe = _second_payment_given_back(order)
    assert (refund.status, refund.stripe_refund_id) == (Refund.Status.SUCCEEDED, at_stripe["id"])
    assert refund.applied_at is not None
    assert refund.result == {"payment_only": True}
    order.refresh_from_db()
    assert order.status == Order.Status.PAID  # the credits it bought stay delivered
    assert credits_balance_get(user_id=order.user_id) == 100
    assert CreditTransaction.objects.count() == 1
    payment, refundable = card_refundable(order)
    assert (payment.stripe_payment_intent_id, refundable) == (
        order.payments.order_by("id").first().stripe_payment_intent_id,
        1000,
    )


@pytest.mark.parametrize("state", ["canceled", "paid"])
def test_a_payment_no_order_took_refunded_in_stripes_dashboard_gives_back_only_that_payment(
    state,
):
    """Staff give back a payment the order did not take (a second one, or one after the
    order was canceled) in Stripe's dashboard before its automatic refund is sent: the
    money goes back, and what the order delivered stays delivered."""
    order = OrderFactory()
    if state == "canceled":
        Order.objects.filter(pk=order.pk).update(status=Order.Status.CANCELED)
    else:
        _paid_elsewhere(order)
    unwanted = first_seen_success(order)["data"]["object"]
    deliver(event("payment_intent.succeeded", unwanted))
    in_dashboard = deliver(event("refund.updated", _refunded_at_stripe(unwanted, 1000)))
    assert in_dashboard.status == StripeEvent.Status.PROCESSED, in_dashboard.last_error
    refund = Refund.objects.get(source=Refund.Source.STRIPE)
    assert (refund.applied_at is not None, refund.result) == (True, {"payment_only": True})
    assert Order.objects.get(pk=order.pk).status == state
    assert credits_balance_get(user_id=order.user_id) == (0 if state == "canceled" else 100)


def test_a_partial_refund_after_a_second_payment_was_given_back_refunds_only_that_part():
    """The second payment's refund gave back money the order never needed: it is no
    part of the order's price refunded."""
    order = OrderFactory()
    _second_payment_given_back(order)
    first = order.payments.order_by("id").first()
    own = {"id": first.stripe_payment_intent_id, "latest_charge": first.stripe_charge_id}
    assert deliver(event("refund.updated", _refunded_at_stripe(own, 400))).status == "processed"
    order.refresh_from_db()
    assert order.status == Order.Status.PARTIALLY_REFUNDED
    assert credits_balance_get(user_id=order.user_id) == 60
    assert card_refundable(order) == (first, 600)

    deliver(event("refund.updated", _refunded_at_stripe(own, 600)))
    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
    assert credits_balance_get(user_id=order.user_id) == 0


@pytest.mark.parametrize("state", ["canceled", "paid"])
def test_a_checkout_payment_that_no_order_can_take_is_refunded_once(state):
    order = OrderFactory(
        payment_type=Order.PaymentType.CHECKOUT, stripe_checkout_session_id=new_id("cs_test")
    )
    if state == "canceled":
        Order.objects.filter(pk=order.pk).update(status=Order.Status.CANCELED)
    else:
        _paid_elsewhere(order)
    order.refresh_from_db()
    completed = session_event(order, "checkout.session.completed", "paid")
    stored = deliver(completed)
    assert stored.status == StripeEvent.Status.PROCESSED, stored.last_error
    [refund] = Refund.objects.all()
    intent_id = completed["data"]["object"]["payment_intent"]
    assert refund.payment.stripe_payment_intent_id == intent_id
    assert (refund.source, refund.amount, refund.reverses_order) == ("automatic", 1000, False)
    deliver(session_event(order, "checkout.session.completed", "paid", payment_intent=intent_id))
    assert Refund.objects.count() == 1
    assert CreditTransaction.objects.count() == (0 if state == "canceled" else 1)


def test_the_admin_order_page_shows_the_automatic_refund():
    from django.test import Client

    order = OrderFactory(status=Order.Status.CANCELED)
    deliver(first_seen_success(order))
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    page = client.get(reverse("admin:billing_order_change", args=[order.pk])).content.decode()
    assert "Automatic" in page
    assert "after the order was canceled" in page
