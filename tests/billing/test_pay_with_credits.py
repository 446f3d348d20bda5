"""Paying with credits, end to end: real HTTP to a live server, the development Stripe.

A buyer tops up credits by card, books a workshop with credits, cancels it and
gets the credits back; pays part with credits and a card for the rest (a declined
card, then a good one); staff refund split orders and refund card payments as
credits. Each flow checks the ledger (balance = sum of entries), the seats and the
order's one fulfilment.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from django.db import connection
from django.utils import timezone

from billing.models import Fulfilment, Order, Refund
from billing.services.credit_payments import card_rest, orders_holding_credits_expire
from bookings.models import Booking, SeatHold, Service
from credits.models import CreditTransaction
from credits.selectors import credits_balance_get, credits_ledger_sum
from credits.services import credits_grant
from platform_core.auth import api_token_create
from tests.billing.conftest import in_threads
from tests.billing.test_e2e_payments import BUY_100, Http, card
from tests.bookings.factories import PackageItemFactory, ServiceFactory, ServiceSessionFactory
from tests.conftest import PASSWORD
from tollgate_testing.api import ApiClient

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DECLINED = "4000000000000002"
GOOD = "4242424242424242"


def http_for(live_server, user) -> Http:
    raw, _ = api_token_create(username=user.username, password=PASSWORD)
    return Http(live_server.url, raw)


@pytest.fixture
def http(live_server, user) -> Http:
    return http_for(live_server, user)


@pytest.fixture
def staff_http(live_server, staff_user) -> Http:
    return http_for(live_server, staff_user)


@pytest.fixture
def workshop(db) -> Service:
    """A 10-seat workshop sold for 45.00 USD or 40 credits."""
    service = ServiceFactory(
        name="Sourdough", kind=Service.Kind.WORKSHOP, price=4500, credit_price=40
    )
    ServiceSessionFactory(service=service, capacity=10)
    return service


def fund(user, credits: int) -> None:
    credits_grant(user_id=user.pk, amount=credits, reference=f"fund-{user.pk}-{credits}")


def book(service: Service, **more) -> dict:
    return {"service_id": service.pk, **more}


def balance_whole(user) -> int:
    balance = credits_balance_get(user_id=user.pk)
    assert balance == credits_ledger_sum(user_id=user.pk)
    return balance


def test_buy_a_pack_book_a_workshop_with_credits_cancel_and_get_them_back(
    http, live_stripe, user, workshop
):
    topped = http.post("/payments/create/", {**BUY_100, "payment_method_id": "pm_card_visa"})
    assert topped.status_code == 201, topped.text
    assert balance_whole(user) == 100

    catalog = http.get("/catalog/").json()
    entry = next(
        s
        for t in catalog["purchase_types"]
        if t["name"] == "workshop"
        for s in t["catalog"]["services"]
        if s["id"] == workshop.pk
    )
    assert (entry["price"], entry["credit_price"]) == (4500, 40)
    listed = http.get("/bookings/services/").json()
    assert next(s for s in listed if s["id"] == workshop.pk)["credit_price"] == 40

    booked = http.post("/payments/create/", book(workshop, payment_type="credits"))
    assert booked.status_code == 201, booked.text
    body = booked.json()
    assert body["status"] == "paid"
    assert body["payment_intent_id"] is None and body["client_secret"] is None
    assert body["order"]["payment_type"] == "credits"
    assert (body["order"]["credits"], body["order"]["card_amount"]) == (40, 0)
    assert body["order"]["fulfilled"] is True
    assert balance_whole(user) == 60
    order = Order.objects.get(pk=body["order_id"])
    assert not order.payments.exists()
    assert Fulfilment.objects.filter(order=order).count() == 1
    booking = Booking.objects.get(order_id=order.pk)
    assert booking.status == Booking.Status.CONFIRMED
    assert not SeatHold.objects.live(timezone.now()).filter(order_id=order.pk).exists()

    cancelled = http.post(f"/payments/orders/{order.pk}/cancel/", {})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "refunded"
    assert balance_whole(user) == 100
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CANCELED
    refund = Refund.objects.get(order=order)
    assert (refund.method, refund.credits, refund.amount) == ("credits", 40, 4500)
    assert refund.applied_at is not None

    again = http.post(f"/payments/orders/{order.pk}/cancel/", {})
    assert again.status_code == 409, again.text
    assert balance_whole(user) == 100
    assert Refund.objects.filter(order=order).count() == 1


@pytest.mark.parametrize("paid_by", ["intent", "checkout"])
def test_a_booking_paid_by_card_is_not_cancelled_by_its_buyer(
    http, live_stripe, user, workshop, paid_by
):
    """Only what credits paid goes back to the buyer's credits on a cancel: a card
    payment is refunded by staff, to the card. The buyer's cancel of a booking paid by
    card, inside the window a credits payment would have, is refused and changes nothing."""
    paid = http.post("/payments/create/", book(workshop, payment_method_id=card(GOOD)))
    assert paid.status_code == 201, paid.text
    assert paid.json()["status"] == "paid"
    order = Order.objects.get(pk=paid.json()["order_id"])
    assert order.cancellable_until > timezone.now()
    if paid_by == "checkout":  # as if paid on Stripe's Checkout page: the cancel reads the row
        Order.objects.filter(pk=order.pk).update(payment_type=Order.PaymentType.CHECKOUT)

    refused = http.post(f"/payments/orders/{order.pk}/cancel/", {})
    assert refused.status_code == 409, refused.text
    assert refused.json()["extra"]["status"] == "paid"
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert Booking.objects.get(order_id=order.pk).status == Booking.Status.CONFIRMED
    assert not Refund.objects.exists()
    assert balance_whole(user) == 0


def test_too_few_credits_is_409_with_what_is_missing_and_creates_nothing(
    http, live_stripe, user, workshop
):
    fund(user, 30)
    refused = http.post("/payments/create/", book(workshop, payment_type="credits"))
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert body["code"] == "insufficient_credits"
    assert body["extra"]["missing"] == 10
    assert "10 more" in body["message"]
    assert not Order.objects.exists()
    assert not SeatHold.objects.exists()
    assert balance_whole(user) == 30


def test_a_purchase_without_a_credit_price_is_422(http, live_stripe, user, workshop):
    fund(user, 1000)
    pack = http.post("/payments/create/", {**BUY_100, "payment_type": "credits"})
    assert pack.status_code == 422, pack.text
    assert pack.json()["code"] == "not_sold_this_way"
    plain = ServiceFactory(kind=Service.Kind.WORKSHOP, price=1000)
    ServiceSessionFactory(service=plain)
    refused = http.post("/payments/create/", book(plain, payment_type="credits"))
    assert refused.status_code == 422, refused.text
    split = http.post("/payments/create/", book(plain, apply_credits=True))
    assert split.status_code == 422, split.text
    with_card = http.post(
        "/payments/create/", book(workshop, payment_type="credits", payment_method_id="pm_x_1")
    )
    assert with_card.status_code == 422, with_card.text
    assert not Order.objects.exists()
    assert balance_whole(user) == 1000


def test_a_retried_request_with_the_same_idempotency_key_pays_once(
    http, live_stripe, user, workshop
):
    fund(user, 100)
    body = book(workshop, payment_type="credits")
    first = http.post("/payments/create/", body, **{"Idempotency-Key": "k-1"})
    assert first.status_code == 201, first.text
    second = http.post("/payments/create/", body, **{"Idempotency-Key": "k-1"})
    assert second.status_code == 200, second.text
    assert second.json()["order_id"] == first.json()["order_id"]
    assert second.json()["status"] == "paid"
    other = http.post(
        "/payments/create/", {**body, "apply_credits": True}, **{"Idempotency-Key": "k-1"}
    )
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_conflict"
    assert Order.objects.count() == 1
    assert Booking.objects.count() == 1
    assert balance_whole(user) == 60


def test_credits_first_then_a_declined_card_then_a_good_one(http, live_stripe, user, workshop):
    fund(user, 10)
    declined = http.post(
        "/payments/create/", book(workshop, apply_credits=True, payment_method_id=card(DECLINED))
    )
    assert declined.status_code == 402, declined.text
    order = Order.objects.get(pk=declined.json()["extra"]["order_id"])
    # 10 of 40 credits pay a quarter; the card the rest.
    assert order.status == Order.Status.FAILED
    assert (order.credits, order.card_amount, order.credits_value) == (10, 3375, 1125)
    assert order.payments.get().amount == 3375
    assert balance_whole(user) == 0  # kept for paying again

    paid = http.post(f"/payments/orders/{order.pk}/pay/", {"payment_method_id": card(GOOD)})
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "paid"
    order.refresh_from_db()
    assert order.credits == 10
    assert [p.amount_received for p in order.payments.all()] == [3375]
    assert Fulfilment.objects.filter(order=order).count() == 1
    assert Booking.objects.filter(order_id=order.pk).count() == 1
    assert balance_whole(user) == 0


def test_credits_come_back_once_when_the_split_order_is_cancelled(
    http, live_stripe, user, workshop
):
    fund(user, 25)
    created = http.post("/payments/create/", book(workshop, apply_credits=True))
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "pending"
    assert body["amount"] == 4500 and body["order"]["card_amount"] == 1688
    assert balance_whole(user) == 0

    cancelled = http.post(f"/payments/orders/{body['order_id']}/cancel/", {})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "canceled"
    assert balance_whole(user) == 25
    assert http.post(f"/payments/orders/{body['order_id']}/cancel/", {}).status_code == 409
    returned = CreditTransaction.objects.filter(
        account__user=user, kind=CreditTransaction.Kind.RETURN
    )
    assert [e.amount for e in returned] == [25]


def test_credits_come_back_when_the_split_order_expires(http, live_stripe, user, workshop):
    fund(user, 20)
    created = http.post("/payments/create/", book(workshop, apply_credits=True)).json()
    assert balance_whole(user) == 0
    assert orders_holding_credits_expire() == 0  # not yet
    later = timezone.now() + timedelta(hours=2)
    assert orders_holding_credits_expire(now=later) == 1
    assert Order.objects.get(pk=created["order_id"]).status == Order.Status.CANCELED
    assert balance_whole(user) == 20
    assert orders_holding_credits_expire(now=later) == 0
    assert balance_whole(user) == 20


def test_credits_that_cover_the_price_need_no_card(http, live_stripe, user, workshop):
    fund(user, 50)
    created = http.post("/payments/create/", book(workshop, apply_credits=True))
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "paid"
    assert created.json()["payment_intent_id"] is None
    assert balance_whole(user) == 10


@pytest.mark.parametrize("how", [{"payment_type": "credits"}, {"apply_credits": True}])
def test_a_credit_price_in_the_thousands_is_paid_in_full_with_credits(
    api, stripe_server, user, how
):
    """Credit prices run to the thousands (the Pro pack is 1200 credits): one of 1200, all
    of it in the buyer's credits, pays the order with no card, asked either way."""
    dear = ServiceFactory(kind=Service.Kind.WORKSHOP, price=4500, credit_price=1200)
    ServiceSessionFactory(service=dear)
    fund(user, 1200)
    created = api.post("/payments/create/", book(dear, **how))
    assert created.status_code == 201, created.content
    order = Order.objects.get(pk=created.json()["order_id"])
    assert (order.status, order.payment_type) == (Order.Status.PAID, Order.PaymentType.CREDITS)
    assert (order.credits, order.credits_value, order.card_amount) == (1200, 4500, 0)
    assert not order.payments.exists()
    assert Fulfilment.objects.filter(order=order).count() == 1
    assert balance_whole(user) == 0


def test_a_split_order_is_refunded_to_the_card_and_the_credits(
    http, staff_http, live_stripe, user, workshop
):
    fund(user, 20)
    paid = http.post(
        "/payments/create/", book(workshop, apply_credits=True, payment_method_id="pm_card_visa")
    )
    assert paid.status_code == 201, paid.text
    order = Order.objects.get(pk=paid.json()["order_id"])
    assert order.status == Order.Status.PAID
    assert (order.credits, order.card_amount) == (20, 2250)
    assert balance_whole(user) == 0

    # Half of the price: half from each side.
    half = staff_http.post(f"/payments/orders/{order.pk}/refunds/", {"amount": "22.50"})
    assert half.status_code == 201, half.text
    refunds = list(order.refunds.order_by("id"))
    assert [(r.method, r.amount, r.credits) for r in refunds] == [
        ("card", 1125, 0),
        ("credits", 1125, 10),
    ]
    assert all(r.applied_at for r in refunds)
    order.refresh_from_db()
    assert order.status == Order.Status.PARTIALLY_REFUNDED
    assert balance_whole(user) == 10

    rest = staff_http.post(f"/payments/orders/{order.pk}/refunds/", {})
    assert rest.status_code == 201, rest.text
    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
    assert balance_whole(user) == 20
    assert sum(r.amount for r in order.refunds.all()) == 4500
    assert Booking.objects.get(order_id=order.pk).status == Booking.Status.CANCELED
    more = staff_http.post(f"/payments/orders/{order.pk}/refunds/", {"credits": 1})
    assert more.status_code == 409, more.text


def test_a_refund_may_name_its_card_and_credit_parts(http, staff_http, live_stripe, user, workshop):
    fund(user, 20)
    order_id = http.post(
        "/payments/create/", book(workshop, apply_credits=True, payment_method_id="pm_card_visa")
    ).json()["order_id"]
    only_credits = staff_http.post(f"/payments/orders/{order_id}/refunds/", {"credits": 5})
    assert only_credits.status_code == 201, only_credits.text
    assert (only_credits.json()["method"], only_credits.json()["credits"]) == ("credits", 5)
    # Parts of the same number, 5 credits and 0.05 to the card, are both refunded.
    alike = staff_http.post(
        f"/payments/orders/{order_id}/refunds/", {"credits": 5, "amount": "0.05"}
    )
    assert alike.status_code == 201, alike.text
    assert [
        (r.method, r.amount, r.credits)
        for r in Refund.objects.filter(order_id=order_id).order_by("id")
    ][1:] == [("card", 5, 0), ("credits", 563, 5)]
    too_many = staff_http.post(f"/payments/orders/{order_id}/refunds/", {"credits": 11})
    assert too_many.status_code == 409, too_many.text
    both = staff_http.post(
        f"/payments/orders/{order_id}/refunds/", {"credits": 10, "amount": "22.45"}
    )
    assert both.status_code == 201, both.text
    # Staff are answered the card part, the one Stripe may still fail.
    assert (both.json()["method"], both.json()["amount"]) == ("card", 2245)
    assert Order.objects.get(pk=order_id).status == Order.Status.REFUNDED
    assert balance_whole(user) == 20


def test_credits_given_back_in_parts_add_up_to_the_price(
    http, staff_http, live_stripe, user, workshop
):
    """40 credits paid 45.00: each part is worth its share rounded down, and the last
    part the rest, so the parts refund the whole price and the order is refunded."""
    fund(user, 40)
    order_id = http.post("/payments/create/", book(workshop, payment_type="credits")).json()[
        "order_id"
    ]
    for credits in (3, 7):
        part = staff_http.post(f"/payments/orders/{order_id}/refunds/", {"credits": credits})
        assert part.status_code == 201, part.text
        assert Order.objects.get(pk=order_id).status == Order.Status.PARTIALLY_REFUNDED
    rest = staff_http.post(f"/payments/orders/{order_id}/refunds/", {})
    assert rest.status_code == 201, rest.text
    refunds = Refund.objects.filter(order_id=order_id).order_by("id")
    assert [(r.method, r.credits, r.amount) for r in refunds] == [
        ("credits", 3, 337),
        ("credits", 7, 788),
        ("credits", 30, 3375),
    ]
    assert Order.objects.get(pk=order_id).status == Order.Status.REFUNDED
    assert balance_whole(user) == 40


@pytest.mark.parametrize(
    ("price", "credit_price", "given_back", "parts"),
    [
        (200, 3, [1, 1, 1], [66, 67, 67]),
        # The highest price, for 2**28 credits: a share no float holds exactly.
        (99_999_999, 2**28, [112_648_449, 2**28 - 112_648_449], [41_964_816, 58_035_183]),
    ],
)
def test_credits_given_back_in_parts_are_each_worth_their_share_rounded_down(
    http, staff_http, live_stripe, user, price, credit_price, given_back, parts
):
    """Credits that paid the whole price, given back in parts: each part is worth what
    all the credits given back so far stand for, rounded down, less what came back
    before (2.00 for 3 credits comes back as 0.66, 0.67, 0.67), so the parts add up to
    exactly the price, however large the price and the credit price."""
    service = ServiceFactory(kind=Service.Kind.WORKSHOP, price=price, credit_price=credit_price)
    ServiceSessionFactory(service=service, capacity=10)
    fund(user, credit_price)
    paid = http.post("/payments/create/", book(service, payment_type="credits"))
    assert paid.status_code == 201, paid.text
    order_id = paid.json()["order_id"]
    for credits in given_back:
        part = staff_http.post(f"/payments/orders/{order_id}/refunds/", {"credits": credits})
        assert part.status_code == 201, part.text
    refunds = Refund.objects.filter(order_id=order_id).order_by("id")
    assert [(r.credits, r.amount) for r in refunds] == list(zip(given_back, parts, strict=True))
    assert sum(parts) == price
    assert Order.objects.get(pk=order_id).status == Order.Status.REFUNDED
    assert balance_whole(user) == credit_price


def test_a_split_order_refunded_in_parts_splits_each_part_as_it_was_paid(
    http, staff_http, live_stripe, user, workshop
):
    """25 credits (worth 28.12) and 16.88 by card paid 45.00: a part of the price is
    split in that proportion, each side rounded down; a request beyond what is left
    on either side, or worth nothing on both, is refused and changes nothing."""
    fund(user, 25)
    order_id = http.post(
        "/payments/create/", book(workshop, apply_credits=True, payment_method_id="pm_card_visa")
    ).json()["order_id"]
    order = Order.objects.get(pk=order_id)
    assert (order.credits, order.credits_value, order.card_amount) == (25, 2812, 1688)

    def refund(body: dict):
        return staff_http.post(f"/payments/orders/{order_id}/refunds/", body)

    def rows() -> list[tuple]:
        return [
            (r.method, r.amount, r.credits)
            for r in Refund.objects.filter(order_id=order_id).order_by("id")
        ]

    nothing = refund({"amount": "0.01"})
    assert nothing.status_code == 409, nothing.text
    assert nothing.json()["extra"]["requested"] == nothing.json()["extra"]["credits_requested"] == 0
    assert rows() == []

    part = refund({"amount": "10.00"})
    assert part.status_code == 201, part.text
    assert part.json()["method"] == "card"  # of both parts, the answer is the card's
    assert rows() == [("card", 375, 0), ("credits", 562, 5)]
    assert balance_whole(user) == 5

    card_beyond = refund({"credits": 1, "amount": "13.14"})
    assert card_beyond.status_code == 409, card_beyond.text
    assert card_beyond.json()["extra"] == {
        "order_id": order_id,
        "refundable": 1313,
        "credits_refundable": 20,
        "requested": 1314,
        "credits_requested": 1,
    }
    credits_beyond = refund({"credits": 21})
    assert credits_beyond.status_code == 409, credits_beyond.text
    assert credits_beyond.json()["extra"]["credits_requested"] == 21
    assert credits_beyond.json()["extra"]["credits_refundable"] == 20
    assert len(rows()) == 2 and balance_whole(user) == 5

    card_rest = refund({"credits": 1, "amount": "13.13"})
    assert card_rest.status_code == 201, card_rest.text
    assert rows()[2:] == [("card", 1313, 0), ("credits", 112, 1)]
    no_card_left = refund({"to_credits": True})
    assert no_card_left.status_code == 409, no_card_left.text
    assert no_card_left.json()["extra"]["refundable"] == 0

    rest = refund({})
    assert rest.status_code == 201, rest.text
    assert rows()[4:] == [("credits", 2138, 19)]
    assert sum(amount for _, amount, _ in rows()) == 4500
    assert Order.objects.get(pk=order_id).status == Order.Status.REFUNDED
    assert balance_whole(user) == 25


def test_a_split_refund_too_small_for_a_credit_goes_to_the_card_alone(
    http, staff_http, live_stripe, user, workshop
):
    """0.04 of a 45.00 order paid 16.88 by card and 25 credits: 0.01 is the card's share,
    the rest is worth no whole credit, so the card alone is refunded. A negative number
    of credits is refused before anything is refunded."""
    from billing.services.credit_refunds import refund_order
    from billing.services.refunds import RefundExceedsCapturedError

    fund(user, 25)
    order_id = http.post(
        "/payments/create/", book(workshop, apply_credits=True, payment_method_id="pm_card_visa")
    ).json()["order_id"]
    with pytest.raises(RefundExceedsCapturedError):
        refund_order(order_id=order_id, amount=None, credits=-1)
    assert not Refund.objects.filter(order_id=order_id).exists()

    tiny = staff_http.post(f"/payments/orders/{order_id}/refunds/", {"amount": "0.04"})
    assert tiny.status_code == 201, tiny.text
    assert (tiny.json()["method"], tiny.json()["amount"]) == ("card", 1)
    assert [r.method for r in Refund.objects.filter(order_id=order_id)] == ["card"]
    assert balance_whole(user) == 0


def test_a_long_refund_reason_is_kept_to_its_first_500_characters(
    http, live_stripe, user, workshop
):
    from billing.services.credit_refunds import refund_as_credits, refund_order

    fund(user, 40)
    paid_with_credits = http.post(
        "/payments/create/", book(workshop, payment_type="credits")
    ).json()["order_id"]
    paid_by_card = http.post(
        "/payments/create/", book(workshop, payment_method_id="pm_card_visa")
    ).json()["order_id"]
    reason = "r" * 499 + "st" + "u" * 99
    back = refund_order(order_id=paid_with_credits, amount=None, reason=reason)
    as_credits = refund_as_credits(order_id=paid_by_card, amount=None, reason=reason)
    for refund in (back, as_credits):
        assert Refund.objects.get(pk=refund.pk).reason == "r" * 499 + "s"


@pytest.mark.parametrize("currency", ["eur", "zar"])
def test_an_order_in_another_currency_with_no_credit_price_is_refunded_to_the_card_only(
    http, staff_http, live_stripe, user, currency
):
    """Credits are sold in USD: money in EUR or ZAR has no credit rate to turn it into
    credits."""
    foreign = ServiceFactory(kind=Service.Kind.WORKSHOP, price=4500, currency=currency)
    ServiceSessionFactory(service=foreign)
    paid = http.post("/payments/create/", book(foreign, payment_method_id="pm_card_visa"))
    assert paid.status_code == 201, paid.text
    order_id = paid.json()["order_id"]
    refused = staff_http.post(f"/payments/orders/{order_id}/refunds/", {"to_credits": True})
    assert refused.status_code == 422, refused.text
    assert refused.json()["extra"]["field"] == "to_credits"
    assert not Refund.objects.filter(order_id=order_id).exists()
    assert balance_whole(user) == 0


def test_staff_refund_a_card_order_as_credits_once(http, staff_http, live_stripe, user, workshop):
    paid = http.post("/payments/create/", book(workshop, payment_method_id="pm_card_visa")).json()
    order_id = paid["order_id"]
    assert paid["status"] == "paid"
    refund = staff_http.post(f"/payments/orders/{order_id}/refunds/", {"to_credits": True})
    assert refund.status_code == 201, refund.text
    body = refund.json()
    assert (body["method"], body["credits"], body["stripe_refund_id"]) == ("as_credits", 40, None)
    assert body["applied"] is True
    order = Order.objects.get(pk=order_id)
    assert order.status == Order.Status.REFUNDED
    assert Booking.objects.get(order_id=order_id).status == Booking.Status.CANCELED
    assert balance_whole(user) == 40
    entries = http.get("/credits/transactions/").json()["items"]
    assert (entries[0]["amount"], entries[0]["memo"]) == (
        40,
        f"Refund of order {order_id} as credits",
    )
    again = staff_http.post(f"/payments/orders/{order_id}/refunds/", {"to_credits": True})
    assert again.status_code == 409, again.text
    card_too = staff_http.post(f"/payments/orders/{order_id}/refunds/", {})
    assert card_too.status_code == 409, card_too.text
    assert balance_whole(user) == 40
    denied = http.post(f"/payments/orders/{order_id}/refunds/", {"to_credits": True})
    assert denied.status_code == 403


def test_a_card_order_whose_plugin_quoted_a_negative_credit_price_is_not_refunded_as_credits(
    api, staff_api, stripe_server, user
):
    """A credit price is checked when credits pay; one quoted below zero for a card
    purchase is never a number of credits to give: refunded as credits, it is worth
    less than one credit (422), and the buyer's balance and the order stay as they were."""
    from purchasables.registry import registry
    from tests.billing.test_orders import Quoted

    fund(user, 5)
    with registry.plugin_registered(Quoted(1000, credits=-40), name="quoted"):
        paid = api.post(
            "/payments/create/", {"purchase_type": "quoted", "payment_method_id": "pm_card_visa"}
        )
        assert paid.status_code == 201, paid.content
        order_id = paid.json()["order_id"]
        refused = staff_api.post(f"/payments/orders/{order_id}/refunds/", {"to_credits": True})
    assert refused.status_code == 422, refused.content
    assert refused.json()["extra"]["field"] == "amount"
    assert Order.objects.get(pk=order_id).status == Order.Status.PAID
    assert not Refund.objects.filter(order_id=order_id).exists()
    assert balance_whole(user) == 5


def test_a_card_order_refunded_as_credits_in_parts_gives_its_credit_price_in_all(
    http, staff_http, live_stripe, user, workshop
):
    """11.24 of 45.00 is 9 credits of 40 (9.99 rounded down); the rest carries the
    fraction, so the two parts give the whole credit price. A part worth less than a
    credit, or more than the card has left, is refused."""
    order_id = http.post(
        "/payments/create/", book(workshop, payment_method_id="pm_card_visa")
    ).json()["order_id"]

    def as_credits(**amount):
        return staff_http.post(
            f"/payments/orders/{order_id}/refunds/", {"to_credits": True, **amount}
        )

    cent = as_credits(amount="0.01")
    assert cent.status_code == 422, cent.text
    assert cent.json()["extra"]["field"] == "amount"
    part = as_credits(amount="11.24")
    assert part.status_code == 201, part.text
    assert (part.json()["amount"], part.json()["credits"]) == (1124, 9)
    assert Order.objects.get(pk=order_id).status == Order.Status.PARTIALLY_REFUNDED
    beyond = as_credits(amount="33.77")
    assert beyond.status_code == 409, beyond.text
    assert (beyond.json()["extra"]["refundable"], beyond.json()["extra"]["requested"]) == (
        3376,
        3377,
    )
    rest = as_credits()
    assert rest.status_code == 201, rest.text
    assert (rest.json()["amount"], rest.json()["credits"]) == (3376, 31)
    assert Order.objects.get(pk=order_id).status == Order.Status.REFUNDED
    assert Refund.objects.filter(order_id=order_id).count() == 2
    assert balance_whole(user) == 40


def test_a_booking_past_its_cut_off_is_not_cancelled(http, live_stripe, user):
    soon = ServiceFactory(kind=Service.Kind.WORKSHOP, price=1000, credit_price=10)
    ServiceSessionFactory(service=soon, start=timezone.now() + timedelta(hours=3))
    fund(user, 10)
    order_id = http.post("/payments/create/", book(soon, payment_type="credits")).json()["order_id"]
    refused = http.post(f"/payments/orders/{order_id}/cancel/", {})
    assert refused.status_code == 409, refused.text
    assert refused.json()["extra"]["cancellable_until"]
    assert balance_whole(user) == 0
    assert Booking.objects.get(order_id=order_id).status == Booking.Status.CONFIRMED


def test_a_booking_paid_with_credits_can_be_cancelled_until_its_cut_off_not_at_it(
    api, stripe_server, user, workshop, monkeypatch
):
    """The cut-off is the first moment the buyer can no longer cancel: a microsecond
    before it the credits come back; at it, 409 and nothing moves."""
    from billing.services.orders import order_cancel
    from kernel.errors import ConflictError

    fund(user, 80)
    orders = [
        api.post("/payments/create/", book(workshop, payment_type="credits")).json()["order_id"]
        for _ in range(2)
    ]
    until = Order.objects.get(pk=orders[0]).cancellable_until
    assert until is not None

    monkeypatch.setattr(timezone, "now", lambda: until)
    with pytest.raises(ConflictError):
        order_cancel(order_id=orders[0], user_id=user.pk)
    assert Order.objects.get(pk=orders[0]).status == Order.Status.PAID
    assert balance_whole(user) == 0

    monkeypatch.setattr(timezone, "now", lambda: until - timedelta(microseconds=1))
    assert order_cancel(order_id=orders[1], user_id=user.pk).status == Order.Status.REFUNDED
    assert balance_whole(user) == 40


def test_a_package_with_nothing_scheduled_yet_is_not_cancelled_by_its_buyer(
    http, live_stripe, user
):
    """Its 1-on-1 units are booked later: no start, so no cut-off the buyer could cancel by."""
    call = ServiceFactory(kind=Service.Kind.SESSION, price=8000)
    calls = ServiceFactory(kind=Service.Kind.PACKAGE, price=16000, credit_price=30)
    PackageItemFactory(package=calls, item_service=call, quantity=2)
    fund(user, 30)
    bought = http.post("/payments/create/", book(calls, payment_type="credits"))
    assert bought.status_code == 201, bought.text
    order_id = bought.json()["order_id"]
    assert Order.objects.get(pk=order_id).cancellable_until is None

    refused = http.post(f"/payments/orders/{order_id}/cancel/", {})
    assert refused.status_code == 409, refused.text
    assert refused.json()["message"].endswith("can no longer be cancelled by its buyer.")
    assert refused.json()["extra"]["cancellable_until"] is None
    assert balance_whole(user) == 0
    assert Order.objects.get(pk=order_id).status == Order.Status.PAID
    assert not Refund.objects.filter(order_id=order_id).exists()


def test_card_rest_rounds_up_to_the_currency_step():
    assert card_rest(amount=4500, credits=40, taken=10, currency="usd") == 3375
    assert card_rest(amount=1000, credits=3, taken=1, currency="usd") == 667
    assert card_rest(amount=1000, credits=3, taken=1, currency="kwd") == 670
    assert card_rest(amount=1000, credits=40, taken=40, currency="usd") == 0


@pytest.fixture
def no_limits(settings):
    """Fifty creates from one buyer at once is what this test is about, not the limits."""
    settings.TOLLGATE = {
        **settings.TOLLGATE,
        "RATE_LIMITS": dict.fromkeys(settings.TOLLGATE["RATE_LIMITS"], "off"),
        "BOOKING_HOLD_SEATS_PER_SESSION": 0,
        "BOOKING_HOLDS_PER_USER": 0,
    }


@pytest.mark.parametrize(
    ("seats", "affordable"),
    [(20, 30), (100, 25)],
    ids=["seats-run-out-first", "credits-run-out-first"],
)
def test_fifty_concurrent_credit_payments_on_one_account(
    stripe_server, user, no_limits, seats, affordable
):
    service = ServiceFactory(kind=Service.Kind.WORKSHOP, price=4500, credit_price=40)
    session = ServiceSessionFactory(service=service, capacity=seats)
    fund(user, 40 * affordable)

    token, _ = api_token_create(username=user.username, password=PASSWORD)

    def pay(i: int):
        # The whole request path in this thread, on its own database connection.
        return ApiClient(token).post("/payments/create/", book(service, payment_type="credits"))

    answers = in_threads(50, pay)

    codes = sorted(a.status_code for a in answers)
    paid = min(seats, affordable)
    assert codes.count(201) == paid, [a.text for a in answers if a.status_code != 201][:3]
    assert codes.count(409) == 50 - paid
    refusals = {a.json()["code"] for a in answers if a.status_code == 409}
    assert refusals == {"seats_unavailable" if seats < affordable else "insufficient_credits"}
    orders = Order.objects.filter(user=user)
    assert orders.count() == paid
    assert all(o.status == Order.Status.PAID for o in orders)
    assert Fulfilment.objects.filter(order__in=orders).count() == paid
    assert Booking.objects.filter(session=session).count() == paid <= seats
    assert balance_whole(user) == 40 * (affordable - paid) >= 0
    spends = CreditTransaction.objects.filter(account__user=user, kind=CreditTransaction.Kind.SPEND)
    assert spends.count() == paid


def test_the_admin_action_refunds_a_card_order_as_credits_once(http, live_stripe, user, workshop):
    from django.contrib.auth.models import Permission
    from django.test import Client
    from django.urls import reverse

    from tests.factories import UserFactory

    order_id = http.post(
        "/payments/create/", book(workshop, payment_method_id="pm_card_visa")
    ).json()["order_id"]
    finance = UserFactory(is_staff=True)
    finance.user_permissions.add(
        Permission.objects.get(codename="view_order"),
        Permission.objects.get(codename="view_refund"),
        Permission.objects.get(codename="add_refund"),
    )
    client = Client()
    client.force_login(finance)
    for _ in range(2):  # a double-submitted action refunds once
        client.post(
            reverse("admin:billing_order_changelist"),
            {"action": "refund_as_credits_in_full", "_selected_action": [order_id]},
        )
    [refund] = Refund.objects.filter(order_id=order_id)
    assert (refund.method, refund.amount, refund.credits) == ("as_credits", 4500, 40)
    assert refund.stripe_refund_id is None and refund.initiated_by == finance
    assert Order.objects.get(pk=order_id).status == Order.Status.REFUNDED
    assert balance_whole(user) == 40
    page = client.get(reverse("admin:billing_order_change", args=[order_id]))
    assert page.status_code == 200
    assert b"Card payment refunded as credits" in page.content


def test_staff_refund_part_of_an_order_paid_with_credits(
    http, staff_http, live_stripe, user, workshop
):
    fund(user, 40)
    order_id = http.post("/payments/create/", book(workshop, payment_type="credits")).json()[
        "order_id"
    ]
    half = staff_http.post(f"/payments/orders/{order_id}/refunds/", {"amount": "22.50"})
    assert half.status_code == 201, half.text
    assert (half.json()["method"], half.json()["credits"], half.json()["amount"]) == (
        "credits",
        20,
        2250,
    )
    assert Order.objects.get(pk=order_id).status == Order.Status.PARTIALLY_REFUNDED
    assert Booking.objects.get(order_id=order_id).status == Booking.Status.PARTIALLY_REFUNDED
    assert balance_whole(user) == 20
    # The buyer's own cancellation is for a whole order only.
    assert http.post(f"/payments/orders/{order_id}/cancel/", {}).status_code == 409
    rest = staff_http.post(f"/payments/orders/{order_id}/refunds/", {})
    assert rest.status_code == 201, rest.text
    assert Order.objects.get(pk=order_id).status == Order.Status.REFUNDED
    assert Booking.objects.get(order_id=order_id).status == Booking.Status.CANCELED
    assert balance_whole(user) == 40
    to_card = staff_http.post(f"/payments/orders/{order_id}/refunds/", {"to_credits": True})
    assert to_card.status_code == 409, to_card.text


def test_a_retried_split_order_takes_the_credits_once(http, live_stripe, user, workshop):
    fund(user, 10)
    body = book(workshop, apply_credits=True, payment_method_id="pm_card_visa")
    first = http.post("/payments/create/", body, **{"Idempotency-Key": "split-1"})
    again = http.post("/payments/create/", body, **{"Idempotency-Key": "split-1"})
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert first.json()["order_id"] == again.json()["order_id"]
    assert again.json()["status"] == "paid"
    order = Order.objects.get()
    assert (order.credits, order.payments.count()) == (10, 1)
    assert order.payments.get().amount_received == 3375
    assert balance_whole(user) == 0


@pytest.fixture
def stripe_before_each_refund(settings, stripe_server):
    """The development Stripe behind a relay that runs `before(path)` as each refund
    request arrives, then passes the request on: what another member of staff does
    while a card refund is at Stripe."""
    upstream = settings.STRIPE_API_BASE
    waiting: list = []

    class Relay(BaseHTTPRequestHandler):
        def do_GET(self):
            self.relay(None)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.startswith("/v1/refunds") and waiting:
                try:
                    waiting.pop(0)()
                finally:
                    connection.close()
            self.relay(body)

        def relay(self, body: bytes | None) -> None:
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            answer = requests.request(
                self.command, upstream + self.path, data=body, headers=headers, timeout=30
            )
            self.send_response(answer.status_code)
            for name in ("Content-Type", "Request-Id", "Idempotency-Key"):
                if name in answer.headers:
                    self.send_header(name, answer.headers[name])
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Relay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{server.server_address[1]}"
    yield waiting.append
    server.shutdown()
    server.server_close()


def test_credits_given_back_while_the_card_part_is_refunded_are_not_given_twice(
    user, workshop, stripe_before_each_refund
):
    """Staff refund 10.00 to the card and 15 credits; while the card refund is at Stripe,
    someone else gives back 10 of the order's 20 credits. The card refund stands; the
    credits part is refused with what is left, and no credit comes back twice."""
    from billing.services.credit_refunds import refund_order
    from billing.services.refunds import RefundExceedsCapturedError

    fund(user, 20)
    token, _ = api_token_create(username=user.username, password=PASSWORD)
    created = ApiClient(token).post(
        "/payments/create/", book(workshop, apply_credits=True, payment_method_id="pm_card_visa")
    )
    assert created.status_code == 201, created.content
    order_id = created.json()["order_id"]
    assert Order.objects.get(pk=order_id).status == Order.Status.PAID
    stripe_before_each_refund(lambda: refund_order(order_id=order_id, amount=None, credits=10))

    with pytest.raises(RefundExceedsCapturedError) as refused:
        refund_order(order_id=order_id, amount="10.00", credits=15)

    assert refused.value.extra["credits_refundable"] == 10
    refunds = Refund.objects.filter(order_id=order_id).order_by("id")
    assert [(r.method, r.amount, r.credits) for r in refunds] == [
        ("card", 1000, 0),
        ("credits", 1125, 10),
    ]
    assert all(r.applied_at for r in refunds)
    assert balance_whole(user) == 10


def test_racing_cancels_of_a_split_order_give_the_credits_back_once(stripe_server, user, workshop):
    from billing.services.orders import order_cancel

    fund(user, 25)
    token, _ = api_token_create(username=user.username, password=PASSWORD)
    created = ApiClient(token).post("/payments/create/", book(workshop, apply_credits=True))
    assert created.status_code == 201, created.content
    order_id = created.json()["order_id"]
    assert balance_whole(user) == 0

    outcomes = in_threads(6, lambda i: order_cancel(order_id=order_id, user_id=user.pk))
    # One cancel wins; the others wait for it and answer as a repeat does (409).
    assert sum(isinstance(o, Order) for o in outcomes) == 1, outcomes
    assert all(isinstance(o, Order) or getattr(o, "status", None) == 409 for o in outcomes), (
        outcomes
    )
    assert Order.objects.get(pk=order_id).status == Order.Status.CANCELED
    assert balance_whole(user) == 25
    returned = CreditTransaction.objects.filter(
        account__user=user, kind=CreditTransaction.Kind.RETURN
    )
    assert returned.count() == 1


# --- what credits are worth, at the edges ---------------------------------------------


def split_order(api, service: Service) -> Order:
    """A new order paying `service` with the buyer's credits first; its answer shows the
    credits and the card's part as they were stored."""
    created = api.post("/payments/create/", book(service, apply_credits=True))
    assert created.status_code == 201, created.content
    order = Order.objects.get(pk=created.json()["order_id"])
    shown = created.json()["order"]
    assert (shown["credits"], shown["card_amount"]) == (order.credits, order.card_amount)
    return order


def test_a_buyer_without_credits_who_applies_them_pays_all_by_card(
    api, stripe_server, user, workshop
):
    order = split_order(api, workshop)
    assert (order.credits, order.credits_value, order.card_amount) == (0, 0, 4500)
    assert order.credits_reference == ""
    assert order.payments.get().amount == 4500
    assert not CreditTransaction.objects.exists()


def test_one_credit_pays_its_share_and_the_card_the_rest(api, stripe_server, user, workshop):
    fund(user, 1)
    order = split_order(api, workshop)
    # 1 of 40 credits is 112.5 cents: the card's 4387.5 is rounded up.
    assert (order.credits, order.credits_value, order.card_amount) == (1, 112, 4388)
    assert balance_whole(user) == 0


@pytest.mark.parametrize(("credits", "taken", "card"), [(9, 0, 100), (10, 10, 99)])
def test_credits_worth_less_than_a_cent_stay_with_the_buyer(
    api, stripe_server, user, credits, taken, card
):
    """At 1000 credits for 1.00 USD, nine credits are worth 0.9 cents: the card would pay
    all of it anyway, so the buyer keeps them; ten are worth a cent."""
    cheap = ServiceFactory(kind=Service.Kind.WORKSHOP, price=100, credit_price=1000)
    ServiceSessionFactory(service=cheap)
    fund(user, credits)
    order = split_order(api, cheap)
    assert (order.credits, order.card_amount) == (taken, card)
    assert order.payments.get().amount == card
    assert balance_whole(user) == credits - taken


def test_credits_given_back_worth_less_than_a_cent_still_refund_part_of_the_order(
    api, staff_api, stripe_server, user
):
    """15 credits at 1000 for 1.00 USD paid one cent of it. Ten of them back are worth no
    whole cent: the refund is of 0.00, yet the credits come back and the order is
    partially refunded, as is its booking; the rest back refunds it all."""
    cheap = ServiceFactory(kind=Service.Kind.WORKSHOP, price=100, credit_price=1000)
    ServiceSessionFactory(service=cheap)
    fund(user, 15)
    paid = api.post(
        "/payments/create/", book(cheap, apply_credits=True, payment_method_id="pm_card_visa")
    )
    assert paid.status_code == 201, paid.content
    order = Order.objects.get(pk=paid.json()["order_id"])
    assert (order.status, order.credits, order.credits_value) == (Order.Status.PAID, 15, 1)

    ten = staff_api.post(f"/payments/orders/{order.pk}/refunds/", {"credits": 10})
    assert ten.status_code == 201, ten.content
    assert (ten.json()["method"], ten.json()["amount"], ten.json()["credits"]) == (
        "credits",
        0,
        10,
    )
    assert ten.json()["applied"] is True
    order.refresh_from_db()
    assert order.status == Order.Status.PARTIALLY_REFUNDED
    assert balance_whole(user) == 10
    assert Booking.objects.get(order_id=order.pk).status == Booking.Status.PARTIALLY_REFUNDED
    entries = api.get("/credits/transactions/").json()["items"]
    assert (entries[0]["amount"], entries[0]["memo"]) == (
        10,
        f"Refund of order {order.pk}: credits given back",
    )

    rest = staff_api.post(f"/payments/orders/{order.pk}/refunds/", {})
    assert rest.status_code == 201, rest.content
    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
    assert sorted(order.refunds.values_list("method", "amount", "credits")) == [
        ("card", 99, 0),
        ("credits", 0, 10),
        ("credits", 1, 5),
    ]
    assert balance_whole(user) == 15
    assert Booking.objects.get(order_id=order.pk).status == Booking.Status.CANCELED


def test_a_part_of_a_split_order_in_dinars_goes_to_the_card_in_whole_fils_steps(
    api, staff_api, stripe_server, user
):
    """10.000 KWD or 2 credits, paid with 1 credit and 5.000 by card. Stripe takes dinars
    to three decimals with the last one 0: of a 3.330 refund the card's half, 1.665, is
    refunded as 1.660, and the 1.670 left is worth no whole credit."""
    dinars = ServiceFactory(kind=Service.Kind.WORKSHOP, price=10000, currency="kwd", credit_price=2)
    ServiceSessionFactory(service=dinars)
    fund(user, 1)
    paid = api.post(
        "/payments/create/", book(dinars, apply_credits=True, payment_method_id="pm_card_visa")
    )
    assert paid.status_code == 201, paid.content
    order = Order.objects.get(pk=paid.json()["order_id"])
    assert (order.status, order.credits, order.card_amount) == (Order.Status.PAID, 1, 5000)

    part = staff_api.post(f"/payments/orders/{order.pk}/refunds/", {"amount": "3.330"})
    assert part.status_code == 201, part.content
    assert list(order.refunds.values_list("method", "amount", "credits")) == [("card", 1660, 0)]
    assert balance_whole(user) == 0


def test_credits_are_not_applied_to_checkout_422(api, stripe_server, user, workshop):
    fund(user, 40)
    refused = api.post(
        "/payments/create/", book(workshop, apply_credits=True, payment_type="checkout")
    )
    assert refused.status_code == 422, refused.content
    assert refused.json()["extra"]["field"] == "apply_credits"
    assert not Order.objects.exists()
    assert balance_whole(user) == 40


@pytest.mark.parametrize("credits", [0, -1, True, 1.5, "40"])
def test_a_credit_price_that_is_not_a_positive_whole_number_is_refused(user, credits):
    from tests.billing.test_orders import Quoted, buy_quoted

    fund(user, 40)
    for payment_type in (Order.PaymentType.CREDITS, Order.PaymentType.INTENT):
        with pytest.raises(TypeError):
            buy_quoted(
                user,
                Quoted(1000, credits=credits),
                payment_type=payment_type,
                apply_credits=payment_type == Order.PaymentType.INTENT,
            )
    assert not Order.objects.exists()
    assert balance_whole(user) == 40


# --- the sweep of unpaid orders holding credits ---------------------------------------


def test_the_sweep_takes_back_credits_held_longer_than_thirty_minutes_and_nothing_else(
    api, stripe_server, user, workshop
):
    fund(user, 1)
    holding = split_order(api, workshop)
    card_only = Order.objects.get(
        pk=api.post("/payments/create/", book(workshop)).json()["order_id"]
    )
    assert (holding.credits, card_only.credits) == (1, 0)
    due = holding.created_at + timedelta(minutes=30)
    assert orders_holding_credits_expire(now=due) == 0  # thirty minutes exactly: not yet
    assert orders_holding_credits_expire(now=due + timedelta(microseconds=1)) == 1
    assert Order.objects.get(pk=holding.pk).status == Order.Status.CANCELED
    assert balance_whole(user) == 1
    later = card_only.created_at + timedelta(hours=2)
    assert orders_holding_credits_expire(now=later) == 0
    assert Order.objects.get(pk=card_only.pk).status == Order.Status.PENDING


def test_an_order_the_sweep_cannot_cancel_does_not_stop_it(api, stripe_server, user, workshop):
    fund(user, 1)
    stuck = split_order(api, workshop)
    credits_grant(user_id=user.pk, amount=1, reference=f"fund-{user.pk}-again")
    fine = split_order(api, workshop)
    assert (stuck.credits, fine.credits) == (1, 1)
    # Stripe no longer knows the first one's PaymentIntent: its cancel fails.
    stuck.payments.update(stripe_payment_intent_id="pi_3UnknownToStripe")
    later = timezone.now() + timedelta(hours=2)
    assert orders_holding_credits_expire(now=later) == 1
    assert Order.objects.get(pk=stuck.pk).status == Order.Status.PENDING
    assert Order.objects.get(pk=fine.pk).status == Order.Status.CANCELED
    assert balance_whole(user) == 1


@pytest.mark.parametrize("minutes", [None, 45])
def test_the_hold_is_what_the_settings_name_else_thirty_minutes(
    api, stripe_server, user, workshop, settings, minutes
):
    tollgate = {k: v for k, v in settings.TOLLGATE.items() if k != "CREDITS_HOLD_MINUTES"}
    if minutes is not None:
        tollgate["CREDITS_HOLD_MINUTES"] = minutes
    settings.TOLLGATE = tollgate
    fund(user, 1)
    holding = split_order(api, workshop)
    due = holding.created_at + timedelta(minutes=minutes or 30)
    assert orders_holding_credits_expire(now=due) == 0
    assert orders_holding_credits_expire(now=due + timedelta(microseconds=1)) == 1
    assert balance_whole(user) == 1
