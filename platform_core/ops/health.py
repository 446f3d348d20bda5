"""Health checks for load balancers and orchestrators.

- `/healthz`: the process is up and serving (no database touched), so a
  restart is never triggered by a database outage.
- `/readyz`: this web instance can serve: the database answers and every
  migration is applied. 200 when both pass, 503 with the failing checks.
- The event pipeline's lag (the oldest waiting task, the oldest due Stripe
  event) is a metric with an alert rule (`platform_core.ops.metrics`,
  `deploy/prometheus/tollgate-rules.yml`), not readiness: a stopped worker must
  not take the API and the webhook intake down with it.

The rule: readiness depends only on what the web tier itself needs. Both
answers are cheap and anonymous, and say nothing secret.
"""

from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from platform_core import sql

# Once every migration is applied it stays so for the life of the process (a
# deploy that adds migrations starts new processes), so the check then costs nothing.
_migrations_applied = False


def _database() -> dict:
    sql.database_ping()
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


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, dict] = {}
    for name, check in (("database", _database), ("migrations", _migrations)):
        try:
            checks[name] = check()
        except Exception as exc:
            checks[name] = {"ok": False, "error": type(exc).__name__}
            if name == "database":
                break  # the other check needs it
    ready = len(checks) == 2 and all(c["ok"] for c in checks.values())
    return JsonResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )
