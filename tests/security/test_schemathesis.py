"""schemathesis against /api/v1/openapi.json: no 5xx, and every answer matches the schema.

In-process (the WSGI app, no server), authenticated with a bearer token of a
staff user in the finance role (so the staff-only operations run their code,
and every user-scoped one acts on that user's own data), against this test
session's localstripe. Each operation gets a bounded number of generated
requests, so it runs in CI in seconds. The webhook is left out: without
Stripe's signature every request is refused before any code of interest runs,
and tests/security/test_webhook_hostile.py covers it.

One 5xx is allowed: 501 `feature_unavailable`, which the schema declares where
the Stripe API in use has no such route (the customer portal). Anything else in the 500s
fails, 502 included: against localstripe it would mean we sent Stripe a request
it refused, which is ours to fix.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import Group
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import settings as settings_
from hypothesis import strategies as st
from pydantic import BaseModel
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bookings.models import Booking
from platform_core.api import api as ninja_api
from platform_core.auth import api_token_create
from tests.bookings.factories import ServiceFactory
from tests.conftest import PASSWORD
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

EXAMPLES_PER_OPERATION = 15


@pytest.fixture
def wsgi_app(db, settings, stripe_server) -> Iterator[WSGIHandler]:
    """The Django app, as a WSGI server would run it, inside this test's transaction."""
    # The suite's environment already serves plain HTTP; say so for a fresh handler too.
    settings.SECURE_SSL_REDIRECT = False
    # Hundreds of creates from one user in a second is what the limit is for; here
    # it would only hide the operation behind 429s (tests/security/test_rate_limits.py).
    settings.TOLLGATE = {
        **settings.TOLLGATE,
        "RATE_LIMITS": dict.fromkeys(settings.TOLLGATE["RATE_LIMITS"], "off"),
    }
    # As Django's test client does: a request must not close the connection that
    # holds the test's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield WSGIHandler()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def bearer(db) -> dict[str, str]:
    staff = UserFactory(is_staff=True)
    staff.groups.add(Group.objects.get(name="finance"))
    raw, _ = api_token_create(username=staff.username, password=PASSWORD)
    return {"Authorization": f"Bearer {raw}"}


# The schema the app serves at /api/v1/openapi.json, built without a request.
schema = schemathesis.openapi.from_dict(ninja_api.get_openapi_schema()).exclude(
    path="/api/v1/payments/webhook/"
)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_answers_every_generated_request_as_its_schema_says(case, wsgi_app, bearer):
    response = case.call(app=wsgi_app, headers=bearer)
    if response.status_code == 501:
        assert response.json()["code"] == "feature_unavailable", response.text
    else:
        case.validate_response(response, checks=[not_a_server_error])
    case.validate_response(
        response,
        checks=[status_code_conformance, content_type_conformance, response_schema_conformance],
    )


def test_no_two_schemas_share_an_openapi_name():
    """Components are keyed by class name: two classes of one name make one of them
    document the other's operations (billing's SubscriptionsOut once described the
    list of a user's subscriptions with the dashboard's fields)."""
    by_name: dict[str, set[type]] = {}

    def visit(annotation: Any) -> None:
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            for arg in typing.get_args(annotation):
                visit(arg)
            return
        classes = by_name.setdefault(annotation.__name__, set())
        if annotation not in classes:
            classes.add(annotation)
            for field in annotation.model_fields.values():
                visit(field.annotation)

    for router in ninja_api._get_bound_routers():  # how ninja itself walks them for the schema
        for path_view in router.path_operations.values():
            for operation in path_view.operations:
                # ninja wraps each response and each parameter source in a model of its
                # own; those are never components, what they hold is.
                responses = (operation.response_models or {}).values()
                wrappers = [model for model in responses if model is not None] + [
                    params for params in operation.models if params.__ninja_param_source__ == "body"
                ]
                for wrapper in wrappers:
                    for field in wrapper.model_fields.values():
                        visit(field.annotation)
    shared = {
        name: sorted(f"{c.__module__}.{c.__qualname__}" for c in classes)
        for name, classes in by_name.items()
        if len(classes) > 1
    }
    assert shared == {}


# --- what schemathesis does not generate ------------------------------------------
# Its JSON is what a JSON Schema allows, written by Python's `json.dumps`: never NaN
# or Infinity, never a lone surrogate, rarely U+0000, never a date at the calendar's
# edge. Here a valid body of each operation gets one of them in place of one of its
# values, or as a new member of one of its objects, so it reaches the code that
# stores what the client sent.

HOSTILE_JSON = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    '"\\ud800"',
    '"x\\udfff"',
    '"a\\u0000b"',
    '"9999-12-31T23:59:59-12:00"',
    '"0001-01-01T00:00:00+14:00"',
    '"9999-12-31"',
    "[" * 70 + "]" * 70,
]
_SLOT = "\x01slot\x01"  # a string no body holds, replaced by the hostile JSON text


def _body_operations() -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, operations in ninja_api.get_openapi_schema()["paths"].items()
        if path != "/api/v1/payments/webhook/"
        for method, operation in operations.items()
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    ]


def _valid_bodies(username: str, user_id: int, booking_id: int) -> dict[str, dict]:
    """A body each operation accepts, as far as its input goes."""
    return {
        "/api/v1/auth/token/": {"username": username, "password": PASSWORD, "name": "laptop"},
        "/api/v1/payments/create/": {
            "purchase_type": "gift_card",
            "amount": "25.00",
            "service_data": {"value": 2500, "recipient_name": "Ada", "message": "Hi"},
        },
        "/api/v1/payments/orders/{order_id}/refunds/": {"amount": "1.00", "reason": "asked"},
        "/api/v1/payments/methods/default/": {"payment_method_id": "pm_card_visa"},
        "/api/v1/payments/subscriptions/": {"plan_id": 1},
        "/api/v1/credits/spend/": {"amount": 1, "reference": "r-1", "memo": "m"},
        "/api/v1/credits/grant/": {"user_id": user_id, "amount": 5, "memo": "m"},
        "/api/v1/bookings/{booking_id}/schedule/": {"start_datetime": "2030-01-31T14:00:00Z"},
    }


def _places(value: Any, path: tuple = ()) -> list[tuple[tuple, str]]:
    """Where a hostile value can go: ("set", path) for each member, ("add", path) for
    each object."""
    found: list[tuple[tuple, str]] = []
    if isinstance(value, dict):
        found.append((path, "add"))
        for key, item in value.items():
            found.append(((*path, key), "set"))
            found.extend(_places(item, (*path, key)))
    return found


def _with_slot(body: dict, path: tuple, how: str) -> dict:
    body = json.loads(json.dumps(body))
    target = body
    for key in path[:-1] if how == "set" else path:
        target = target[key]
    target[path[-1] if how == "set" else "extra"] = _SLOT
    return body


@pytest.mark.parametrize(
    ("method", "path"), _body_operations(), ids=[" ".join(op) for op in _body_operations()]
)
def test_unstorable_json_and_edge_dates_are_a_4xx_on_every_body(
    method, path, staff_groups, stripe_server, settings
):
    settings.TOLLGATE = {
        **settings.TOLLGATE,
        "RATE_LIMITS": dict.fromkeys(settings.TOLLGATE["RATE_LIMITS"], "off"),
    }
    staff = UserFactory(is_staff=True)
    staff.groups.add(staff_groups["finance"])
    token, _ = api_token_create(username=staff.username, password=PASSWORD)
    booking = Booking.objects.create(user=staff, service=ServiceFactory(), order_id=1)
    base = _valid_bodies(staff.username, staff.pk, booking.pk).get(path, {})
    url = path.replace("{booking_id}", str(booking.pk))
    url = re.sub(r"\{[^}]+\}", "1", url)

    @given(place=st.sampled_from(_places(base)), hostile=st.sampled_from(HOSTILE_JSON))
    @settings_(max_examples=2 * EXAMPLES_PER_OPERATION, deadline=None, database=None)
    def check(place: tuple[tuple, str], hostile: str) -> None:
        body = json.dumps(_with_slot(base, *place)).replace(json.dumps(_SLOT), hostile)
        response = Client().generic(
            method,
            url,
            body.encode(),
            content_type="application/json",
            headers={"Authorization": f"Bearer {token}"},
        )
        # A date is only text where nothing reads it as a date: 2xx is an answer too.
        assert response.status_code < 500, (body, response.content)
        if response.status_code >= 400:
            assert set(response.json()) == {"code", "message", "extra"}

    check()
