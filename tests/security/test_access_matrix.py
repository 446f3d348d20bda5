"""Who may call what: every operation in /api/v1/openapi.json × {anonymous, owner,
another user, staff}: a user reaches only their own things; staff-only is staff-only.

The operations come from the schema itself, so an endpoint added without a row
in `MATRIX` fails here until someone decides who may call it. Each row pins the
status every actor gets, against real objects of the owner's (an order paid at
localstripe, a saved card, a subscription, bookings), made through the API or
the services. Actors that must be refused go first, so a wrongly allowed
mutation shows up as a wrong status rather than being hidden by a later one.

Staff is "another user" for everyone's own data: the API shows staff only
their own orders, cards and bookings (the admin is where staff look at
others'); refunds, grants and the dashboard are for staff only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Group

from bookings.models import Service
from bookings.services.bookings import bookings_create_for_order
from bookings.services.holds import seat_holds_create
from credits.models import CreditLot, Plan
from credits.services import credits_grant
from platform_core.api import api as ninja_api
from platform_core.auth import api_token_create
from tests.billing.conftest import stripe_plan_create
from tests.billing.test_cards import add_card_via_setup_intent
from tests.bookings.factories import (
    AvailabilityWindowFactory,
    PackageItemFactory,
    ServiceFactory,
    ServiceSessionFactory,
)
from tests.bookings.seat_checks import plan_for
from tests.bookings.times import at, iso
from tests.conftest import PASSWORD, ApiClient

pytestmark = pytest.mark.django_db

ACTORS = ("anon", "owner", "other", "staff")
PREFIX = "/api/v1"
BUY_10 = {"is_credit_purchase": True, "credit_amount": 10}


def schema_operations() -> list[tuple[str, str]]:
    schema = ninja_api.get_openapi_schema()
    return sorted(
        (method.upper(), path.removeprefix(PREFIX))
        for path, operations in schema["paths"].items()
        for method in operations
    )


OPERATIONS = schema_operations()


class World:
    """The actors and the owner's objects, each made the first time a row asks for it."""

    def __init__(self, user, other_user, staff_user, stripe_server) -> None:
        self.users = {"owner": user, "other": other_user, "staff": staff_user}
        # Staff as a real deployment has them: in the finance role.
        staff_user.groups.add(Group.objects.get(name="finance"))
        self.clients = {"anon": ApiClient()}
        for actor, who in self.users.items():
            self.clients[actor] = ApiClient(
                api_token_create(username=who.username, password=PASSWORD)[0]
            )
        self.owner = user

    @functools.cached_property
    def order(self) -> dict:
        """The owner's unpaid order, with its PaymentIntent at localstripe."""
        resp = self.clients["owner"].post("/payments/create/", BUY_10)
        assert resp.status_code == 201, resp.content
        return resp.json()

    @functools.cached_property
    def paid_order(self) -> dict:
        resp = self.clients["owner"].post(
            "/payments/create/", {**BUY_10, "payment_method_id": "pm_card_visa"}
        )
        assert resp.status_code == 201 and resp.json()["status"] == "paid", resp.content
        return resp.json()

    def card_of(self, actor: str) -> dict:
        return add_card_via_setup_intent(self.clients[actor])["payment_methods"][0]

    @functools.cached_property
    def card(self) -> dict:
        return self.card_of("owner")

    @functools.cached_property
    def plan(self) -> Plan:
        plan = Plan.objects.create(
            name="Pro", stripe_price_id="plan_pro_monthly", amount=1900, credits_per_cycle=500
        )
        stripe_plan_create(plan)
        return plan

    @functools.cached_property
    def subscription(self) -> dict:
        self.card  # noqa: B018 - the subscription bills the owner's default card
        resp = self.clients["owner"].post("/payments/subscriptions/", {"plan_id": self.plan.pk})
        assert resp.status_code == 201, resp.content
        return resp.json()["subscription"]

    @functools.cached_property
    def workshop(self) -> Service:
        service = ServiceFactory(kind=Service.Kind.WORKSHOP, price=4500)
        ServiceSessionFactory(service=service, capacity=10)
        return service

    @functools.cached_property
    def coaching(self) -> Service:
        """A 1-on-1 service with free slots."""
        call = ServiceFactory(kind=Service.Kind.SESSION, price=8000, duration_minutes=60)
        AvailabilityWindowFactory(service=call, start=at(9), end=at(17))
        return call

    @functools.cached_property
    def package_booking(self):
        """The owner's package of 1-on-1 calls: the parent and an unscheduled unit."""
        call = ServiceFactory(kind=Service.Kind.SESSION, price=8000, duration_minutes=60)
        AvailabilityWindowFactory(service=call, start=at(9), end=at(17))
        package = ServiceFactory(kind=Service.Kind.PACKAGE, price=21000)
        PackageItemFactory(package=package, item_service=call, quantity=2)
        plan = plan_for(package)
        order_id = int(self.order["order_id"])
        seat_holds_create(order_id=order_id, user_id=self.owner.pk, plan=plan)
        parent, unit, *_ = bookings_create_for_order(
            order_id=order_id, user_id=self.owner.pk, plan=plan
        )
        return parent, unit

    def fund(self, actor: str) -> str:
        """Give the actor credits to spend; answers the ledger entry's reference."""
        return credits_grant(
            user_id=self.users[actor].pk, amount=50, reference=f"fund-{actor}"
        ).reference


Request = Callable[[World, str], tuple[str, Any]]


@dataclass(frozen=True)
class Row:
    """What each actor gets from one operation, and how to call it.

    `call(world, actor)` answers the concrete path and the body. `visible(world,
    body)` reads the ids a 2xx listing shows; with `owned(world)` the owner's
    object must be among the owner's ids and among nobody else's.
    """

    expect: dict[str, int]
    call: Request
    visible: Callable[[World, Any], set] | None = None
    owned: Callable[[World], Any] | None = None


def mine(status: int) -> dict[str, int]:
    """An operation on the caller's own data: every signed-in user, nobody else."""
    return {"anon": 401, "owner": status, "other": status, "staff": status}


def owners(status: int) -> dict[str, int]:
    """An operation on one of the owner's objects: others are told it does not exist."""
    return {"anon": 401, "owner": status, "other": 404, "staff": 404}


def staff_only(status: int) -> dict[str, int]:
    return {"anon": 401, "owner": 403, "other": 403, "staff": status}


def public(status: int) -> dict[str, int]:
    return dict.fromkeys(ACTORS, status)


def ids(items: list[dict], key: str = "id") -> set:
    return {item[key] for item in items}


def fixed(path: str, body: Any = None) -> Request:
    return lambda world, actor: (path, body)


def _token(world: World, actor: str):
    who = world.users.get(actor, world.owner)
    return "/auth/token/", {"username": who.username, "password": PASSWORD}


def _spend(world: World, actor: str):
    if actor != "anon":
        world.fund(actor)
    return "/credits/spend/", {"amount": 5, "reference": f"coffee-{actor}"}


def _subscribe(world: World, actor: str):
    if actor != "anon":
        world.card_of(actor)
    return "/payments/subscriptions/", {"plan_id": world.plan.pk}


def _unsigned_webhook(world: World, actor: str):
    return "/payments/webhook/", {"id": "evt_forged", "type": "payment_intent.succeeded"}


MATRIX: dict[tuple[str, str], Row] = {
    ("POST", "/auth/token/"): Row(public(201), _token),
    ("GET", "/catalog/"): Row(public(200), fixed("/catalog/")),
    ("POST", "/payments/create/"): Row(mine(201), fixed("/payments/create/", BUY_10)),
    ("GET", "/payments/orders/"): Row(
        mine(200),
        fixed("/payments/orders/"),
        visible=lambda w, body: ids(body["items"]),
        owned=lambda w: w.order["order_id"],
    ),
    ("GET", "/payments/orders/{order_id}/"): Row(
        owners(200), lambda w, a: (f"/payments/orders/{w.order['order_id']}/", None)
    ),
    ("POST", "/payments/orders/{order_id}/cancel/"): Row(
        owners(200), lambda w, a: (f"/payments/orders/{w.order['order_id']}/cancel/", {})
    ),
    ("POST", "/payments/orders/{order_id}/pay/"): Row(
        owners(200),
        lambda w, a: (
            f"/payments/orders/{w.order['order_id']}/pay/",
            {"payment_method_id": "pm_card_visa"},
        ),
    ),
    ("POST", "/payments/orders/{order_id}/refunds/"): Row(
        staff_only(201),
        lambda w, a: (f"/payments/orders/{w.paid_order['order_id']}/refunds/", {"amount": "0.50"}),
    ),
    ("GET", "/payments/methods/"): Row(
        mine(200),
        fixed("/payments/methods/"),
        visible=lambda w, body: ids(body["payment_methods"]),
        owned=lambda w: w.card["id"],
    ),
    ("POST", "/payments/methods/setup/"): Row(mine(201), fixed("/payments/methods/setup/")),
    ("POST", "/payments/methods/default/"): Row(
        owners(200),
        lambda w, a: ("/payments/methods/default/", {"payment_method_id": w.card["id"]}),
    ),
    ("DELETE", "/payments/methods/{card_id}/"): Row(
        owners(204), lambda w, a: (f"/payments/methods/{w.card['id']}/", None)
    ),
    ("GET", "/payments/subscriptions/"): Row(
        mine(200),
        fixed("/payments/subscriptions/"),
        visible=lambda w, body: ids(body["subscriptions"]),
        owned=lambda w: w.subscription["id"],
    ),
    ("POST", "/payments/subscriptions/"): Row(mine(201), _subscribe),
    ("DELETE", "/payments/subscriptions/{subscription_id}/"): Row(
        owners(200), lambda w, a: (f"/payments/subscriptions/{w.subscription['id']}/", None)
    ),
    # Each signed-in caller gets a portal session for their own Stripe customer.
    ("POST", "/payments/portal/"): Row(mine(200), fixed("/payments/portal/")),
    # No bearer token or session makes a delivery: only a Stripe signature does.
    ("POST", "/payments/webhook/"): Row(public(400), _unsigned_webhook),
    ("GET", "/credits/balance/"): Row(mine(200), fixed("/credits/balance/")),
    ("GET", "/credits/transactions/"): Row(
        mine(200),
        fixed("/credits/transactions/"),
        visible=lambda w, body: ids(body["items"], "reference"),
        owned=lambda w: w.fund("owner"),
    ),
    ("GET", "/credits/lots/"): Row(
        mine(200),
        fixed("/credits/lots/"),
        visible=lambda w, body: ids(body["items"], "id"),
        owned=lambda w: (
            CreditLot.objects.get(account__user=w.owner, entry__reference=w.fund("owner")).pk
        ),
    ),
    ("POST", "/credits/spend/"): Row(mine(201), _spend),
    ("POST", "/credits/grant/"): Row(
        staff_only(201),
        lambda w, a: ("/credits/grant/", {"user_id": w.owner.pk, "amount": 5, "memo": "goodwill"}),
    ),
    ("GET", "/bookings/services/"): Row(public(200), fixed("/bookings/services/")),
    ("GET", "/bookings/services/{service_id}/sessions/"): Row(
        public(200), lambda w, a: (f"/bookings/services/{w.workshop.pk}/sessions/", None)
    ),
    # Free 1-on-1 slots are public, like the sessions: no one's booking shows in them.
    ("GET", "/bookings/services/{service_id}/slots/"): Row(
        public(200), lambda w, a: (f"/bookings/services/{w.coaching.pk}/slots/", None)
    ),
    ("GET", "/bookings/"): Row(
        mine(200),
        fixed("/bookings/"),
        visible=lambda w, body: ids(body["items"]),
        owned=lambda w: w.package_booking[0].pk,
    ),
    ("GET", "/bookings/{booking_id}/"): Row(
        owners(200), lambda w, a: (f"/bookings/{w.package_booking[0].pk}/", None)
    ),
    ("POST", "/bookings/{booking_id}/schedule/"): Row(
        owners(200),
        lambda w, a: (
            f"/bookings/{w.package_booking[1].pk}/schedule/",
            {"start_datetime": iso(at(10))},
        ),
    ),
    ("GET", "/admin/dashboard/"): Row(staff_only(200), fixed("/admin/dashboard/")),
    ("GET", "/me/export/"): Row(
        mine(200),
        fixed("/me/export/"),
        visible=lambda w, body: ids(body["orders"]),
        owned=lambda w: w.order["order_id"],
    ),
}


def send(client: ApiClient, method: str, path: str, body: Any):
    if method == "GET":
        return client.get(path)
    if method == "DELETE":
        return client.delete(path)
    return client.post(path, body if body is not None else {})


def test_every_row_of_the_matrix_is_an_operation_of_the_schema():
    """A row for an operation that no longer exists is a hole someone thinks is covered."""
    assert set(MATRIX) <= set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_each_actor_gets_exactly_what_the_matrix_allows(
    method, path, user, other_user, staff_user, stripe_server
):
    row = MATRIX.get((method, path))
    assert row is not None, (
        f"{method} {path} has no row in the access matrix: decide who may call it "
        "(tests/security/test_access_matrix.py)"
    )
    world = World(user, other_user, staff_user, stripe_server)
    owned = row.owned(world) if row.owned else None
    # Refusals first, then the allowed calls, the owner's last (it may change the object).
    order = sorted(ACTORS, key=lambda a: (200 <= row.expect[a] < 300, a == "owner"))
    seen: dict[str, Any] = {}
    for actor in order:
        concrete, body = row.call(world, actor)
        resp = send(world.clients[actor], method, concrete, body)
        assert resp.status_code == row.expect[actor], (actor, method, concrete, resp.content)
        if resp.status_code >= 400 or resp.status_code == 501:
            assert set(resp.json()) == {"code", "message", "extra"}, resp.content
        elif row.visible is not None and resp.status_code != 204:
            seen[actor] = row.visible(world, resp.json())
    if owned is not None:
        assert owned in seen["owner"], "the owner does not see their own object"
        for actor in ("other", "staff"):
            assert owned not in seen[actor], f"{actor} sees the owner's object"
