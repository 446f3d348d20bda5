"""What an order delivered, shown to its buyer by the plugin that owns it."""

from __future__ import annotations

import pytest

from purchasables import hookimpl
from purchasables.registry import registry
from purchasables.types import DeliveryLine, PurchaseType, Quote
from tests.bookings.purchases import bookable, bought

pytest_plugins = ["tests.bookings.fixtures"]

BUY_100 = {"is_credit_purchase": True, "credit_amount": 100, "amount": "10.00"}


def test_a_paid_credit_order_shows_the_credits_it_added(api, stripe_server):
    body = api.post("/payments/create/", {**BUY_100, "payment_method_id": "pm_card_visa"}).json()
    assert body["status"] == "paid", body

    order = api.get(f"/payments/orders/{body['order_id']}/").json()

    assert order["delivered"] == [{"label": "Credits added", "value": "100"}]


def test_an_unpaid_order_has_delivered_nothing_and_lists_show_no_delivery(api, stripe_server):
    body = api.post("/payments/create/", BUY_100).json()

    assert api.get(f"/payments/orders/{body['order_id']}/").json()["delivered"] == []
    [listed] = api.get("/payments/orders/").json()["items"]
    assert listed["delivered"] is None


def test_another_users_order_shows_them_nothing(api, other_api, stripe_server):
    body = api.post("/payments/create/", {**BUY_100, "payment_method_id": "pm_card_visa"}).json()

    resp = other_api.get(f"/payments/orders/{body['order_id']}/")

    assert resp.status_code == 404
    assert "delivered" not in resp.json()


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_workshop_order_shows_its_booking(request, http, stripe_server, user):
    service, scheduling = bookable("workshop", request)
    order = bought(http, service, scheduling)

    [line] = http.get(f"/payments/orders/{order.pk}/").json()["delivered"]

    assert line["label"].startswith("Booking #")
    assert service.name in line["value"] and "(confirmed)" in line["value"]


class Shown:
    """A plugin whose delivery lines are whatever the test sets."""

    def __init__(self, lines: object) -> None:
        self.lines = lines
        self.told: list = []

    @hookimpl
    def tollgate_purchase_types(self):
        return [PurchaseType(name="test-shown", order_type="direct", label="Shown")]

    @hookimpl
    def tollgate_quote(self, request):
        return Quote(amount=500, currency="usd", description="A shown thing")

    @hookimpl
    def tollgate_fulfil(self, order):
        return {"made": True}

    @hookimpl
    def tollgate_delivered(self, order, fulfilment):
        self.told.append(fulfilment)
        return self.lines


def test_the_plugin_is_told_what_its_fulfilment_returned(api, stripe_server):
    plugin = Shown([DeliveryLine("Made", "yes")])
    with registry.plugin_registered(plugin, name="test-shown"):
        body = api.post(
            "/payments/create/",
            {"purchase_type": "test-shown", "payment_method_id": "pm_card_visa"},
        ).json()
        order = api.get(f"/payments/orders/{body['order_id']}/").json()

    assert order["delivered"] == [{"label": "Made", "value": "yes"}]
    assert plugin.told == [{"made": True}]


def test_a_plugin_answering_something_else_costs_its_lines_not_the_page(api, stripe_server, caplog):
    plugin = Shown([{"label": "Made", "value": "yes"}])
    with registry.plugin_registered(plugin, name="test-shown"):
        body = api.post("/payments/create/", {"purchase_type": "test-shown"}).json()
        resp = api.get(f"/payments/orders/{body['order_id']}/")

    assert resp.status_code == 200
    assert resp.json()["delivered"] == []
    assert "list of DeliveryLine" in caplog.text
