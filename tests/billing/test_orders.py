"""The order API: pricing on the server, bad input, idempotency, ownership, cancel."""

from __future__ import annotations

import json
import threading

import pytest
import stripe
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.models import Order, Payment, SavedPaymentMethod
from billing.services.orders import order_create
from credits.models import CreditPack, CreditTransaction
from credits.selectors import credits_balance_get
from credits.services import credits_grant
from kernel.money import MAX_MINOR
from platform_core.auth import api_token_create
from purchasables import hookimpl
from purchasables.registry import registry
from purchasables.types import PurchaseRequest, PurchaseType, Quote
from tests.conftest import PASSWORD, ApiClient

pytestmark = pytest.mark.django_db

BUY_100 = {"is_credit_purchase": True, "credit_amount": 100, "amount": "10.00"}


def stripe_intents() -> list:
    client = stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
    )
    return list(client.v1.payment_intents.list(params={"limit": 100}).data)


def test_create_answers_the_order_and_its_client_secret(api, user, stripe_server):
    resp = api.post("/payments/create/", BUY_100)
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["status"] == "pending"
    assert body["amount"] == 1000
    assert body["amount_display"] == "10.00 USD"
    assert body["currency"] == "usd"
    assert body["client_secret"].startswith(body["payment_intent_id"] + "_secret_")
    assert body["publishable_key"] == "pk_test_localstripe"
    order = Order.objects.get(pk=body["order_id"])
    assert order.user == user
    assert order.order_type == "credit"
    [intent] = stripe_intents()
    assert intent.id == body["payment_intent_id"]
    assert intent.amount == 1000
    assert intent.metadata.to_dict() == order.metadata


def test_a_credit_pack_is_priced_from_the_pack(api, stripe_server):
    pack = CreditPack.objects.create(name="Starter", credits=100, price=900, currency="usd")
    resp = api.post(
        "/payments/create/", {"is_credit_purchase": True, "pack_id": pack.pk, "amount": 9}
    )
    assert resp.status_code == 201, resp.content
    assert resp.json()["amount"] == 900
    assert Order.objects.get().data == {"credits": 100, "pack_id": pack.pk}


def test_the_amount_may_be_omitted_and_the_server_prices(api, stripe_server):
    resp = api.post("/payments/create/", {"is_credit_purchase": True, "credit_amount": 250})
    assert resp.status_code == 201
    assert resp.json()["amount"] == 2500


@pytest.mark.parametrize("amount", ["9.99", "10.01", 11, "100"])
def test_an_amount_that_differs_from_the_quote_is_409_and_nothing_is_created(
    api, stripe_server, amount
):
    resp = api.post("/payments/create/", {**BUY_100, "amount": amount})
    assert resp.status_code == 409
    body = resp.json()
    assert body["code"] == "quote_mismatch"
    assert body["extra"] == {"quoted_amount": 1000, "currency": "usd"}
    assert not Order.objects.exists()
    assert stripe_intents() == []


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"is_credit_purchase": true, "credit_amount": 100, "amount": "10.001"}', "amount"),
        ('{"is_credit_purchase": true, "credit_amount": 100, "amount": 10.001}', "amount"),
        ('{"is_credit_purchase": true, "credit_amount": 100, "amount": "0"}', "amount"),
        ('{"is_credit_purchase": true, "credit_amount": 100, "amount": -10}', "amount"),
        ('{"is_credit_purchase": true, "credit_amount": 100, "amount": "NaN"}', "amount"),
        ('{"is_credit_purchase": true, "credit_amount": 100, "amount": "Infinity"}', "amount"),
        ('{"is_credit_purchase": true, "credit_amount": 100, "amount": "1e9"}', "amount"),
        ('{"is_credit_purchase": true, "credit_amount": 100, "amount": 1e9}', "amount"),
        ('{"is_credit_purchase": true, "credit_amount": 100, "amount": "ten"}', "amount"),
        ('{"is_credit_purchase": true, "credit_amount": 100, "amount": true}', "amount"),
        ('{"is_credit_purchase": true, "credit_amount": 0}', "credit_amount"),
        ('{"is_credit_purchase": true, "credit_amount": "100"}', "credit_amount"),
        ('{"is_credit_purchase": true, "credit_amount": 1.5}', "credit_amount"),
        ('{"is_credit_purchase": true, "credit_amount": 5}', "credit_amount"),
        ('{"is_credit_purchase": true, "credit_amount": 100000000}', "credit_amount"),
        ('{"is_credit_purchase": true}', "credit_amount"),
        ('{"is_credit_purchase": true, "credit_amount": 100, "surprise": 1}', "surprise"),
        ('{"is_credit_purchase": "yes", "credit_amount": 100}', "is_credit_purchase"),
        (
            '{"is_credit_purchase": true, "credit_amount": 100, "payment_type": "cash"}',
            "payment_type",
        ),
        ('{"credit_amount": 100}', "purchase_type"),
        ('{"purchase_type": "unicorns", "credit_amount": 100}', "purchase_type"),
        ('{"is_credit_purchase": true, "pack_id": 999999}', "pack_id"),
        ("{not json", None),
        ("[]", None),
        ('"a string"', None),
    ],
)
def test_bad_input_is_422_with_the_error_shape_and_nothing_is_created(
    api, stripe_server, raw, field
):
    resp = api.post("/payments/create/", raw=raw.encode())
    assert resp.status_code == 422, resp.content
    body = resp.json()
    assert set(body) == {"code", "message", "extra"}
    assert body["code"] in {"invalid_input", "invalid_amount", "unknown_purchase_type"}
    if field:
        assert field in json.dumps(body)
    assert not Order.objects.exists()
    assert stripe_intents() == []


def test_metadata_over_stripes_limits_is_422_before_anything_is_created(api, stripe_server):
    body = {**BUY_100, "scheduling_data": {"notes": "x" * 600}}
    resp = api.post("/payments/create/", body)
    assert resp.status_code == 422
    error = resp.json()
    assert error["code"] == "metadata_too_large"
    assert error["extra"]["key"] == "scheduling_data"
    assert not Order.objects.exists()
    assert stripe_intents() == []


def test_scheduling_data_travels_as_a_json_string_in_the_metadata(api, stripe_server):
    body = {**BUY_100, "scheduling_data": {"start_datetime": "2030-01-01T10:00:00Z"}}
    resp = api.post("/payments/create/", body)
    assert resp.status_code == 201
    metadata = Order.objects.get().metadata
    assert json.loads(metadata["scheduling_data"]) == body["scheduling_data"]


def test_an_unknown_payment_method_is_422_and_the_order_fails(api, stripe_server):
    resp = api.post("/payments/create/", {**BUY_100, "payment_method_id": "pm_does_not_exist"})
    assert resp.status_code == 422
    error = resp.json()
    order = Order.objects.get(pk=error["extra"]["order_id"])
    assert order.status == Order.Status.FAILED
    assert order.failure_code == "invalid_payment_method"


def test_stripe_unreachable_is_502_and_the_order_stays_pending_with_the_error(api, settings, db):
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens on the discard port
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    resp = api.post("/payments/create/", BUY_100)
    assert resp.status_code == 502
    error = resp.json()
    assert error["code"] == "payment_gateway_error"
    order = Order.objects.get(pk=error["extra"]["order_id"])
    assert order.status == Order.Status.PENDING
    assert "failed to create the payment" in order.gateway_error
    assert error["extra"]["retryable"] is True
    assert not Payment.objects.exists()


# --- Idempotency-Key ------------------------------------------------------------------


def test_an_idempotency_key_returns_the_first_order_again(api, stripe_server):
    first = api.post("/payments/create/", BUY_100, headers={"Idempotency-Key": "buy-1"})
    again = api.post("/payments/create/", BUY_100, headers={"Idempotency-Key": "buy-1"})
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["order_id"] == first.json()["order_id"]
    assert again.json()["client_secret"] == first.json()["client_secret"]
    assert Order.objects.count() == 1
    assert len(stripe_intents()) == 1


def test_an_idempotency_key_reused_for_another_body_is_409(api, stripe_server):
    other = {"is_credit_purchase": True, "credit_amount": 200}
    # Each body first under a key of its own, then the other body under it.
    for key, (first, then) in {"buy-2": (BUY_100, other), "buy-3": (other, BUY_100)}.items():
        made = api.post("/payments/create/", first, headers={"Idempotency-Key": key})
        assert made.status_code == 201, made.content
        resp = api.post("/payments/create/", then, headers={"Idempotency-Key": key})
        assert resp.status_code == 409
        assert resp.json()["code"] == "idempotency_conflict"
    assert Order.objects.count() == 2


def test_a_retry_naming_the_same_fields_in_another_order_is_the_same_request(api, user):
    """JSON objects have no order: a client that rebuilds its body for the retry, with the
    plugin's fields listed the other way round, gets the first order back, paid once."""
    credits_grant(user_id=user.pk, amount=2, reference="quoted-fund")
    headers = {"Idempotency-Key": "same-fields"}
    body = {"purchase_type": "quoted", "payment_type": "credits"}
    with registry.plugin_registered(Quoted(500), name="quoted"):
        first = api.post(
            "/payments/create/",
            {**body, "service_data": {"size": "L", "colour": "red"}},
            headers=headers,
        )
        again = api.post(
            "/payments/create/",
            {"service_data": {"colour": "red", "size": "L"}, **body},
            headers=headers,
        )
    assert first.status_code == 201, first.content
    assert again.status_code == 200, again.content
    assert again.json()["order_id"] == first.json()["order_id"]
    assert Order.objects.count() == 1
    assert credits_balance_get(user_id=user.pk) == 1


@pytest.mark.parametrize("apply_credits", [False, True])
def test_a_key_stored_by_the_release_before_a_deploy_still_replays(user, apply_credits):
    """A request's fingerprint is stored with its order: a retry that arrives after a
    deploy must still be the same request, or every retry in flight during a deploy is a
    409. A request that applies no credits is fingerprinted as before credits could be
    applied (no `apply_credits` in it at all); one that applies them, with it true."""
    from billing.services.orders import _fingerprint

    credits_grant(user_id=user.pk, amount=2, reference="quoted-fund")
    purchase = PurchaseRequest(user_id=user.pk, purchase_type="quoted")
    asked = {"amount": None, "payment_method_id": None, "save": False}
    payment_type = Order.PaymentType.INTENT if apply_credits else Order.PaymentType.CREDITS
    stored = _fingerprint(
        purchase,
        **asked,
        payment_type=payment_type,
        **({"apply_credits": True} if apply_credits else {}),
    )
    with registry.plugin_registered(Quoted(500), name="quoted"):
        first = order_create(
            purchase=purchase,
            amount=None,
            idempotency_key="across-a-deploy",
            payment_type=payment_type,
            apply_credits=apply_credits,
        )
        # As the release before the deploy stored it.
        Order.objects.filter(pk=first.order.pk).update(request_fingerprint=stored)
        again = order_create(
            purchase=purchase,
            amount=None,
            idempotency_key="across-a-deploy",
            payment_type=payment_type,
            apply_credits=apply_credits,
        )
    assert again.replayed
    assert again.order.pk == first.order.pk
    assert credits_balance_get(user_id=user.pk) == 1


def test_idempotency_keys_are_per_user(api, other_api, stripe_server):
    a = api.post("/payments/create/", BUY_100, headers={"Idempotency-Key": "same"})
    b = other_api.post("/payments/create/", BUY_100, headers={"Idempotency-Key": "same"})
    assert a.status_code == b.status_code == 201
    assert a.json()["order_id"] != b.json()["order_id"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_idempotency_key_make_one_order(user, stripe_server):
    token, _ = api_token_create(username=user.username, password=PASSWORD)
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def create() -> None:
        try:
            barrier.wait()
            resp = ApiClient(token).post(
                "/payments/create/", BUY_100, headers={"Idempotency-Key": "race"}
            )
            statuses.append(resp.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Order.objects.count() == 1
    assert len(stripe_intents()) == 1
    assert statuses.count(201) == 1
    # The others saw the same order, finished (200) or still in flight (409, retry).
    assert set(statuses) <= {200, 201, 409}


@pytest.mark.django_db(transaction=True)
def test_a_request_overtaken_by_another_with_its_key_answers_the_order_that_one_made(
    user, stripe_server, monkeypatch
):
    """Two requests with one Idempotency-Key: the second commits its order while the
    first is still pricing its own. The first then meets the key as it stores its order,
    and answers the second's order as a replay (one order, one PaymentIntent)."""
    token, _ = api_token_create(username=user.username, password=PASSWORD)
    headers = {"Idempotency-Key": "overtaken"}
    quote, overtaking, overtaken = registry.quote, [], threading.Event()

    def overtake() -> None:
        try:
            overtaking.append(ApiClient(token).post("/payments/create/", BUY_100, headers=headers))
        finally:
            connection.close()

    def quote_while_overtaken(purchase):
        if not overtaken.is_set():  # the first request's pricing; not the second's
            overtaken.set()
            other = threading.Thread(target=overtake)
            other.start()
            other.join()
        return quote(purchase)

    monkeypatch.setattr(registry, "quote", quote_while_overtaken)
    first = ApiClient(token).post("/payments/create/", BUY_100, headers=headers)
    [second] = overtaking
    assert second.status_code == 201, second.content
    assert first.status_code == 200, first.content
    assert first.json()["order_id"] == second.json()["order_id"] == Order.objects.get().pk
    assert first.json()["payment_intent_id"] == second.json()["payment_intent_id"]
    assert len(stripe_intents()) == 1


# --- reading and cancelling -----------------------------------------------------------


def test_orders_are_listed_newest_first_and_paginated(api, stripe_server):
    ids = [api.post("/payments/create/", BUY_100).json()["order_id"] for _ in range(3)]
    page = api.get("/payments/orders/", limit=2, offset=0).json()
    assert page["count"] == 3
    assert [o["id"] for o in page["items"]] == ids[::-1][:2]
    assert page["items"][0]["payments"][0]["status"] == "requires_payment_method"
    assert page["items"][0]["fulfilled"] is False


def test_another_users_order_is_404_to_read_and_to_cancel(api, other_api, stripe_server):
    order_id = api.post("/payments/create/", BUY_100).json()["order_id"]
    assert other_api.get(f"/payments/orders/{order_id}/").status_code == 404
    assert other_api.post(f"/payments/orders/{order_id}/cancel/").status_code == 404
    assert other_api.get("/payments/orders/").json()["count"] == 0
    assert api.get(f"/payments/orders/{order_id}/").status_code == 200
    assert api.get("/payments/orders/424242/").status_code == 404


def test_cancel_an_unpaid_order_cancels_its_payment_intent(api, stripe_server):
    body = api.post("/payments/create/", BUY_100).json()
    resp = api.post(f"/payments/orders/{body['order_id']}/cancel/")
    assert resp.status_code == 200, resp.content
    assert resp.json()["status"] == "canceled"
    [intent] = stripe_intents()
    assert intent.status == "canceled"


def test_cancelling_an_order_whose_payment_was_changed_at_stripe_is_a_conflict(api, stripe_server):
    """Its PaymentIntent now asks for another amount than the order's: the cancel is
    refused as a conflict for a person to look at, and the order is left as it was."""
    body = api.post("/payments/create/", BUY_100).json()
    [intent] = stripe_intents()
    stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
    ).v1.payment_intents.update(intent.id, params={"amount": intent.amount + 100})
    resp = api.post(f"/payments/orders/{body['order_id']}/cancel/")
    assert resp.status_code == 409, resp.content
    assert resp.json()["code"] == "order_state_conflict"
    assert Order.objects.get(pk=body["order_id"]).status == Order.Status.PENDING


def test_a_paid_order_cannot_be_cancelled(api, stripe_server):
    body = api.post("/payments/create/", {**BUY_100, "payment_method_id": "pm_card_visa"}).json()
    assert body["status"] == "paid"
    resp = api.post(f"/payments/orders/{body['order_id']}/cancel/")
    assert resp.status_code == 409
    assert resp.json()["extra"]["status"] == "paid"


@pytest.mark.parametrize("payment_type", [Order.PaymentType.INTENT, Order.PaymentType.CHECKOUT])
def test_an_order_paid_by_card_is_not_cancelled_by_its_buyer_within_a_cut_off(
    api, user, payment_type
):
    """A buyer cancels a paid order only when credits paid it (until its cut-off, for
    them back): one paid by card or on Checkout is refused even before such a cut-off,
    and nothing is given back."""
    from datetime import timedelta

    from django.utils import timezone

    from tests.billing.factories import OrderFactory

    order = OrderFactory(
        user=user,
        payment_type=payment_type,
        status=Order.Status.PAID,
        cancellable_until=timezone.now() + timedelta(days=1),
    )
    resp = api.post(f"/payments/orders/{order.pk}/cancel/")
    assert resp.status_code == 409, resp.content
    assert resp.json()["message"] == "Only an unpaid order can be cancelled; this one is paid."
    assert Order.objects.get(pk=order.pk).status == Order.Status.PAID
    assert credits_balance_get(user_id=user.pk) == 0


def test_anonymous_callers_get_401(anon_api):
    assert anon_api.post("/payments/create/", BUY_100).status_code == 401
    assert anon_api.get("/payments/orders/").status_code == 401


def test_the_catalog_lists_the_credits_type_with_packs_and_rate(anon_api):
    CreditPack.objects.create(name="Starter", credits=100, price=900)
    CreditPack.objects.create(name="Hidden", credits=1, price=100, active=False)
    resp = anon_api.get("/catalog/")
    assert resp.status_code == 200
    [credits] = [t for t in resp.json()["purchase_types"] if t["name"] == "credits"]
    assert credits["order_type"] == "credit"
    assert [p["name"] for p in credits["catalog"]["packs"]] == ["Starter"]
    assert credits["catalog"]["rate"] == {
        "currency": "usd",
        "unit_amount": 10,
        "min_credits": 10,
        "max_credits": 100000,
    }


def test_a_retry_after_a_502_with_the_same_key_finishes_the_first_order(
    api, settings, stripe_server
):
    working_base = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    first = api.post("/payments/create/", BUY_100, headers={"Idempotency-Key": "flaky-net"})
    assert first.status_code == 502
    settings.STRIPE_API_BASE = working_base
    retry = api.post("/payments/create/", BUY_100, headers={"Idempotency-Key": "flaky-net"})
    assert retry.status_code == 200, retry.content
    assert retry.json()["order_id"] == first.json()["extra"]["order_id"]
    assert retry.json()["payment_intent_id"]
    assert Order.objects.count() == 1
    assert len(stripe_intents()) == 1


def test_an_order_still_setting_up_its_payment_cannot_be_cancelled_yet(api, user, stripe_server):
    from datetime import timedelta

    from django.utils import timezone

    from tests.billing.factories import OrderFactory

    order = OrderFactory(user=user)  # committed, its PaymentIntent request in flight
    resp = api.post(f"/payments/orders/{order.pk}/cancel/")
    assert resp.status_code == 409
    assert "still being set up" in resp.json()["message"]
    Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - timedelta(minutes=3))
    assert api.post(f"/payments/orders/{order.pk}/cancel/").status_code == 200


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_idempotency_key_is_no_key(api, stripe_server, blank):
    first = api.post("/payments/create/", BUY_100, headers={"Idempotency-Key": blank})
    second = api.post("/payments/create/", BUY_100, headers={"Idempotency-Key": blank})
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["order_id"] != second.json()["order_id"]
    assert list(Order.objects.values_list("idempotency_key", flat=True)) == [None, None]


def test_the_answer_to_a_create_does_not_read_the_new_order_back(api, stripe_server):
    """A new order's payments are the one just made, it has no refund and no fulfilment:
    the answer says so without asking the database again."""
    with CaptureQueriesContext(connection) as ctx:
        resp = api.post("/payments/create/", BUY_100)

    assert resp.status_code == 201, resp.content
    read_back = [
        q["sql"]
        for q in ctx.captured_queries
        if "billing_refund" in q["sql"] or "billing_fulfilment" in q["sql"]
    ]
    assert read_back == []
    body = resp.json()
    payment = Payment.objects.get(order_id=body["order_id"])
    [shown] = body["order"]["payments"]
    assert shown["stripe_payment_intent_id"] == payment.stripe_payment_intent_id
    assert shown["status"] == payment.status
    assert body["order"]["refunds"] == []
    assert body["order"]["fulfilled"] is False


def test_a_replayed_create_answers_what_the_database_holds(api, stripe_server):
    headers = {"Idempotency-Key": "replay-reads"}
    first = api.post("/payments/create/", BUY_100, headers=headers).json()
    Payment.objects.filter(order_id=first["order_id"]).update(status="processing")

    again = api.post("/payments/create/", BUY_100, headers=headers)

    assert again.status_code == 200, again.content
    assert [p["status"] for p in again.json()["order"]["payments"]] == ["processing"]


def test_an_order_with_no_payment_exactly_two_minutes_old_is_no_longer_in_flight(
    api, user, stripe_server, monkeypatch
):
    """The first request's grace ends at two minutes: one microsecond before, the cancel
    waits; at two minutes, it cancels."""
    from datetime import timedelta

    from django.utils import timezone

    from tests.billing.factories import OrderFactory

    order = OrderFactory(user=user)
    now = order.created_at + timedelta(minutes=2)
    monkeypatch.setattr(timezone, "now", lambda: now - timedelta(microseconds=1))
    assert api.post(f"/payments/orders/{order.pk}/cancel/").status_code == 409
    monkeypatch.setattr(timezone, "now", lambda: now)
    resp = api.post(f"/payments/orders/{order.pk}/cancel/")
    assert resp.status_code == 200, resp.content
    assert Order.objects.get(pk=order.pk).status == Order.Status.CANCELED


@pytest.mark.parametrize(
    "status", [Order.Status.PENDING, Order.Status.REQUIRES_ACTION, Order.Status.FAILED]
)
def test_an_unpaid_order_the_bank_is_not_processing_is_cancelled(api, user, status):
    from datetime import timedelta

    from django.utils import timezone

    from tests.billing.factories import OrderFactory

    order = OrderFactory(user=user, status=status)
    Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - timedelta(minutes=3))
    resp = api.post(f"/payments/orders/{order.pk}/cancel/")
    assert resp.status_code == 200, resp.content
    assert Order.objects.get(pk=order.pk).status == Order.Status.CANCELED


def test_an_order_whose_payment_the_bank_is_processing_cannot_be_cancelled(api, user):
    from tests.billing.factories import OrderFactory

    order = OrderFactory(user=user, status=Order.Status.PROCESSING)
    resp = api.post(f"/payments/orders/{order.pk}/cancel/")
    assert resp.status_code == 409
    assert "being processed by the bank" in resp.json()["message"]
    assert Order.objects.get(pk=order.pk).status == Order.Status.PROCESSING


# --- what a plugin may quote ----------------------------------------------------------


class Quoted:
    """A purchase type priced at whatever the test says, in money and in credits."""

    def __init__(self, amount, currency: str = "usd", description: str = "quoted", credits=1):
        self.amount, self.currency = amount, currency
        self.description, self.credits = description, credits

    @hookimpl
    def tollgate_purchase_types(self) -> list[PurchaseType]:
        return [PurchaseType(name="quoted", order_type="direct", label="Quoted")]

    @hookimpl
    def tollgate_quote(self, request: PurchaseRequest) -> Quote:
        return Quote(
            amount=self.amount,
            currency=self.currency,
            description=self.description,
            credits=self.credits,
        )

    @hookimpl
    def tollgate_fulfil(self, order) -> dict:
        return {}


def buy_quoted(user, plugin: Quoted, **kw) -> Order:
    """`plugin`'s purchase, paid with the buyer's credits (no Stripe call)."""
    with registry.plugin_registered(plugin, name="quoted"):
        return order_create(
            purchase=PurchaseRequest(user_id=user.pk, purchase_type="quoted"),
            amount=None,
            payment_type=kw.pop("payment_type", Order.PaymentType.CREDITS),
            **kw,
        ).order


@pytest.mark.parametrize(
    ("amount", "currency"),
    [(0, "usd"), (-100, "usd"), (MAX_MINOR + 1, "usd"), (10.5, "usd"), (1005, "kwd")],
    ids=["zero", "negative", "over-the-maximum", "not-whole", "not-a-whole-step"],
)
def test_a_quote_stripe_could_not_charge_is_refused_and_nothing_is_created(user, amount, currency):
    credits_grant(user_id=user.pk, amount=1, reference="quoted-fund")
    with pytest.raises(TypeError):
        buy_quoted(user, Quoted(amount, currency))
    assert not Order.objects.exists()
    assert credits_balance_get(user_id=user.pk) == 1


@pytest.mark.parametrize(("amount", "currency"), [(1, "usd"), (MAX_MINOR, "usd"), (1010, "kwd")])
def test_a_quote_from_one_minor_unit_to_the_maximum_is_sold(user, amount, currency):
    credits_grant(user_id=user.pk, amount=1, reference="quoted-fund")
    order = buy_quoted(user, Quoted(amount, currency))
    assert (order.status, order.amount, order.currency) == (Order.Status.PAID, amount, currency)
    assert credits_balance_get(user_id=user.pk) == 0


class FulfilsOnTheSecondTry(Quoted):
    """A purchase type whose delivery fails the first time (its own service was down)."""

    def __init__(self, amount) -> None:
        super().__init__(amount)
        self.tries = 0

    @hookimpl
    def tollgate_fulfil(self, order) -> dict:
        self.tries += 1
        if self.tries == 1:
            raise RuntimeError("the delivery service is down")
        return {}


def test_a_card_charged_at_create_whose_order_cannot_be_delivered_yet_is_answered(
    api, user, stripe_server
):
    """Stripe took the money, but applying it failed: the buyer is answered, not shown an
    error as if nothing had happened, and the webhook's news of the same payment delivers
    the order once its worker gets to it."""
    from billing.services.events import events_drain
    from tests.billing.conftest import post_webhook
    from tests.stripe_events import event, payment_intent

    plugin = FulfilsOnTheSecondTry(1000)
    with registry.plugin_registered(plugin, name="quoted"):
        resp = api.post(
            "/payments/create/", {"purchase_type": "quoted", "payment_method_id": "pm_card_visa"}
        )
        assert resp.status_code == 201, resp.content
        body = resp.json()
        assert body["status"] == "pending"
        order = Order.objects.get(pk=body["order_id"])
        [intent] = stripe_intents()
        assert (intent.id, intent.status) == (body["payment_intent_id"], "succeeded")

        news = payment_intent(id=intent.id, amount=1000, metadata=order.metadata)
        post_webhook(event("payment_intent.succeeded", news))
        events_drain()
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert plugin.tries == 2
    assert order.fulfilment is not None


def test_a_long_description_is_cut_to_what_the_order_holds(user):
    credits_grant(user_id=user.pk, amount=1, reference="quoted-fund")
    description = "".join(f"{i:03d}" for i in range(100))  # 300 characters
    order = buy_quoted(user, Quoted(500, description=description))
    order.refresh_from_db()
    assert order.description == description[:255]
    # The buyer's ledger names the order, cut to 200 characters.
    [spent] = CreditTransaction.objects.filter(kind=CreditTransaction.Kind.SPEND)
    assert spent.memo == f"Order {order.pk}: {description}"[:200]


def test_a_cancel_after_the_customer_paid_in_the_browser_is_409_and_the_order_is_paid(
    api, user, stripe_server
):
    """Stripe refuses to cancel a PaymentIntent that succeeded: the order takes the
    payment Stripe reports instead of waiting for its webhook."""
    from tests.billing.test_reconcile import pay_in_the_browser

    body = api.post("/payments/create/", BUY_100).json()
    pay_in_the_browser(body["payment_intent_id"])
    resp = api.post(f"/payments/orders/{body['order_id']}/cancel/")
    assert resp.status_code == 409, resp.content
    assert "may have just succeeded" in resp.json()["message"]
    assert Order.objects.get(pk=body["order_id"]).status == Order.Status.PAID
    assert credits_balance_get(user_id=user.pk) == 100


def test_an_order_failed_for_an_unknown_payment_method_can_be_cancelled_at_once(api, stripe_server):
    failed = api.post("/payments/create/", {**BUY_100, "payment_method_id": "pm_does_not_exist"})
    assert failed.status_code == 422
    order_id = failed.json()["extra"]["order_id"]
    resp = api.post(f"/payments/orders/{order_id}/cancel/")
    assert resp.status_code == 200, resp.content
    assert Order.objects.get(pk=order_id).status == Order.Status.CANCELED
    # Cancelled, it still says why its payment failed.
    assert resp.json()["failure_code"] == "invalid_payment_method"
    assert resp.json()["failure_message"] == failed.json()["message"]


def test_a_card_to_save_that_stripe_does_not_know_is_422_and_the_order_fails(api, stripe_server):
    resp = api.post(
        "/payments/create/",
        {**BUY_100, "payment_method_id": "pm_does_not_exist", "save_payment_method": True},
    )
    assert resp.status_code == 422, resp.content
    order = Order.objects.get(pk=resp.json()["extra"]["order_id"])
    assert order.status == Order.Status.FAILED
    assert order.failure_code == "invalid_payment_method"
    assert not order.payments.exists()


def test_a_retry_of_a_request_whose_card_stripe_refused_answers_the_failed_order(
    api, stripe_server
):
    """The first request's order failed before any payment was made (Stripe does not know
    the card): its retry answers that failed order, why it failed, and asks Stripe for
    nothing."""
    body = {**BUY_100, "payment_method_id": "pm_does_not_exist"}
    headers = {"Idempotency-Key": "refused-card"}
    failed = api.post("/payments/create/", body, headers=headers)
    assert failed.status_code == 422, failed.content
    again = api.post("/payments/create/", body, headers=headers)
    assert again.status_code == 200, again.content
    assert again.json()["order_id"] == failed.json()["extra"]["order_id"]
    assert again.json()["status"] == Order.Status.FAILED
    assert again.json()["order"]["failure_code"] == "invalid_payment_method"
    assert not Payment.objects.exists()
    assert stripe_intents() == []


@pytest.mark.parametrize("save", [True, False])
def test_a_retry_saves_the_card_when_and_only_when_the_request_asked_to(
    api, user, settings, stripe_server, save
):
    """The first request never reached Stripe (not even to save the card); the retry with
    the same Idempotency-Key pays, and saves the card as the request asked."""
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    body = {**BUY_100, "payment_method_id": "pm_card_visa", "save_payment_method": save}
    headers = {"Idempotency-Key": f"save-{save}"}
    working = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens
    assert api.post("/payments/create/", body, headers=headers).status_code == 502
    settings.STRIPE_API_BASE = working
    retry = api.post("/payments/create/", body, headers=headers)
    assert retry.status_code == 200, retry.content
    assert retry.json()["status"] == "paid"
    assert SavedPaymentMethod.objects.filter(user=user).exists() is save


@pytest.mark.parametrize("later", [0, 10], ids=["at-two-minutes", "ten-minutes-after"])
def test_a_retry_of_a_request_that_died_silently_waits_two_minutes_then_resumes(
    api, stripe_server, monkeypatch, later
):
    """The first request made its PaymentIntent and died before storing it, leaving no
    error: a retry within two minutes may be racing it (409); from two minutes on it
    resumes the PaymentIntent Stripe made."""
    from datetime import timedelta

    from django.utils import timezone

    headers = {"Idempotency-Key": "died-silently"}
    first = api.post("/payments/create/", BUY_100, headers=headers).json()
    order = Order.objects.get(pk=first["order_id"])
    Payment.objects.filter(order=order).delete()
    now = order.created_at + timedelta(minutes=2)
    monkeypatch.setattr(timezone, "now", lambda: now - timedelta(microseconds=1))
    racing = api.post("/payments/create/", BUY_100, headers=headers)
    assert racing.status_code == 409, racing.content
    assert racing.json()["code"] == "idempotency_conflict"
    monkeypatch.setattr(timezone, "now", lambda: now + timedelta(minutes=later))
    resumed = api.post("/payments/create/", BUY_100, headers=headers)
    assert resumed.status_code == 200, resumed.content
    assert resumed.json()["payment_intent_id"] == first["payment_intent_id"]
    assert len(stripe_intents()) == 1
