"""Prometheus counters the apps record into, and how a process collects them.

The rule: labels take a handful of fixed values (an outcome, a status class, a
Stripe path with its ids replaced), never an id, an amount or anything a client
chose, so the series stay few. Under gunicorn each worker process writes its
own samples into `PROMETHEUS_MULTIPROC_DIR` (gunicorn.conf.py sets it before any
worker starts) and `GET /metrics` adds them up (platform_core.ops.metrics).

No Django import here: billing's gateway and the platform both use it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from time import perf_counter
from typing import Any

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter(
    "tollgate_http_requests",
    "HTTP requests answered, by method, route name and status class.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "tollgate_http_request_duration_seconds",
    "Time to answer an HTTP request, by route name.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WEBHOOKS = Counter(
    "tollgate_webhooks",
    "Stripe webhook deliveries, by outcome: stored, duplicate, refused (signature), "
    "too_large, error.",
    ["outcome"],
)
STRIPE_REQUESTS = Counter(
    "tollgate_stripe_requests",
    "Requests sent to Stripe's API (each network retry counts), by path and outcome "
    "(2xx, 4xx, 5xx, or error when no answer came).",
    ["path", "outcome"],
)
STRIPE_DURATION = Histogram(
    "tollgate_stripe_request_duration_seconds",
    "Time one request to Stripe's API took, by path.",
    ["path"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
# An object id in a Stripe path: a short prefix, "_", and a token with a digit or capital.
_STRIPE_ID = re.compile(r"^[a-z]{2,8}_[A-Za-z0-9_]*[0-9A-Z][A-Za-z0-9_]*$")


def stripe_path_label(url: str) -> str:
    """`/v1/payment_intents/{id}/confirm` for any PaymentIntent's confirm URL."""
    path = url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
    parts = ["{id}" if _STRIPE_ID.match(p) else p for p in path.split("/") if p]
    return "/" + "/".join(parts[:4])


def stripe_session_observe(session: Any) -> None:
    """Count and time every request a `requests.Session` sends to Stripe."""
    send: Callable[..., Any] = session.request

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        started, outcome = perf_counter(), "error"
        try:
            response = send(method, url, *args, **kwargs)
            outcome = f"{response.status_code // 100}xx"
            return response
        finally:
            path = stripe_path_label(url)
            STRIPE_REQUESTS.labels(path=path, outcome=outcome).inc()
            STRIPE_DURATION.labels(path=path).observe(perf_counter() - started)

    session.request = request
