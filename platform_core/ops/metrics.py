"""`GET /metrics` for Prometheus: request and Stripe counters, and the state of the
money pipeline read from the database at scrape time.

The pipeline's figures (events by status, the oldest due event, queued tasks and
the oldest one's wait, orders and refunds by status) come from PostgreSQL, not
from the worker, so they stay true while the worker is down: that is what the
lag alert in deploy/prometheus/tollgate-rules.yml is built on.

The rule: the endpoint is not public. With `METRICS_TOKEN` set it wants
`Authorization: Bearer <token>`; otherwise only addresses in
`METRICS_ALLOWED_NETS` (loopback by default) get an answer, anyone else a 404.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Callable, Iterator
from time import perf_counter
from typing import Any

from django.conf import settings
from django.db.models import Count, Min
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_q.models import OrmQ
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from billing.models import Order, Refund, StripeEvent
from kernel.metrics import HTTP_DURATION, HTTP_REQUESTS


class PipelineCollector(Collector):
    """Gauges read from the database on each scrape (a few aggregate queries)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = timezone.now()
        events = GaugeMetricFamily(
            "tollgate_stripe_events", "Stripe events stored, by status.", labels=["status"]
        )
        counts = dict(StripeEvent.objects.order_by().values_list("status").annotate(n=Count("id")))
        for status in StripeEvent.Status.values:
            events.add_metric([status], counts.get(status, 0))
        yield events

        due = StripeEvent.objects.filter(
            status__in=[StripeEvent.Status.PENDING, StripeEvent.Status.RETRYING],
            next_attempt_at__lte=now,
        ).aggregate(m=Min("next_attempt_at"))["m"]
        yield GaugeMetricFamily(
            "tollgate_stripe_event_lag_seconds",
            "How long the oldest due Stripe event (pending, or retrying past its back-off) "
            "has waited for the worker; 0 when none is due.",
            value=(now - due).total_seconds() if due else 0.0,
        )

        yield GaugeMetricFamily(
            "tollgate_queue_tasks", "Tasks in the django-q2 queue.", value=OrmQ.objects.count()
        )
        # A task waits from its `lock` time: when enqueued, or when its worker's lease ran out.
        oldest = OrmQ.objects.filter(lock__lte=now).aggregate(m=Min("lock"))["m"]
        yield GaugeMetricFamily(
            "tollgate_queue_oldest_task_seconds",
            "How long the oldest task no worker holds has waited; 0 when none waits.",
            value=(now - oldest).total_seconds() if oldest else 0.0,
        )

        for model, name, what in (
            (Order, "tollgate_orders", "Orders, by status."),
            (Refund, "tollgate_refunds", "Refunds, by status."),
        ):
            family = GaugeMetricFamily(name, what, labels=["status"])
            counts = dict(model.objects.order_by().values_list("status").annotate(n=Count("id")))
            for status in model.Status.values:
                family.add_metric([status], counts.get(status, 0))
            yield family


def _exposition() -> bytes:
    """This process's samples (or, under gunicorn, every worker's), then the pipeline's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)
    else:
        processes = REGISTRY
    pipeline = CollectorRegistry()
    pipeline.register(PipelineCollector())
    return generate_latest(processes) + generate_latest(pipeline)


def _allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if token:
        given = request.META.get("HTTP_AUTHORIZATION", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(
        address in ipaddress.ip_network(net, strict=False) for net in settings.METRICS_ALLOWED_NETS
    )


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        raise Http404
    return HttpResponse(_exposition(), content_type=CONTENT_TYPE_LATEST)


class RequestMetricsMiddleware:
    """Count and time every request by its route's name (never its path).

    Each (method, route, status class) gets its counter and histogram children once
    per process; a request then only adds to them. The key is made of the normalised
    values, so what a client sends cannot grow the cache.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = perf_counter()
        response = self.get_response(request)
        elapsed = perf_counter() - started
        match = request.resolver_match
        route = (match.url_name or match.route or "unnamed") if match else "unmatched"
        method = request.method if request.method in _METHODS else "other"
        key = (method, route, response.status_code // 100)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                HTTP_REQUESTS.labels(method=method, route=route, status=f"{key[2]}xx"),
                HTTP_DURATION.labels(route=route),
            )
        children[0].inc()
        children[1].observe(elapsed)
        return response


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
