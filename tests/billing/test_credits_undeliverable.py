"""An order paid partly with credits that cannot be delivered gives back both parts; one
paid only with credits is never created."""

from __future__ import annotations

import pytest

from billing.models import Order, Refund
from billing.services.refunds import refund_apply, refund_submit
from credits.selectors import credits_balance_get, credits_ledger_sum
from credits.services import credits_grant
from purchasables import hookimpl
from purchasables.errors import FulfilmentImpossibleError
from purchasables.registry import registry
from purchasables.types import PurchaseType, Quote

pytestmark = pytest.mark.django_db


class SoldOut:
    """Sold for 15.00 USD or 30 credits; its stock ran out before the payment arrived."""

    @hookimpl
    def tollgate_purchase_types(self):
        return [PurchaseType(name="sold-out", order_type="direct", label="Sold out")]

    @hookimpl
    def tollgate_quote(self, request):
        return Quote(amount=1500, currency="usd", description="the last one", credits=30)

    @hookimpl
    def tollgate_fulfil(self, order):
        raise FulfilmentImpossibleError("The last one was taken while you paid.")

    @hookimpl
    def tollgate_refund(self, order, refund):
        return {"reversed": "nothing to reverse", "credits": refund.credits}


@pytest.fixture
def sold_out():
    with registry.plugin_registered(SoldOut(), name="sold-out"):
        yield


def balance(user) -> int:
    value = credits_balance_get(user_id=user.pk)
    assert value == credits_ledger_sum(user_id=user.pk)
    return value


def test_both_parts_of_a_split_order_go_back_when_it_cannot_be_delivered(
    api, user, stripe_server, sold_out
):
    credits_grant(user_id=user.pk, amount=10, reference="fund")
    body = api.post(
        "/payments/create/",
        {"purchase_type": "sold-out", "apply_credits": True, "payment_method_id": "pm_card_visa"},
    ).json()
    order = Order.objects.get(pk=body["order_id"])
    assert order.status == Order.Status.PAID
    assert (order.credits, order.credits_value, order.card_amount) == (10, 500, 1000)
    assert balance(user) == 0
    card = Refund.objects.get(order=order, method=Refund.Method.CARD)
    credits = Refund.objects.get(order=order, method=Refund.Method.CREDITS)
    assert (card.amount, card.source) == (1000, Refund.Source.AUTOMATIC)
    assert (credits.amount, credits.credits, credits.applied_at) == (500, 10, None)

    # What the worker runs.
    assert refund_submit(refund_id=card.pk).status == "succeeded"
    refund_apply(refund_id=credits.pk)
    refund_apply(refund_id=credits.pk)  # a retry changes nothing
    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
    assert balance(user) == 10
    assert sum(r.amount for r in order.refunds.all()) == order.amount


class SoldOutAtLength(SoldOut):
    """As SoldOut, with a reason longer than an order or a refund keeps."""

    reason = "The last one was taken while you paid; " + "sorry for the trouble. " * 30

    @hookimpl
    def tollgate_fulfil(self, order):
        raise FulfilmentImpossibleError(self.reason)


def test_a_long_reason_for_an_undeliverable_order_is_kept_to_its_first_500_characters(
    api, user, stripe_server
):
    credits_grant(user_id=user.pk, amount=10, reference="fund")
    with registry.plugin_registered(SoldOutAtLength(), name="sold-out"):
        body = api.post(
            "/payments/create/",
            {
                "purchase_type": "sold-out",
                "apply_credits": True,
                "payment_method_id": "pm_card_visa",
            },
        ).json()
    order = Order.objects.get(pk=body["order_id"])
    kept = SoldOutAtLength.reason[:500]
    assert len(SoldOutAtLength.reason) > len(kept) == 500
    assert order.failure_message == kept
    assert sorted(order.refunds.values_list("method", "reason")) == [
        (Refund.Method.CARD, kept),
        (Refund.Method.CREDITS, kept),
    ]


def test_credits_on_their_way_back_from_an_undelivered_order_are_not_refunded_again(
    api, staff_api, user, stripe_server, sold_out
):
    """Until the worker applies the automatic give-back, staff asking for the order's
    credits (or all that is left) are refused: the credits come back once."""
    credits_grant(user_id=user.pk, amount=10, reference="fund")
    body = api.post(
        "/payments/create/",
        {"purchase_type": "sold-out", "apply_credits": True, "payment_method_id": "pm_card_visa"},
    ).json()
    order = Order.objects.get(pk=body["order_id"])
    pending = Refund.objects.get(order=order, method=Refund.Method.CREDITS)
    assert pending.applied_at is None

    again = staff_api.post(f"/payments/orders/{order.pk}/refunds/", {"credits": 5})
    assert again.status_code == 409, again.content
    assert again.json()["extra"]["credits_refundable"] == 0
    everything = staff_api.post(f"/payments/orders/{order.pk}/refunds/", {})
    assert everything.status_code == 409, everything.content
    assert Refund.objects.filter(order=order).count() == 2
    assert balance(user) == 0

    refund_apply(refund_id=pending.pk)
    assert balance(user) == 10


def test_an_order_paid_only_with_credits_that_cannot_be_delivered_is_not_created(
    api, user, stripe_server, sold_out
):
    credits_grant(user_id=user.pk, amount=30, reference="fund")
    refused = api.post(
        "/payments/create/", {"purchase_type": "sold-out", "payment_type": "credits"}
    )
    assert refused.status_code == 409, refused.content
    assert refused.json()["code"] == "fulfilment_impossible"
    assert not Order.objects.exists()
    assert balance(user) == 30
