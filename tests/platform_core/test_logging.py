"""Structured logs: JSON lines that parse, carry the money path's ids, and never a secret."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from billing.models import Order, StripeEvent
from billing.services.events import events_drain
from platform_core.ops.logs import JsonFormatter
from tests.billing.conftest import post_webhook
from tests.billing.factories import PaymentFactory
from tests.stripe_events import event, payment_intent

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def json_lines():
    """What the console handler would print with LOG_FORMAT=json, as parsed lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.django_db
def test_a_paid_order_logs_its_order_user_and_request(api, user, stripe_server, json_lines):
    resp = api.post(
        "/payments/create/",
        {"is_credit_purchase": True, "credit_amount": 100, "payment_method_id": "pm_card_visa"},
        headers={"X-Request-ID": "req-test-12345"},
    )
    assert resp.status_code == 201
    assert resp["X-Request-ID"] == "req-test-12345"
    order = Order.objects.get()
    [line] = [x for x in json_lines() if x["message"].startswith(f"order {order.pk} fulfilled")]
    assert line["order_id"] == order.pk and line["user_id"] == user.pk
    assert line["request_id"] == "req-test-12345"
    assert line["level"] == "INFO" and line["logger"] == "billing.services.payments"
    assert line["http"] == {"method": "POST", "path": "/api/v1/payments/create/"}


@pytest.mark.django_db
def test_a_failing_event_logs_its_ids(json_lines):
    payment = PaymentFactory()
    obj = payment_intent(
        id=payment.stripe_payment_intent_id, amount=1, metadata=payment.order.metadata
    )
    post_webhook(event("payment_intent.succeeded", obj))
    events_drain()
    stored = StripeEvent.objects.get()
    [line] = [
        x
        for x in json_lines()
        if x.get("stripe_event_id") == stored.stripe_id and x["logger"] == "billing.services.events"
    ]
    assert line["event_id"] == stored.pk and line["level"] == "WARNING"


@pytest.mark.django_db
def test_webhook_intake_logs_the_stripe_event_id(json_lines):
    evt = event("payment_intent.succeeded", payment_intent(id="pi_intake_log", amount=100))
    post_webhook(evt, client=Client(headers={"X-Request-ID": "req-intake-0001"}))
    post_webhook(evt)

    lines = [x for x in json_lines() if x["logger"] == "billing.api.webhooks"]

    assert [x["message"].rsplit(" ", 1)[1] for x in lines] == ["stored", "duplicate"]
    assert {x["stripe_event_id"] for x in lines} == {evt["id"]}
    assert lines[0]["event_id"] == StripeEvent.objects.get().pk
    assert lines[0]["request_id"] == "req-intake-0001"


@pytest.mark.django_db
def test_a_refused_signature_is_logged_with_its_reason(json_lines):
    evt = event("payment_intent.succeeded", payment_intent(id="pi_refused_log", amount=100))
    assert post_webhook(evt, secret="whsec_someone_elses").status_code == 400
    assert post_webhook(evt, timestamp=1).status_code == 400

    lines = [x for x in json_lines() if x["logger"] == "billing.api.webhooks"]

    assert [x["level"] for x in lines] == ["WARNING", "WARNING"]
    assert all("does not match, or it is too old" in x["message"] for x in lines)
    assert not any("whsec_" in json.dumps(x) for x in lines)
    assert not StripeEvent.objects.exists()


@pytest.mark.django_db
def test_the_drain_names_the_event_and_its_order(json_lines):
    payment = PaymentFactory()
    obj = payment_intent(
        id=payment.stripe_payment_intent_id,
        amount=payment.amount,
        currency=payment.currency,
        metadata=payment.order.metadata,
    )
    post_webhook(event("payment_intent.succeeded", obj))
    events_drain()
    stored = StripeEvent.objects.get()
    assert stored.status == StripeEvent.Status.PROCESSED, stored.last_error

    [line] = [x for x in json_lines() if x["message"].endswith(" processed")]

    assert line["logger"] == "billing.services.events"
    assert line["stripe_event_id"] == stored.stripe_id and line["event_id"] == stored.pk
    assert line["order_id"] == payment.order_id


def test_gunicorn_access_lines_are_json_with_the_trusted_client(monkeypatch):
    from gunicorn.glogging import SafeAtoms

    from platform_core.ops.logs import AccessJsonFormatter

    atoms = SafeAtoms(
        {
            "h": "10.0.0.5",
            "m": "POST",
            "U": "/api/v1/payments/webhook/",
            "s": "200",
            "L": "0.0123",
            "B": 64,
            "a": "Stripe/1.0",
            "{x-request-id}o": "req-access-0001",
            "{x-forwarded-for}i": "198.51.100.1, 203.0.113.7, 10.0.0.2",
        }
    )
    record = logging.LogRecord("gunicorn.access", logging.INFO, "", 0, "%(h)s", (), None)
    record.args = atoms

    monkeypatch.setenv("TOLLGATE_TRUSTED_PROXIES", "2")
    line = json.loads(AccessJsonFormatter().format(record))
    assert line["request_id"] == "req-access-0001"
    assert line["client_ip"] == "203.0.113.7"  # what the outer of two trusted proxies saw
    assert line["http"]["status"] == 200 and line["http"]["duration_ms"] == 12.3

    monkeypatch.setenv("TOLLGATE_TRUSTED_PROXIES", "0")
    assert json.loads(AccessJsonFormatter().format(record))["client_ip"] == "10.0.0.5"


@pytest.mark.django_db
def test_qinfo_reports_the_clusters():
    from django.core.management import call_command

    out = io.StringIO()
    sys_stdout = sys.stdout
    sys.stdout = out  # qinfo prints through print(), not self.stdout
    try:
        call_command("qinfo")
    finally:
        sys.stdout = sys_stdout
    text = out.getvalue()
    assert "not installed" not in text
    assert "Clusters" in text


def test_secrets_and_card_numbers_never_reach_a_line():
    record = logging.LogRecord(
        "billing",
        logging.ERROR,
        __file__,
        1,
        "key %s secret %s token %s card %s client %s order %s",
        (
            "sk_test_51HxyzABCdef",
            "whsec_abc123",
            "tg_Abcdefghijklmnopqrstuvwxyz0123",
            "4242 4242 4242 4242",
            "pi_123abc_secret_XYZ789",
            1234567890123,  # not a card (fails the Luhn check): kept
        ),
        None,
    )
    try:
        raise ValueError("failed with sk_live_ABCDEF123")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(record))
    text = json.dumps(line)
    for secret in ("sk_test_51", "whsec_abc", "tg_Abcdef", "4242 4242", "_secret_XYZ", "sk_live"):
        assert secret not in text
    assert "[card]" in line["message"] and "[redacted]" in line["exc"]
    assert "1234567890123" in line["message"]


def test_log_format_json_configures_the_console_for_json():
    env = {**os.environ, "LOG_FORMAT": "json", "DJANGO_SETTINGS_MODULE": "platform_core.settings"}
    script = (
        "import django, logging; django.setup(); "
        "logging.getLogger('billing.services.payments').info("
        "'order %s fulfilled', 7, extra={'order_id': 7, 'user_id': 3, 'password': 'x'})"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    [line] = [json.loads(x) for x in out.stderr.splitlines() if x.startswith("{")]
    assert (line["message"], line["order_id"], line["user_id"]) == ("order 7 fulfilled", 7, 3)
    assert "password" not in line  # only known id fields are copied
