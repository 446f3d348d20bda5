"""Fixtures for the whole suite: users, an API client, and localstripe over HTTP."""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.test import Client
from hypothesis import settings as hypothesis_settings

from platform_core.auth import api_token_create
from tests.factories import UserFactory

PASSWORD = "correct-horse-battery"

# Property and schema tests explore fresh inputs on a developer's machine, and
# replay one fixed set in CI, so a submission's result does not hang on a draw.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


class ApiClient:
    """Django's test client speaking JSON to /api/v1/, optionally with a bearer token."""

    def __init__(self, token: str | None = None) -> None:
        self.client = Client()
        self.token = token

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        out = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return {**out, **(headers or {})}

    def get(self, path: str, **params: Any):
        return self.client.get("/api/v1" + path, params, headers=self._headers(None))

    def post(self, path: str, body: Any = None, *, raw: bytes | None = None, headers=None):
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.post(
            "/api/v1" + path, data, content_type="application/json", headers=self._headers(headers)
        )

    def delete(self, path: str):
        return self.client.delete("/api/v1" + path, headers=self._headers(None))


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
    for name, wanted in definitions.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(
            [
                p
                for app, codename in wanted
                if (
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


# --- localstripe -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalStripe:
    def __init__(self, base: str) -> None:
        self.base = base

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> bytes:
        resp = requests.request(
            method,
            self.base + path,
            data=form,
            headers={"Authorization": "Bearer sk_test_localstripe"},
            timeout=10,
        )
        resp.raise_for_status()
        return resp.content

    def clear(self) -> None:
        self.request("DELETE", "/_config/data")

    def violations(self) -> list[dict[str, str]]:
        """The requests the pinned API version would have refused, since the last call,
        each with its method, path and what was wrong (and empties the list)."""
        found = json.loads(self.request("GET", "/_config/pinned/violations"))
        self.request("DELETE", "/_config/pinned/violations")
        return found

    def register_webhook(self, name: str, url: str, secret: str) -> None:
        self.request("POST", f"/_config/webhooks/{name}", {"url": url, "secret": secret})

    def authenticate_3ds(self, payment_intent_id: str, client_secret: str, success: bool) -> None:
        """What the customer does in Stripe's 3-D Secure modal (localstripe's own route)."""
        flag = "true" if success else "false"
        self.request(
            "POST",
            f"/v1/payment_intents/{payment_intent_id}/_authenticate?success={flag}",
            {"client_secret": client_secret},
        )


@pytest.fixture(scope="session")
def localstripe() -> Iterator[LocalStripe]:
    """A localstripe process of this test session's own, on a free loopback port."""
    from django.conf import settings

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstripe", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("localstripe did not start") from None
            time.sleep(0.05)
    previous = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = base
    server = LocalStripe(base)
    try:
        yield server
        _fail_on_violations(server.violations(), "this test session")
    finally:
        settings.STRIPE_API_BASE = previous
        proc.terminate()
        proc.wait(timeout=10)


def _fail_on_violations(found: list[dict[str, str]], where: str) -> None:
    if found:
        lines = "\n".join(f"  {v['method']} {v['path']}: {v['violation']}" for v in found)
        pytest.fail(
            f"{where} sent Stripe requests the pinned API version refuses:\n{lines}",
            pytrace=False,
        )


@pytest.fixture
def stripe_server(localstripe: LocalStripe) -> Iterator[LocalStripe]:
    """localstripe, emptied for this test. The test fails when anything it sent breaks
    the pinned API version's parameters (the development Stripe records each one)."""
    localstripe.clear()
    localstripe.violations()
    yield localstripe
    _fail_on_violations(localstripe.violations(), "this test")
