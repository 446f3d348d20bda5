"""Adding cards is bounded: a per-user rate on setups, and a card list whose Stripe reads
do not grow with the setups a user started.

Stripe's requests are counted where they arrive: a real HTTP proxy between
Tollgate and localstripe (tests/billing/test_stripe_faults.py) records each
one, so what is counted is what would spend the account's Stripe rate limit.
"""

from __future__ import annotations

import time

import pytest

from billing.models import CardSetup, SavedPaymentMethod
from billing.services.cards import SETUPS_READ_PER_LIST, stripe_customer_get_or_create
from tests.billing.test_cards import new_card, stripe_client
from tests.billing.test_stripe_faults import FaultyProxy, proxy  # noqa: F401  (a fixture)

pytestmark = pytest.mark.django_db

SETUP_CREATE = ("POST", "/v1/setup_intents")


@pytest.fixture
def limits(settings):
    def set_limits(**rates: str) -> None:
        settings.TOLLGATE = {
            **settings.TOLLGATE,
            "RATE_LIMITS": {**settings.TOLLGATE["RATE_LIMITS"], **rates},
        }

    return set_limits


def requests_to_stripe(recorder: FaultyProxy) -> int:
    return sum(recorder.seen.values())


def test_card_setups_past_the_rate_are_429_and_reach_no_stripe(api, proxy, limits):  # noqa: F811
    limits(card_setup="3/hour")
    if 3600 - time.time() % 3600 < 5:  # keep the requests inside one window
        time.sleep(6)
    for _ in range(3):
        assert api.post("/payments/methods/setup/").status_code == 201
    before = requests_to_stripe(proxy)

    refused = api.post("/payments/methods/setup/")

    assert refused.status_code == 429, refused.content
    body = refused.json()
    assert set(body) == {"code", "message", "extra"}
    assert body["code"] == "rate_limited"
    assert 1 <= int(refused["Retry-After"]) <= 3600
    assert requests_to_stripe(proxy) == before


def test_setups_started_again_and_again_reuse_one_open_setup_intent(api, proxy, limits):  # noqa: F811
    limits(card_setup="off")
    answers = [api.post("/payments/methods/setup/") for _ in range(20)]

    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["setup_intent_id"] for a in answers}) == 1
    assert proxy.seen[SETUP_CREATE] == 1
    assert CardSetup.objects.count() == 1


def test_a_setup_is_new_once_the_last_one_has_its_card(api, user, proxy, limits):  # noqa: F811
    limits(card_setup="off")
    first = api.post("/payments/methods/setup/").json()
    stripe_client().v1.setup_intents.confirm(
        first["setup_intent_id"], params={"payment_method": new_card()}
    )

    second = api.post("/payments/methods/setup/").json()

    assert second["setup_intent_id"] != first["setup_intent_id"]
    # The confirmed one was settled on the way: its card is saved, it is read no more.
    assert SavedPaymentMethod.objects.filter(user=user).count() == 1
    assert CardSetup.objects.get(stripe_setup_intent_id=first["setup_intent_id"]).completed_at


def test_a_list_after_many_open_setups_reads_a_bounded_number_from_stripe(
    api,
    user,
    proxy,  # noqa: F811
):
    """60 SetupIntents left open (another tab each, or made before setups were reused):
    the list reads only the newest few of them, once, and stops asking about the rest."""
    customer_id = stripe_customer_get_or_create(user_id=user.pk)
    client = stripe_client()
    for _ in range(60):
        intent = client.v1.setup_intents.create(params={"customer": customer_id})
        CardSetup.objects.create(user=user, stripe_setup_intent_id=intent.id, status=intent.status)
    newest = CardSetup.objects.order_by("-id").first()
    client.v1.setup_intents.confirm(
        newest.stripe_setup_intent_id, params={"payment_method": new_card()}
    )
    proxy.seen.clear()

    listing = api.get("/payments/methods/")

    assert listing.status_code == 200, listing.content
    assert [c["last4"] for c in listing.json()["payment_methods"]] == ["4242"]
    # A setup read, its card read and attached; the customer's cards and default.
    assert requests_to_stripe(proxy) <= SETUPS_READ_PER_LIST + 4, proxy.seen
    proxy.seen.clear()

    again = api.get("/payments/methods/")

    assert again.status_code == 200
    assert requests_to_stripe(proxy) <= SETUPS_READ_PER_LIST + 2, proxy.seen
    assert CardSetup.objects.filter(completed_at__isnull=True).count() <= SETUPS_READ_PER_LIST
