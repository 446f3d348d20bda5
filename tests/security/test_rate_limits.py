"""Rate limits on the token and create endpoints: 429, `Retry-After`, the error shape.

The counters are rows in the database, so they hold across web processes; the
last test proves it with real threads on their own connections.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.test import Client

from billing.models import Order
from platform_core.ratelimit.models import RateLimitWindow
from platform_core.ratelimit.services import RateLimitConfigError, rate_parse
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

BUY_10 = {"is_credit_purchase": True, "credit_amount": 10}


@pytest.fixture
def limits(settings):
    def set_limits(**rates: str) -> None:
        settings.TOLLGATE = {
            **settings.TOLLGATE,
            "RATE_LIMITS": {**settings.TOLLGATE["RATE_LIMITS"], **rates},
        }

    return set_limits


def token_request(client: Client, username: str, password: str = PASSWORD, **meta):
    return client.post(
        "/api/v1/auth/token/",
        {"username": username, "password": password},
        content_type="application/json",
        **meta,
    )


def assert_rate_limited(resp, period: int = 3600) -> int:
    assert resp.status_code == 429, resp.content
    body = resp.json()
    assert body["code"] == "rate_limited"
    assert set(body) == {"code", "message", "extra"}
    retry_after = int(resp["Retry-After"])
    assert 1 <= retry_after <= period
    assert body["extra"]["retry_after"] == retry_after
    return retry_after


def fresh_window(period: int) -> None:
    """Wait for the next window if this one ends within two seconds, so a test's
    requests all fall in one window."""
    left = period - time.time() % period
    if left < 2:
        time.sleep(left + 0.05)


def test_retry_after_says_when_the_window_ends(limits, user):
    limits(auth_token="1/min")
    fresh_window(60)
    assert token_request(Client(), user.username).status_code == 201
    refused = token_request(Client(), user.username)
    expected = 60 - int(time.time()) % 60
    assert assert_rate_limited(refused, period=60) in (expected, expected + 1)


def test_tokens_past_the_rate_are_refused_with_retry_after(limits, user):
    limits(auth_token="3/hour")
    client = Client()
    assert [token_request(client, user.username).status_code for _ in range(3)] == [201] * 3
    assert_rate_limited(token_request(client, user.username))
    # The right password does not get past the limit either: guessing is what it stops.
    assert_rate_limited(token_request(client, user.username, "wrong"))


def test_wrong_passwords_count_toward_the_limit(limits, user):
    limits(auth_token="2/hour")
    client = Client()
    assert token_request(client, user.username, "guess-1").status_code == 401
    assert token_request(client, user.username, "guess-2").status_code == 401
    assert_rate_limited(token_request(client, user.username, PASSWORD))


def test_the_token_limit_is_per_ip_and_username(limits, user, other_user):
    limits(auth_token="1/hour")
    assert token_request(Client(), user.username).status_code == 201
    assert token_request(Client(), user.username).status_code == 429
    # Another username from the same address, and the same username elsewhere, still work.
    assert token_request(Client(), other_user.username).status_code == 201
    assert token_request(Client(), user.username, REMOTE_ADDR="10.0.0.9").status_code == 201
    # Usernames are counted case-insensitively, as Django's login would not care either.
    assert token_request(Client(), user.username.upper()).status_code == 429


def test_a_forged_forwarded_for_header_does_not_reset_the_count(limits, user):
    limits(auth_token="1/hour")
    assert token_request(Client(), user.username).status_code == 201
    forged = token_request(Client(), user.username, HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert forged.status_code == 429  # no trusted proxy: the header is the client's word


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_client(limits, user, settings):
    settings.TOLLGATE = {**settings.TOLLGATE, "TRUSTED_PROXIES": 1}
    limits(auth_token="1/hour")
    via_proxy = {"REMOTE_ADDR": "10.0.0.1"}
    first = token_request(Client(), user.username, HTTP_X_FORWARDED_FOR="198.51.100.1", **via_proxy)
    assert first.status_code == 201
    # The client may prepend anything; the address the proxy appended is the one counted.
    spoofed = token_request(
        Client(), user.username, HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.1", **via_proxy
    )
    assert spoofed.status_code == 429
    other = token_request(Client(), user.username, HTTP_X_FORWARDED_FOR="198.51.100.2", **via_proxy)
    assert other.status_code == 201


def test_creates_past_the_rate_are_refused_before_any_order_is_made(
    limits, api, other_api, stripe_server
):
    limits(payments_create="2/hour")
    assert [api.post("/payments/create/", BUY_10).status_code for _ in range(2)] == [201, 201]
    assert_rate_limited(api.post("/payments/create/", BUY_10))
    assert Order.objects.count() == 2
    # Per user: someone else is not held back.
    assert other_api.post("/payments/create/", BUY_10).status_code == 201


def test_a_limit_can_be_switched_off(limits, user):
    limits(auth_token="off")
    client = Client()
    assert {token_request(client, user.username).status_code for _ in range(12)} == {201}
    assert not RateLimitWindow.objects.exists()


def test_the_default_limits_are_on(settings):
    rates = settings.TOLLGATE["RATE_LIMITS"]
    assert rate_parse(rates["auth_token"]).limit <= 10
    assert rate_parse(rates["payments_create"]).limit <= 60


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10/min", (10, 60)), ("30/minute", (30, 60)), ("100/10m", (100, 600)), ("5/s", (5, 1)),
     ("2 / hour", (2, 3600)), ("off", None), ("", None)],
)  # fmt: skip
def test_rates_parse(text, expected):
    rate = rate_parse(text)
    assert (rate and (rate.limit, rate.period)) == expected


@pytest.mark.parametrize("text", ["10", "ten/min", "10/fortnight", "-1/min", "10/0m"])
def test_a_bad_rate_is_a_configuration_error(text):
    with pytest.raises(RateLimitConfigError):
        rate_parse(text)


def test_a_bad_rate_fails_the_system_checks(settings):
    from platform_core.ratelimit.checks import rate_limits_check

    settings.TOLLGATE = {**settings.TOLLGATE, "RATE_LIMITS": {"auth_token": "lots"}}
    [error] = rate_limits_check(None)
    assert error.id == "tollgate.E101"
    assert "auth_token" in error.msg


@pytest.mark.django_db(transaction=True)
def test_the_count_holds_across_concurrent_connections(limits, user):
    """Twenty requests at once, each on its own database connection (as separate web
    processes would be): exactly the limit get through."""
    limits(auth_token="5/hour")
    fresh_window(3600)
    barrier = threading.Barrier(20)
    statuses: list[int] = []

    def ask() -> None:
        try:
            barrier.wait(timeout=30)
            statuses.append(token_request(Client(), user.username).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [201] * 5 + [429] * 15


def test_the_counters_skip_the_write_ahead_log():
    """Each limited request commits its counter; unlogged, that commit does not wait for
    the disk. A crash empties the table, which only starts every window afresh."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relpersistence FROM pg_class WHERE relname = %s",
            [RateLimitWindow._meta.db_table],
        )
        assert cursor.fetchone() == ("u",)
