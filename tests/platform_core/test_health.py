"""/healthz and /readyz: up, and ready when the database answers and migrations are applied.

The worker's lag is not readiness: it is a metric (tests/platform_core/test_metrics.py).
"""

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
    }


def test_a_stopped_worker_does_not_make_the_web_tier_unready():
    # Ten minutes of worker outage: a task and a Stripe event waiting all that time.
    long_ago = timezone.now() - timedelta(minutes=10)
    OrmQ.objects.create(key="tollgate", payload="x", lock=long_ago)
    StripeEvent.objects.create(
        stripe_id="evt_stuck", type="x", payload={}, status="pending", next_attempt_at=long_ago
    )

    status, body = readyz()

    assert status == 200, body
    assert "queue" not in body["checks"]


def test_readyz_is_not_ready_with_a_migration_unapplied():
    # The app's newest migration, as a deploy that has not migrated yet would leave it.
    [(_, newest)] = MigrationLoader(None).graph.leaf_nodes("platform_core")
    MigrationRecorder.Migration.objects.filter(app="platform_core", name=newest).delete()
    status, body = readyz()
    assert status == 503
    assert body["checks"]["migrations"] == {"ok": False, "unapplied": 1}
