"""Health checks for load balancers and orchestrators.

- `/healthz`: the process is up and serving (no database touched), so a
  restart is never triggered by a database outage.
- `/readyz`: this instance should get traffic: the database answers, every
  migration is applied, and the work queue keeps up (the oldest waiting
  django-q2 task and the oldest due Stripe event are younger than
  `READY_QUEUE_LAG_SECONDS`). 200 when all pass, 503 with the failing checks.

The rule: both are cheap and anonymous, and say nothing secret: check names,
`ok`, and ages in seconds.
"""

from __future__ import annotations

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Min, Q
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_q.models import OrmQ

from billing.models import StripeEvent

# Once every migration is applied it stays so for the life of the process (a
# deploy that adds migrations starts new processes), so the check then costs nothing.
_migrations_applied = False


def _database() -> dict:
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"ok": True}


def _migrations() -> dict:
    global _migrations_applied
    if not _migrations_applied:
        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        unapplied = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if unapplied:
            return {"ok": False, "unapplied": len(unapplied)}
        _migrations_applied = True
    return {"ok": True}


def _age_seconds(oldest) -> float:
    return round((timezone.now() - oldest).total_seconds(), 1) if oldest else 0.0


def _queue() -> dict:
    now = timezone.now()
    # A task waits from its `lock` time: when enqueued, or when its worker's lease ran out.
    task_lag = _age_seconds(OrmQ.objects.filter(lock__lte=now).aggregate(m=Min("lock"))["m"])
    event_lag = _age_seconds(
        StripeEvent.objects.filter(
            Q(status__in=[StripeEvent.Status.PENDING, StripeEvent.Status.RETRYING]),
            next_attempt_at__lte=now,
        ).aggregate(m=Min("next_attempt_at"))["m"]
    )
    limit = settings.READY_QUEUE_LAG_SECONDS
    return {
        "ok": task_lag <= limit and event_lag <= limit,
        "oldest_task_seconds": task_lag,
        "oldest_due_event_seconds": event_lag,
        "limit_seconds": limit,
    }


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, dict] = {}
    for name, check in (("database", _database), ("migrations", _migrations), ("queue", _queue)):
        try:
            checks[name] = check()
        except Exception as exc:
            checks[name] = {"ok": False, "error": type(exc).__name__}
            if name == "database":
                break  # the other checks need it
    ready = len(checks) == 3 and all(c["ok"] for c in checks.values())
    return JsonResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )
