"""Only a succeeded SetupIntent saves its card: one that still waits for the customer
(3-D Secure), is processing, or was canceled may carry a payment method of our
customer's, but nothing is saved from it. And a card set up after another is set
up through a SetupIntent of its own; setups nobody will finish are given up."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from billing import gateway
from billing.models import CardSetup, SavedPaymentMethod, StripeCustomer
from billing.services.cards import (
    SETUPS_READ_PER_LIST,
    _setups_abandon,
    card_setup_complete,
    stripe_customer_get_or_create,
)
from billing.stripe_objects import SetupIntentData
from tests.billing.test_cards import add_card_via_setup_intent, new_card, stripe_client


def setup_intent(
    setup_id: str, *, customer_id: str, payment_method_id: str, status: str = "succeeded"
) -> SetupIntentData:
    """A SetupIntent as Stripe reports it, for the user's customer and a card."""
    return SetupIntentData(
        id=setup_id,
        status=status,
        client_secret=f"{setup_id}_secret",
        customer_id=customer_id,
        payment_method_id=payment_method_id,
        metadata={},
    )


def recorded(monkeypatch, name: str, argument: str) -> list:
    """`argument` of every call made to `gateway.<name>` from now on (each call still
    goes to Stripe)."""
    calls = []
    real = getattr(gateway, name)

    def recording(**kwargs):
        calls.append(kwargs[argument])
        return real(**kwargs)

    monkeypatch.setattr(gateway, name, recording)
    return calls


@pytest.mark.parametrize("status", ["requires_action", "processing", "canceled"])
def test_a_setup_that_has_not_succeeded_saves_no_card(status, user, stripe_server):
    customer_id = stripe_customer_get_or_create(user_id=user.pk)
    pm_id = new_card()
    CardSetup.objects.create(user=user, stripe_setup_intent_id="seti_states", status="processing")
    setup = setup_intent(
        "seti_states", customer_id=customer_id, payment_method_id=pm_id, status=status
    )
    assert card_setup_complete(setup=setup) is None
    assert not SavedPaymentMethod.objects.exists()
    # A canceled one is settled: nothing more will happen to it, so it is read no more.
    settled = CardSetup.objects.get()
    assert (settled.completed_at is not None) is (status == "canceled")


def test_a_succeeded_setup_attaches_its_card_to_the_users_customer_wherever_stripe_had_it(
    user, stripe_server
):
    """The card is saved only once Stripe has it on the user's own customer, whichever
    customer Stripe reported it on before (ids sorting before or after the user's)."""
    client = stripe_client()
    made = [client.v1.customers.create(params={"email": f"{n}@example.com"}).id for n in "ab"]
    ours, theirs = sorted(made)
    StripeCustomer.objects.create(user=user, stripe_customer_id=ours)
    pm_id = new_card()
    client.v1.payment_methods.attach(pm_id, params={"customer": theirs})
    setup = setup_intent("seti_elsewhere", customer_id=ours, payment_method_id=pm_id)
    card = card_setup_complete(setup=setup)
    assert card is not None and card.user_id == user.pk
    assert client.v1.payment_methods.retrieve(pm_id).customer == ours


def test_a_succeeded_setup_whose_card_stripe_attached_to_the_users_customer_is_not_attached_again(
    user, stripe_server, monkeypatch
):
    """Stripe attaches a SetupIntent's card to the SetupIntent's customer: the card is
    saved without asking Stripe to attach it once more."""
    customer_id = stripe_customer_get_or_create(user_id=user.pk)
    pm_id = new_card()
    stripe_client().v1.payment_methods.attach(pm_id, params={"customer": customer_id})
    attached = recorded(monkeypatch, "payment_method_attach", "payment_method_id")
    setup = setup_intent("seti_attached", customer_id=customer_id, payment_method_id=pm_id)
    card = card_setup_complete(setup=setup)
    assert card is not None and (card.user_id, card.stripe_payment_method_id) == (user.pk, pm_id)
    assert attached == []


def test_each_new_card_setup_is_a_new_setup_intent_under_a_key_of_its_own(
    api, stripe_server, monkeypatch
):
    """Stripe answers a repeated idempotency key with the first object: a second card's
    setup under the first one's key would get the first SetupIntent back. (The
    development Stripe ignores the keys, so the keys sent are what is checked.)"""
    keys = recorded(monkeypatch, "setup_intent_create", "idempotency_key")
    first = add_card_via_setup_intent(api)
    second = add_card_via_setup_intent(api, "5555555555554444")
    again = api.post("/payments/methods/setup/")
    assert again.status_code == 201, again.content
    assert (len(first["payment_methods"]), len(second["payment_methods"])) == (1, 2)
    made = set(CardSetup.objects.values_list("stripe_setup_intent_id", flat=True))
    assert len(made) == 3 and again.json()["setup_intent_id"] in made
    assert len(keys) == 3 and len(set(keys)) == 3, keys


def test_a_setup_cancelled_at_stripe_is_not_handed_out_again(api, stripe_server):
    """The browser cannot add a card through a cancelled SetupIntent: asking again makes a
    new one, and the cancelled one is settled."""
    first = api.post("/payments/methods/setup/").json()
    stripe_client().v1.setup_intents.cancel(first["setup_intent_id"])
    again = api.post("/payments/methods/setup/")
    assert again.status_code == 201, again.content
    assert again.json()["setup_intent_id"] != first["setup_intent_id"]
    cancelled = CardSetup.objects.get(stripe_setup_intent_id=first["setup_intent_id"])
    assert (cancelled.status, cancelled.completed_at is not None) == ("canceled", True)


def test_every_open_setup_left_for_a_day_is_abandoned_however_many_there_are(user):
    """Old setups are given up, and so is any beyond the newest few: a setup that is
    both is given up too."""
    for i in range(SETUPS_READ_PER_LIST + 2):
        CardSetup.objects.create(
            user=user, stripe_setup_intent_id=f"seti_old_{i}", status="requires_payment_method"
        )
    CardSetup.objects.update(created_at=timezone.now() - timedelta(days=2))
    _setups_abandon(user.pk)
    assert not CardSetup.objects.filter(completed_at__isnull=True).exists()
    assert set(CardSetup.objects.values_list("status", flat=True)) == {"abandoned"}


def test_a_card_list_keeps_the_three_newest_open_setups_and_abandons_the_rest(user):
    for i in range(5):
        CardSetup.objects.create(
            user=user, stripe_setup_intent_id=f"seti_{i}", status="requires_payment_method"
        )
    _setups_abandon(user.pk)
    still_open = CardSetup.objects.filter(completed_at__isnull=True)
    assert sorted(still_open.values_list("stripe_setup_intent_id", flat=True)) == [
        "seti_2",
        "seti_3",
        "seti_4",
    ]
    assert CardSetup.objects.filter(status="abandoned").count() == 2


@pytest.mark.parametrize(
    ("age", "abandoned"), [(timedelta(hours=23), False), (timedelta(hours=25), True)]
)
def test_an_open_setup_is_abandoned_once_it_is_a_day_old(user, age, abandoned):
    CardSetup.objects.create(
        user=user, stripe_setup_intent_id="seti_left", status="requires_payment_method"
    )
    CardSetup.objects.update(created_at=timezone.now() - age)
    _setups_abandon(user.pk)
    assert CardSetup.objects.get().status == (
        "abandoned" if abandoned else "requires_payment_method"
    )


@pytest.mark.parametrize(
    ("age", "reused"),
    [(timedelta(hours=11, minutes=30), True), (timedelta(hours=12, minutes=30), False)],
)
def test_an_open_setup_is_handed_out_again_for_twelve_hours_then_a_new_one_is_made(
    api, stripe_server, age, reused
):
    first = api.post("/payments/methods/setup/").json()
    CardSetup.objects.update(created_at=timezone.now() - age)
    again = api.post("/payments/methods/setup/")
    assert again.status_code == 201, again.content
    assert (again.json()["setup_intent_id"] == first["setup_intent_id"]) is reused
    assert CardSetup.objects.count() == (1 if reused else 2)
