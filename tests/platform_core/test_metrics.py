"""GET /metrics: Prometheus text with request, webhook and pipeline figures; not public."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django_q.models import OrmQ
from prometheus_client.parser import text_string_to_metric_families

from billing.models import StripeEvent
from tests.billing.conftest import post_webhook
from tests.stripe_events import event, new_id, payment_intent

pytestmark = pytest.mark.django_db


def scrape(**headers: str) -> dict[tuple[str, tuple], float]:
    resp = Client().get("/metrics", headers=headers)
    assert resp.status_code == 200, resp.content[:200]
    assert resp["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(resp.content.decode())
        for sample in family.samples
    }


def test_the_pipeline_lag_is_a_metric():
    long_ago = timezone.now() - timedelta(minutes=10)
    OrmQ.objects.create(key="tollgate", payload="x", lock=long_ago)
    StripeEvent.objects.create(
        stripe_id="evt_stuck", type="x", payload={}, status="pending", next_attempt_at=long_ago
    )
    StripeEvent.objects.create(
        stripe_id="evt_waits_for_backoff",
        type="x",
        payload={},
        status="retrying",
        next_attempt_at=timezone.now() + timedelta(minutes=5),
    )

    samples = scrape()

    assert samples[("tollgate_stripe_event_lag_seconds", ())] >= 600
    assert samples[("tollgate_queue_oldest_task_seconds", ())] >= 600
    assert samples[("tollgate_queue_tasks", ())] == 1
    assert samples[("tollgate_stripe_events", (("status", "pending"),))] == 1
    assert samples[("tollgate_stripe_events", (("status", "retrying"),))] == 1
    assert samples[("tollgate_stripe_events", (("status", "failed"),))] == 0
    assert ("tollgate_orders", (("status", "paid"),)) in samples
    assert ("tollgate_refunds", (("status", "succeeded"),)) in samples


def test_nothing_due_is_no_lag():
    samples = scrape()
    assert samples[("tollgate_stripe_event_lag_seconds", ())] == 0
    assert samples[("tollgate_queue_oldest_task_seconds", ())] == 0


def webhooks(samples, outcome: str) -> float:
    return samples.get(("tollgate_webhooks_total", (("outcome", outcome),)), 0.0)


def test_webhook_intake_and_requests_are_counted():
    before = scrape()
    evt = event("payment_intent.succeeded", payment_intent(id=new_id("pi"), amount=500))
    assert post_webhook(evt).status_code == 200
    assert post_webhook(evt).status_code == 200
    assert post_webhook(evt, secret="whsec_not_ours").status_code == 400

    after = scrape()

    for outcome in ("stored", "duplicate", "refused"):
        assert webhooks(after, outcome) == webhooks(before, outcome) + 1, outcome
    key = (
        "tollgate_http_requests_total",
        (("method", "POST"), ("route", "stripe_webhook"), ("status", "2xx")),
    )
    assert after[key] == before.get(key, 0) + 2


def test_metrics_are_not_public(settings):
    assert Client(REMOTE_ADDR="203.0.113.9").get("/metrics").status_code == 404
    settings.METRICS_ALLOWED_NETS = ["203.0.113.0/24"]
    assert Client(REMOTE_ADDR="203.0.113.9").get("/metrics").status_code == 200


def test_a_metrics_token_is_required_once_set(settings):
    settings.METRICS_TOKEN = "scrape-token-for-tests"
    assert Client().get("/metrics").status_code == 404
    wrong = {"Authorization": "Bearer nope"}
    assert Client().get("/metrics", headers=wrong).status_code == 404
    scrape(Authorization="Bearer scrape-token-for-tests")


def test_every_metric_the_alert_rules_use_is_exposed():
    import re
    from pathlib import Path

    import yaml

    rules = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "deploy/prometheus/tollgate-rules.yml").read_text()
    )
    used = {
        name
        for group in rules["groups"]
        for rule in group["rules"]
        for name in re.findall(r"\b(tollgate_[a-z_]+)", rule["expr"])
    }
    resp = Client().get("/metrics")
    exposed = {
        sample.name
        for family in text_string_to_metric_families(resp.content.decode())
        for sample in family.samples
    }
    # Counters appear once counted: count one of each.
    post_webhook(event("x.y", {"id": "obj_1"}), secret="whsec_not_ours")
    resp = Client().get("/metrics")
    exposed |= {
        family.name + ("_total" if family.type == "counter" else "")
        for family in text_string_to_metric_families(resp.content.decode())
    }
    missing = used - exposed - {"tollgate_stripe_requests_total"}  # counted below
    assert used and not missing, missing


def test_stripe_calls_are_counted_and_timed(api, stripe_server):
    before = scrape()
    resp = api.post(
        "/payments/create/",
        {"is_credit_purchase": True, "credit_amount": 100, "payment_method_id": "pm_card_visa"},
    )
    assert resp.status_code == 201, resp.json()

    after = scrape()

    created = (
        "tollgate_stripe_requests_total",
        (("outcome", "2xx"), ("path", "/v1/payment_intents")),
    )
    assert after[created] > before.get(created, 0)
    timed = ("tollgate_stripe_request_duration_seconds_count", (("path", "/v1/payment_intents"),))
    assert after[timed] > before.get(timed, 0)
    stripe_labels = [str(labels) for (name, labels) in after if name.startswith("tollgate_stripe")]
    assert stripe_labels and not any("pi_" in labels for labels in stripe_labels)


def test_each_request_is_counted_under_its_route_method_and_status_class():
    """Repeated requests land on the same series; a method no client should send, and a
    path with no route, each have one series whatever they were."""
    before = scrape()
    client = Client()
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert client.generic("BREW", "/healthz").status_code == 405
    assert client.generic("PROPFIND-42", "/healthz").status_code == 405
    assert client.get("/no/such/path/1").status_code == 404
    assert client.get("/no/such/path/2").status_code == 404
    assert Client(REMOTE_ADDR="203.0.113.9").get("/metrics").status_code == 404

    after = scrape()

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    requests = "tollgate_http_requests_total"
    assert grew(requests, method="GET", route="healthz", status="2xx") == 3
    assert grew(requests, method="other", route="healthz", status="4xx") == 2
    assert grew(requests, method="GET", route="unmatched", status="4xx") == 2
    # One route, two status classes: the scrape before, and the refused one.
    assert grew(requests, method="GET", route="metrics", status="2xx") == 1
    assert grew(requests, method="GET", route="metrics", status="4xx") == 1
    assert grew("tollgate_http_request_duration_seconds_count", route="healthz") == 5
    assert not [key for key in after if "BREW" in str(key) or "/no/such" in str(key)]
