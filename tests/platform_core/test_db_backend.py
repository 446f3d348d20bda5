"""The database backend pings a kept connection only after it idled (CONN_HEALTH_CHECKS)."""

from __future__ import annotations

import time

import pytest
from django.db import connection

from platform_core.db.base import HEALTH_CHECK_AFTER_IDLE

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def kept_connections(monkeypatch):
    """Connections kept across requests, as in production (the suite runs with 0)."""
    connection.close()
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 600)
    yield
    connection.close()


def _request(pings: list[int]) -> None:
    """What Django does around a request, then the request's first query."""
    connection.close_if_unusable_or_obsolete()  # request_started
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    connection.close_if_unusable_or_obsolete()  # request_finished


def test_a_connection_used_moments_ago_is_not_pinged_one_that_idled_is(monkeypatch):
    assert connection.health_check_enabled
    pings: list[int] = []
    real = connection.is_usable

    def counted() -> bool:
        pings.append(1)
        return real()

    monkeypatch.setattr(connection, "is_usable", counted)
    _request(pings)  # opens the connection
    kept = connection.connection
    pings.clear()

    for _ in range(5):  # back to back, as under load
        _request(pings)
    assert pings == []
    assert connection.connection is kept

    time.sleep(HEALTH_CHECK_AFTER_IDLE * 2)
    _request(pings)
    assert pings == [1]
    assert connection.connection is kept


def test_a_connection_that_failed_its_ping_is_replaced(monkeypatch):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    before = connection.connection
    time.sleep(HEALTH_CHECK_AFTER_IDLE * 2)
    monkeypatch.setattr(connection, "is_usable", lambda: False)  # as after a restart
    connection.close_if_unusable_or_obsolete()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert connection.connection is not before
