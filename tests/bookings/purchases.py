"""Buying bookable services over HTTP, for the end-to-end tests of the bookable types."""

from __future__ import annotations

from typing import Any

import requests
import stripe
from django.conf import settings

from billing.models import Order
from bookings.models import Service
from kernel.money import from_minor
from platform_core.auth import api_token_create
from tests.bookings.times import at, iso
from tests.conftest import PASSWORD

KINDS = ["session", "workshop", "course", "package", "bundle"]


class Http:
    """A bearer-token client of the live server's /api/v1/."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base + "/api/v1"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def post(self, path: str, body: dict[str, Any]) -> requests.Response:
        return self.session.post(self.base + path, json=body, timeout=30)

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.base + path, timeout=30)


def http_for(live_server, user) -> Http:
    raw, _ = api_token_create(username=user.username, password=PASSWORD)
    return Http(live_server.url, raw)


def stripe_client() -> stripe.StripeClient:
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
    )


def purchase(service: Service, scheduling: dict | None = None, **more: Any) -> dict[str, Any]:
    """A direct-purchase body naming only the service, paid at once with a test card."""
    body = {
        "service_id": service.pk,
        "payment_type": "intent",
        "amount": str(from_minor(service.price, service.currency)),  # as a client sends
        "payment_method_id": "pm_card_visa",
        **more,
    }
    if scheduling:
        body["scheduling_data"] = scheduling
    return body


def bookable(kind: str, request) -> tuple[Service, dict]:
    """A service of `kind` and the scheduling a buyer sends for it."""
    if kind == "session":
        return request.getfixturevalue("one_on_one"), {"start_datetime": iso(at(10))}
    if kind == "workshop":
        workshop = request.getfixturevalue("workshop")
        return workshop, {"service_session_id": workshop.sessions.get().pk}
    if kind in ("package", "bundle"):
        call = request.getfixturevalue("one_on_one")
        items = [{"service_id": call.pk, "start_datetime": iso(at(10))}]
        return request.getfixturevalue(kind), {"items": items}
    return request.getfixturevalue(kind), {}


def bought(http: Http, service: Service, scheduling: dict) -> Order:
    resp = http.post("/payments/create/", purchase(service, scheduling))
    assert resp.status_code == 201, resp.text
    assert resp.json()["status"] == "paid"
    return Order.objects.get(pk=resp.json()["order_id"])
