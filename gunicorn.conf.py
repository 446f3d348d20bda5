"""gunicorn's settings for Tollgate's web process (gunicorn reads this file from its
working directory; the Docker image and docker-compose start it there).

Sync workers, two per core: a worker waiting on PostgreSQL, or for its client
to close the connection, leaves its core to another. On the 2-core machine of
docs/performance.md, webhook ingest at 32 senders went from 1,030 events/s with
2 workers (the machine 81% busy) to 1,094 with 4 (97% busy), and end to end
stayed at 382–385 orders/s. `make bench` starts what this file gives.
`WEB_CONCURRENCY` sets the count; by default it is two per core, at most 8.
"""

import os
import tempfile
from pathlib import Path

# The CPUs this process may run on (a container's cpuset; a CPU quota is not seen,
# so the default is capped: each worker holds a PostgreSQL connection).
_CORES = len(os.sched_getaffinity(0))

bind = os.environ.get("BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY") or min(2 * _CORES, 8))
accesslog = "-"
# Longer than the Stripe client's own timeout (STRIPE_TIMEOUT, 30 s by default).
timeout = 60
graceful_timeout = 20

# Each instance needs its own control socket: gunicorn's default is one path per
# user (~/.gunicorn/gunicorn.ctl), so a second instance on the same host and
# account takes it over from the first. Off unless GUNICORN_CONTROL_SOCKET names one.
if os.environ.get("GUNICORN_CONTROL_SOCKET"):
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]
else:
    control_socket_disable = True

# Prometheus: every worker process writes its samples into one directory, which
# `GET /metrics` adds up. Emptied at start, so a restart begins from zero.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="tollgate-metrics-")


def on_starting(server):
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


# gunicorn's own lines (errors, access) as JSON like the application's, unless
# LOG_FORMAT says plain (the default with DEBUG on). An access line carries the
# request id the application gave the response and the client's address as the
# trusted proxies saw it (TOLLGATE_TRUSTED_PROXIES). It is written once per request,
# so its logger builds it from the few values it holds instead of gunicorn's dict of
# every header and environment variable.
_DEBUG = os.environ.get("DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}
if os.environ.get("LOG_FORMAT", "plain" if _DEBUG else "json") == "json":
    logger_class = "platform_core.ops.access_log.AccessLogger"
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": "platform_core.ops.logs.JsonFormatter"},
            "access": {"()": "platform_core.ops.logs.AccessJsonFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "access",
                "stream": "ext://sys.stdout",
            },
            "error_console": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            },
        },
        "root": {"level": "INFO", "handlers": ["error_console"]},
        "loggers": {
            "gunicorn.error": {
                "level": os.environ.get("LOG_LEVEL", "INFO"),
                "handlers": ["error_console"],
                "propagate": False,
                "qualname": "gunicorn.error",
            },
            "gunicorn.access": {
                "level": "INFO",
                "handlers": ["console"],
                "propagate": False,
                "qualname": "gunicorn.access",
            },
        },
    }
