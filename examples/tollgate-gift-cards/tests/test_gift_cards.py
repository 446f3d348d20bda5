"""The gift-card purchase type, tested from its own package with Tollgate's test kit."""

from __future__ import annotations

import pytest
from tollgate_gift_cards.models import GiftCard

from tollgate_testing import event

BUY_25 = {
    "purchase_type": "gift_card",
    "service_data": {"value": 2500, "recipient_name": "Ada", "message": "Happy birthday"},
    "amount": "25.00",
}


def test_the_catalog_lists_gift_cards(tollgate_buyer):
    resp = tollgate_buyer.api.get("/catalog/")

    assert resp.status_code == 200
    types = {t["name"]: t for t in resp.json()["purchase_types"]}
    assert types["gift_card"]["order_type"] == "direct"


def test_a_value_off_the_steps_is_refused_before_stripe(tollgate_buyer):
    body = {**BUY_25, "service_data": {"value": 2550}, "amount": "25.50"}

    resp = tollgate_buyer.api.post("/payments/create/", body)

    assert resp.status_code == 422, resp.content
    assert GiftCard.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_card_is_bought_paid_and_issued_once(
    tollgate_buyer, tollgate_live_stripe, tollgate_wait_for_event, tollgate_process
):
    resp = tollgate_buyer.api.post(
        "/payments/create/", {**BUY_25, "payment_method_id": "pm_card_visa"}
    )

    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["status"] == "paid"
    card = GiftCard.objects.get()
    assert (card.order_id, card.value, card.status) == (body["order_id"], 2500, "active")
    # The buyer, and only the buyer, reads the card's code on their order.
    shown = tollgate_buyer.api.get(f"/payments/orders/{body['order_id']}/").json()["delivered"]
    assert {"label": "Gift card code", "value": card.code} in shown
    # Stripe's own webhook for the same payment arrives, is processed, and issues nothing more.
    stored = tollgate_wait_for_event("payment_intent.succeeded", body["payment_intent_id"])
    tollgate_process(stored.stripe_id)
    assert GiftCard.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_refund_made_in_stripe_voids_the_unredeemed_card(
    tollgate_buyer, tollgate_stripe, tollgate_deliver, tollgate_process
):
    body = tollgate_buyer.api.post(
        "/payments/create/", {**BUY_25, "payment_method_id": "pm_card_visa"}
    ).json()
    assert body["status"] == "paid", body
    refund = {
        "id": "re_giftcardtest0001",
        "object": "refund",
        "amount": 2500,
        "currency": "usd",
        "status": "succeeded",
        "payment_intent": body["payment_intent_id"],
        "charge": None,
        "metadata": {},
    }
    evt = event("refund.created", refund)

    assert tollgate_deliver(evt).status_code == 200
    tollgate_process(evt["id"])

    assert GiftCard.objects.get().status == "void"
    order = tollgate_buyer.api.get(f"/payments/orders/{body['order_id']}/").json()
    assert order["status"] == "refunded"
