"""/healthz and /readyz: up, and ready only when the database, migrations and queue are."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.test import Client
from django.utils import timezone
from django_q.models import OrmQ

from billing.models import StripeEvent
from platform_core.ops import health

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_migration_check(monkeypatch):
    # The check remembers success for the process; each test starts unknowing.
    monkeypatch.setattr(health, "_migrations_applied", False)


def readyz():
    resp = Client().get("/readyz")
    return resp.status_code, resp.json()


def test_healthz_answers_without_authentication():
    resp = Client().get("/healthz")
    assert (resp.status_code, resp.json()) == (200, {"status": "ok"})
    assert "no-cache" in resp["Cache-Control"]


def test_readyz_is_ready_when_everything_is():
    status, body = readyz()
    assert status == 200, body
    assert body["status"] == "ready"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "database": True,
        "migrations": True,
        "queue": True,
    }


def test_readyz_is_not_ready_while_a_task_waits_too_long(settings):
    settings.READY_QUEUE_LAG_SECONDS = 60
    OrmQ.objects.create(key="tollgate", payload="x", lock=timezone.now() - timedelta(seconds=30))
    assert readyz()[0] == 200
    OrmQ.objects.create(key="tollgate", payload="y", lock=timezone.now() - timedelta(minutes=5))
    status, body = readyz()
    assert status == 503 and body["status"] == "not ready"
    assert body["checks"]["queue"]["ok"] is False
    assert body["checks"]["queue"]["oldest_task_seconds"] >= 300


def test_a_task_held_by_a_live_worker_is_not_lag(settings):
    settings.READY_QUEUE_LAG_SECONDS = 60
    # A worker took it: its lock is in the future until the retry time.
    OrmQ.objects.create(key="tollgate", payload="x", lock=timezone.now() + timedelta(minutes=2))
    assert readyz()[0] == 200


def test_readyz_is_not_ready_while_a_stripe_event_waits_too_long(settings):
    settings.READY_QUEUE_LAG_SECONDS = 60
    long_ago = timezone.now() - timedelta(minutes=10)
    StripeEvent.objects.create(
        stripe_id="evt_backoff",
        type="x",
        payload={},
        status="retrying",
        next_attempt_at=timezone.now() + timedelta(minutes=10),
    )  # waiting for its back-off on purpose: not lag
    assert readyz()[0] == 200
    StripeEvent.objects.create(
        stripe_id="evt_stuck", type="x", payload={}, status="pending", next_attempt_at=long_ago
    )
    status, body = readyz()
    assert status == 503
    assert body["checks"]["queue"]["oldest_due_event_seconds"] >= 600


def test_readyz_is_not_ready_with_a_migration_unapplied():
    # The app's newest migration, as a deploy that has not migrated yet would leave it.
    [(_, newest)] = MigrationLoader(None).graph.leaf_nodes("platform_core")
    MigrationRecorder.Migration.objects.filter(app="platform_core", name=newest).delete()
    status, body = readyz()
    assert status == 503
    assert body["checks"]["migrations"] == {"ok": False, "unapplied": 1}
