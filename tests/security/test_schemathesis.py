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

import typing
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import Group
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from pydantic import BaseModel
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from platform_core.api import api as ninja_api
from platform_core.auth import api_token_create
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
