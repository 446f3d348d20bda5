"""Fixtures for the whole suite: users, an API client, and localstripe over HTTP."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator

import pytest
from hypothesis import settings as hypothesis_settings

from platform_core.auth import api_token_create
from tests.factories import UserFactory
from tollgate_testing.api import ApiClient
from tollgate_testing.stripe_server import DevStripe
from tollgate_testing.stripe_server import fail_on_violations as _fail_on_violations

PASSWORD = "correct-horse-battery"

# Property and schema tests explore fresh inputs on a developer's machine, and
# replay one fixed set in CI, so a submission's result does not hang on a draw.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    """Every user and token hashes a password; PBKDF2's deliberate cost buys nothing here."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def other_user(db):
    return UserFactory()


@pytest.fixture
def staff_groups(db):
    """The "finance" and "support" groups, as their migration makes them (a
    transactional test's flush deletes what migrations wrote)."""
    from django.contrib.auth.models import Group, Permission

    groups = {}
    definitions = importlib.import_module("platform_core.migrations.0004_staff_groups").GROUPS
    # Plans moved from purchasables to credits after the groups were defined; a
    # later migration carried their permissions along.
    moved = {"purchasables": {"view_plan": "credits"}}
    for name, wanted in definitions.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(
            [
                p
                for app_then, codename in wanted
                if (app := moved.get(app_then, {}).get(codename, app_then))
                and (
                    p := Permission.objects.filter(
                        content_type__app_label=app, codename=codename
                    ).first()
                )
            ]
        )
        groups[name] = group
    return groups


@pytest.fixture
def staff_user(staff_groups):
    """A member of the "finance" staff group (refunds, grants, the dashboard)."""
    user = UserFactory(is_staff=True)
    user.groups.add(staff_groups["finance"])
    return user


@pytest.fixture
def support_user(staff_groups):
    """A member of the "support" staff group: reads, never moves money."""
    user = UserFactory(is_staff=True)
    user.groups.add(staff_groups["support"])
    return user


def client_for(user) -> ApiClient:
    raw, _ = api_token_create(username=user.username, password=PASSWORD)
    return ApiClient(raw)


@pytest.fixture
def api(user) -> ApiClient:
    return client_for(user)


@pytest.fixture
def other_api(other_user) -> ApiClient:
    return client_for(other_user)


@pytest.fixture
def staff_api(staff_user) -> ApiClient:
    return client_for(staff_user)


@pytest.fixture
def anon_api() -> ApiClient:
    return ApiClient()


# --- the development Stripe -----------------------------------------------------------


@pytest.fixture(scope="session")
def localstripe() -> Iterator[DevStripe]:
    """The development Stripe of this test session's own, on a free loopback port."""
    from django.conf import settings

    server = DevStripe.start()
    previous = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = server.base
    try:
        yield server
        _fail_on_violations(server.violations(), "this test session")
    finally:
        settings.STRIPE_API_BASE = previous
        server.stop()


@pytest.fixture
def stripe_server(localstripe: DevStripe) -> Iterator[DevStripe]:
    """The development Stripe, emptied for this test. The test fails when anything it sent
    breaks the pinned API version's parameters (the development Stripe records each one)."""
    localstripe.clear()
    localstripe.violations()
    yield localstripe
    _fail_on_violations(localstripe.violations(), "this test")
