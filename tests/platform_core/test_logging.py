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
    [line] = [x for x in json_lines() if x.get("stripe_event_id") == stored.stripe_id]
    assert line["event_id"] == stored.pk and line["level"] == "WARNING"


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
