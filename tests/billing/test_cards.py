"""Saved cards against localstripe: one customer per user, add through a SetupIntent,
list, default, pay with, delete; another user's card is 404; events keep them in step."""

from __future__ import annotations

import threading

import pytest
from django.db import IntegrityError, connection

from billing.models import CardSetup, Order, SavedPaymentMethod, StripeCustomer, StripeEvent
from billing.services.cards import stripe_customer_get_or_create
from billing.services.events import events_drain
from tests.billing.conftest import post_webhook
from tests.conftest import client_for
from tests.factories import UserFactory
from tests.stripe_events import event, fixture, stripe_client

pytestmark = pytest.mark.django_db


def new_card(number: str = "4242424242424242") -> str:
    method = stripe_client().v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": number, "exp_month": 11, "exp_year": 2033, "cvc": "123"},
        }
    )
    return method.id


def add_card_via_setup_intent(api, number: str = "4242424242424242") -> dict:
    """What the browser does: ask for a SetupIntent, confirm it with Stripe.js, list cards."""
    setup = api.post("/payments/methods/setup/")
    assert setup.status_code == 201, setup.content
    body = setup.json()
    assert body["client_secret"].startswith(body["setup_intent_id"])
    stripe_client().v1.setup_intents.confirm(
        body["setup_intent_id"], params={"payment_method": new_card(number)}
    )
    listing = api.get("/payments/methods/")
    assert listing.status_code == 200, listing.content
    return listing.json()


def test_a_card_added_through_a_setup_intent_is_listed_and_default(api, user, stripe_server):
    cards = add_card_via_setup_intent(api)["payment_methods"]
    assert len(cards) == 1
    [card] = cards
    assert set(card) == {
        "id",
        "stripe_payment_method_id",
        "card_brand",
        "last4",
        "exp_month",
        "exp_year",
        "is_default",
    }
    assert (card["card_brand"], card["last4"], card["exp_month"], card["exp_year"]) == (
        "visa",
        "4242",
        11,
        2033,
    )
    assert card["is_default"] is True
    assert CardSetup.objects.get().completed_at is not None
    # Stripe has it attached to the user's one customer.
    customer = StripeCustomer.objects.get(user=user)
    method = stripe_client().v1.payment_methods.retrieve(card["stripe_payment_method_id"])
    assert method.customer == customer.stripe_customer_id


def test_default_can_be_changed_and_reaches_stripe(api, user, stripe_server):
    add_card_via_setup_intent(api)
    second = add_card_via_setup_intent(api, "5555555555554444")["payment_methods"][1]
    assert second["is_default"] is False
    resp = api.post("/payments/methods/default/", {"payment_method_id": second["id"]})
    assert resp.status_code == 200, resp.content
    assert resp.json()["is_default"] is True
    listing = api.get("/payments/methods/").json()["payment_methods"]
    assert [c["is_default"] for c in listing] == [False, True]
    customer = stripe_client().v1.customers.retrieve(
        StripeCustomer.objects.get().stripe_customer_id
    )
    assert customer.invoice_settings.default_payment_method == second["stripe_payment_method_id"]
    # By its pm_ id too.
    first = listing[0]["stripe_payment_method_id"]
    assert api.post("/payments/methods/default/", {"payment_method_id": first}).status_code == 200


def test_a_default_card_chosen_at_stripe_is_the_default_the_card_list_shows(
    api, user, stripe_server
):
    """The customer chose another of their cards as default at Stripe (the portal, say):
    the card list follows Stripe."""
    add_card_via_setup_intent(api)
    second = add_card_via_setup_intent(api, "5555555555554444")["payment_methods"][1]
    assert second["is_default"] is False
    customer_id = StripeCustomer.objects.get(user=user).stripe_customer_id
    stripe_client().v1.customers.update(
        customer_id,
        params={"invoice_settings": {"default_payment_method": second["stripe_payment_method_id"]}},
    )
    listing = api.get("/payments/methods/").json()["payment_methods"]
    assert [(c["last4"], c["is_default"]) for c in listing] == [("4242", False), ("4444", True)]


def test_a_stripe_default_that_is_none_of_the_users_cards_leaves_their_default_card(
    api, user, stripe_server
):
    """The customer's default at Stripe is a payment method the card list does not hold
    (a bank debit set in the portal, say; here a card the development Stripe lets us
    name without attaching it): the user's default card stays their default."""
    add_card_via_setup_intent(api)
    customer_id = StripeCustomer.objects.get(user=user).stripe_customer_id
    stripe_client().v1.customers.update(
        customer_id, params={"invoice_settings": {"default_payment_method": new_card()}}
    )
    listing = api.get("/payments/methods/").json()["payment_methods"]
    assert [(c["last4"], c["is_default"]) for c in listing] == [("4242", True)]


def test_the_database_allows_one_default_card_per_user(user):
    SavedPaymentMethod.objects.create(user=user, stripe_payment_method_id="pm_a", is_default=True)
    with pytest.raises(IntegrityError):
        SavedPaymentMethod.objects.create(
            user=user, stripe_payment_method_id="pm_b", is_default=True
        )


def _pay_with_a_new_saved_card(api, user) -> dict:
    """Save a card, pay a credit purchase with it and check the charge is the user's
    own customer's; answers the card."""
    card = add_card_via_setup_intent(api)["payment_methods"][0]
    resp = api.post(
        "/payments/create/",
        {
            "is_credit_purchase": True,
            "credit_amount": 50,
            "payment_method_id": card["stripe_payment_method_id"],
        },
    )
    assert resp.status_code == 201, resp.content
    assert resp.json()["status"] == "paid"
    intent = stripe_client().v1.payment_intents.retrieve(resp.json()["payment_intent_id"])
    assert intent.customer == StripeCustomer.objects.get(user=user).stripe_customer_id
    return card


def test_pay_with_a_saved_card_then_delete_it(api, user, stripe_server):
    card = _pay_with_a_new_saved_card(api, user)

    assert api.delete(f"/payments/methods/{card['id']}/").status_code == 204
    assert api.get("/payments/methods/").json()["payment_methods"] == []
    method = stripe_client().v1.payment_methods.retrieve(card["stripe_payment_method_id"])
    assert method.customer is None  # detached at Stripe


def test_a_user_far_down_the_user_table_pays_with_their_own_saved_card(stripe_server):
    """Ids past the first few hundred users are compared as numbers, not as objects."""
    user = UserFactory(id=1_000_003)
    api = client_for(user)
    _pay_with_a_new_saved_card(api, user)


def test_save_payment_method_attaches_the_card_while_paying(api, user, stripe_server):
    resp = api.post(
        "/payments/create/",
        {
            "is_credit_purchase": True,
            "credit_amount": 50,
            "payment_method_id": new_card(),
            "save_payment_method": True,
        },
    )
    assert resp.status_code == 201, resp.content
    [saved] = SavedPaymentMethod.objects.filter(user=user)
    assert saved.is_default
    assert saved.last4 == "4242"


def test_a_new_card_paid_with_is_not_saved_unless_asked(api, user, stripe_server):
    card = new_card()
    resp = api.post(
        "/payments/create/",
        {"is_credit_purchase": True, "credit_amount": 50, "payment_method_id": card},
    )
    assert resp.status_code == 201, resp.content
    assert not SavedPaymentMethod.objects.exists()
    assert stripe_client().v1.payment_methods.retrieve(card).customer is None


def test_a_card_attached_at_stripe_outside_tollgate_is_listed(api, user, stripe_server):
    customer_id = stripe_customer_get_or_create(user_id=user.pk)
    card = new_card("5555555555554444")
    stripe_client().v1.payment_methods.attach(card, params={"customer": customer_id})
    listing = api.get("/payments/methods/")
    assert listing.status_code == 200, listing.content
    assert [c["stripe_payment_method_id"] for c in listing.json()["payment_methods"]] == [card]


def test_save_payment_method_without_a_card_is_422(api, stripe_server):
    resp = api.post(
        "/payments/create/",
        {"is_credit_purchase": True, "credit_amount": 50, "save_payment_method": True},
    )
    assert resp.status_code == 422
    assert resp.json()["extra"]["field"] == "save_payment_method"
    assert not Order.objects.exists()


def test_another_users_saved_card_is_404_everywhere_and_nothing_reaches_stripe(
    api, other_api, stripe_server
):
    card = add_card_via_setup_intent(api)["payment_methods"][0]
    intents_before = len(stripe_client().v1.payment_intents.list(params={"limit": 100}).data)
    pay = other_api.post(
        "/payments/create/",
        {
            "is_credit_purchase": True,
            "credit_amount": 50,
            "payment_method_id": card["stripe_payment_method_id"],
        },
    )
    assert pay.status_code == 404
    assert not Order.objects.exists()
    assert (
        len(stripe_client().v1.payment_intents.list(params={"limit": 100}).data) == intents_before
    )
    assert other_api.delete(f"/payments/methods/{card['id']}/").status_code == 404
    default = other_api.post("/payments/methods/default/", {"payment_method_id": card["id"]})
    assert default.status_code == 404
    assert other_api.get("/payments/methods/").json() == {"payment_methods": []}
    assert SavedPaymentMethod.objects.count() == 1


def test_a_saved_card_of_a_user_who_signed_up_later_is_404_too(api, user, other_user):
    """Whoever signed up first: another user's card is never charged."""
    assert other_user.pk > user.pk
    SavedPaymentMethod.objects.create(user=other_user, stripe_payment_method_id="pm_theirs")
    pay = api.post(
        "/payments/create/",
        {"is_credit_purchase": True, "credit_amount": 50, "payment_method_id": "pm_theirs"},
    )
    assert pay.status_code == 404, pay.content
    assert not Order.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_purchases_make_one_stripe_customer(user, stripe_server):
    barrier = threading.Barrier(6)
    results: list = []

    def first_need() -> None:
        try:
            barrier.wait()
            results.append(stripe_customer_get_or_create(user_id=user.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=first_need) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    assert StripeCustomer.objects.count() == 1
    customers = stripe_client().v1.customers.list(params={"limit": 100}).data
    assert [c.id for c in customers] == results[:1]


# --- events ------------------------------------------------------------------------


def test_card_events_keep_saved_cards_in_step(user):
    StripeCustomer.objects.create(user=user, stripe_customer_id="cus_events")
    method = fixture("payment_method")
    method.update(id="pm_from_dashboard", customer="cus_events")
    method["card"].update(brand="mastercard", last4="4444", exp_month=1, exp_year=2031)
    post_webhook(event("payment_method.attached", method))
    events_drain()
    saved = SavedPaymentMethod.objects.get(stripe_payment_method_id="pm_from_dashboard")
    assert (saved.user_id, saved.last4) == (user.pk, "4444")

    method["card"]["exp_year"] = 2035
    post_webhook(event("payment_method.updated", method))
    customer = fixture("customer")
    customer.update(
        id="cus_events", invoice_settings={"default_payment_method": "pm_from_dashboard"}
    )
    post_webhook(event("customer.updated", customer))
    events_drain()
    saved.refresh_from_db()
    assert saved.exp_year == 2035
    assert saved.is_default

    post_webhook(event("payment_method.detached", {**method, "customer": None}))
    events_drain()
    assert not SavedPaymentMethod.objects.exists()
    detached = StripeEvent.objects.get(type="payment_method.detached")
    assert detached.last_error == "forgot 1 card(s)"


def test_a_card_event_for_a_stranger_saves_nothing(db):
    method = fixture("payment_method")
    method.update(id="pm_stranger", customer="cus_not_ours")
    post_webhook(event("payment_method.attached", method))
    customer = fixture("customer")
    customer.update(id="cus_not_ours", invoice_settings={"default_payment_method": "pm_stranger"})
    post_webhook(event("customer.updated", customer))
    events_drain()
    assert not SavedPaymentMethod.objects.exists()
    assert set(StripeEvent.objects.values_list("status", flat=True)) == {"processed"}


def test_the_journal_says_whether_a_card_event_saved_a_card(user):
    StripeCustomer.objects.create(user=user, stripe_customer_id="cus_known")
    for pm_id, customer in (("pm_known", "cus_known"), ("pm_stranger", "cus_not_ours")):
        method = fixture("payment_method")
        method.update(id=pm_id, customer=customer)
        post_webhook(event("payment_method.attached", method))
        events_drain()
    notes = [e.last_error for e in StripeEvent.objects.order_by("id")]
    assert notes == ["card saved", "not a customer of ours"]
    assert [c.stripe_payment_method_id for c in SavedPaymentMethod.objects.all()] == ["pm_known"]


def test_setup_intent_succeeded_saves_the_card_without_a_listing(api, user, stripe_server):
    setup = api.post("/payments/methods/setup/").json()
    pm_id = new_card("5555555555554444")
    stripe_client().v1.setup_intents.confirm(
        setup["setup_intent_id"], params={"payment_method": pm_id}
    )
    intent = fixture("setup_intent")
    intent.update(
        id=setup["setup_intent_id"],
        status="succeeded",
        customer=StripeCustomer.objects.get(user=user).stripe_customer_id,
        payment_method=pm_id,
    )
    post_webhook(event("setup_intent.succeeded", intent))
    stranger = {**intent, "id": "seti_stranger", "customer": "cus_not_ours"}
    post_webhook(event("setup_intent.succeeded", stranger))
    events_drain()
    saved = SavedPaymentMethod.objects.get(user=user)
    assert (saved.stripe_payment_method_id, saved.last4, saved.is_default) == (pm_id, "4444", True)
    assert CardSetup.objects.get().completed_at is not None
    # The journal says which one saved a card.
    notes = StripeEvent.objects.filter(type="setup_intent.succeeded").order_by("id")
    assert [e.last_error for e in notes] == ["card saved", "nothing to save"]
