"""Tollgate's test kit: a pytest plugin for a purchase type's own test suite.

A third-party package tests against a live Tollgate from its own folder with two
lines of configuration::

    # pyproject.toml
    [tool.pytest.ini_options]
    DJANGO_SETTINGS_MODULE = "tollgate_testing.settings"
    addopts = "-p tollgate_testing"

It needs Tollgate installed with its `local` (or `dev`) extra, and pytest-django.
The settings pick the database as `make test` does (`DATABASE_URL`, else the
PostgreSQL at 127.0.0.1:5432, else an embedded one) and set test values for
every secret. The fixtures:

- `tollgate_stripe`: the development Stripe of this test session, emptied for
  the test (`.clear()`, `.register_webhook()`, `.authenticate_3ds()`);
- `tollgate_live_stripe`: the same, sending its signed webhooks to the test's
  live server (use `@pytest.mark.django_db(transaction=True)`);
- `tollgate_buyer`: a user with a bearer token (`.user`, `.api` speaking JSON to
  `/api/v1/`, `.password`);
- `tollgate_deliver`: posts a Stripe event to the webhook, signed as Stripe signs it;
- `tollgate_process`: runs the event worker until a Stripe event is processed, in
  this process, and answers the stored event;
- `tollgate_wait_for_event`: waits until the development Stripe's delivery of an
  event type about an object has been stored, and answers it.

The rule: everything a test reaches goes through Tollgate's public surfaces (the
HTTP API, the webhook, the plugin hooks), as in production.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tollgate_testing.api import ApiClient, Buyer
from tollgate_testing.events import deliver, event, process, wait_for_event
from tollgate_testing.stripe_server import DevStripe, fail_on_violations

__all__ = ["ApiClient", "Buyer", "DevStripe", "deliver", "event", "process", "wait_for_event"]

WEBHOOK_PATH = "/api/v1/payments/webhook/"


@pytest.fixture(scope="session")
def tollgate_stripe_session() -> Iterator[DevStripe]:
    """The development Stripe of this test session, on a free loopback port."""
    from django.conf import settings

    server = DevStripe.start()
    previous = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = server.base
    try:
        yield server
    finally:
        settings.STRIPE_API_BASE = previous
        server.stop()


@pytest.fixture
def tollgate_stripe(tollgate_stripe_session: DevStripe) -> Iterator[DevStripe]:
    """The development Stripe, emptied for this test; the test fails when anything it
    sent breaks the pinned API version's parameters."""
    tollgate_stripe_session.clear()
    tollgate_stripe_session.violations()
    yield tollgate_stripe_session
    fail_on_violations(tollgate_stripe_session.violations(), "this test")


@pytest.fixture
def tollgate_live_stripe(live_server, tollgate_stripe: DevStripe) -> Iterator[DevStripe]:
    """The development Stripe delivering signed webhooks to this test's live server.

    Afterwards its receiver points at the discard port: a late delivery must not land
    in a later test's server.
    """
    from django.conf import settings

    secret = settings.STRIPE_WEBHOOK_SECRETS[0]
    tollgate_stripe.register_webhook("tollgate-testing", live_server.url + WEBHOOK_PATH, secret)
    yield tollgate_stripe
    tollgate_stripe.register_webhook("tollgate-testing", "http://127.0.0.1:9/", secret)


@pytest.fixture
def tollgate_buyer(db) -> Buyer:
    """A new user who can buy: `.api` carries their bearer token."""
    return Buyer.create()


@pytest.fixture
def tollgate_deliver() -> Callable[..., Any]:
    """`deliver(event_dict)`: POST it to the webhook, signed; answers the response."""
    return deliver


@pytest.fixture
def tollgate_process() -> Callable[..., Any]:
    """`process(stripe_event_id)`: run the worker until it is processed; the StripeEvent."""
    return process


@pytest.fixture
def tollgate_wait_for_event() -> Callable[..., Any]:
    """`wait_for_event(type, object_id)`: the stored event, once Stripe delivered it."""
    return wait_for_event
