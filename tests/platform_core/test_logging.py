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


class _GunicornResponse:
    """What gunicorn's logger reads from its `Response`: status, headers, bytes sent."""

    def __init__(self, status: str, headers: list[tuple[str, str]], sent: int) -> None:
        self.status = status
        self.headers = headers
        self.sent = sent
        code = status.split(None, 1)[0]
        if code.isdigit():
            self.status_code = int(code)


def _access_logger(monkeypatch, proxies: int):
    """gunicorn's logger as gunicorn.conf.py configures it (JSON), its access lines kept."""
    import runpy

    from gunicorn.config import Config

    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.setenv("TOLLGATE_TRUSTED_PROXIES", str(proxies))
    conf = runpy.run_path(str(PROJECT_ROOT / "gunicorn.conf.py"))
    cfg = Config()
    for name in ("logger_class", "logconfig_dict", "accesslog"):
        cfg.set(name, conf[name])
    logger = cfg.logger_class(cfg)
    stream = io.StringIO()
    for handler in logging.getLogger("gunicorn.access").handlers:
        monkeypatch.setattr(handler, "stream", stream)
    return logger, stream


def _gunicorn_request(**environ: str):
    from datetime import timedelta

    base = {
        "REQUEST_METHOD": "POST",
        "RAW_URI": "/api/v1/payments/webhook/?a=1",
        "PATH_INFO": "/api/v1/payments/webhook/",
        "QUERY_STRING": "a=1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "10.0.0.5",
        "HTTP_USER_AGENT": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        "HTTP_X_FORWARDED_FOR": "198.51.100.1, 203.0.113.7",
    }
    base.update(environ)
    headers = [
        (key[5:].replace("_", "-"), value) for key, value in base.items() if key[:5] == "HTTP_"
    ]
    req = type("Req", (), {"headers": headers})()
    return req, base, timedelta(microseconds=12_345)


def test_gunicorn_writes_access_lines_from_the_request_itself(monkeypatch):
    from platform_core.ops.access_log import AccessLogger

    logger, stream = _access_logger(monkeypatch, proxies=1)
    assert isinstance(logger, AccessLogger)
    req, environ, took = _gunicorn_request()
    resp = _GunicornResponse(
        "201 Created",
        [("Content-Type", "application/json"), ("X-Request-ID", "req-access-0002")],
        sent=64,
    )

    logger.access(resp, req, environ, took)

    [line] = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert line["logger"] == "gunicorn.access" and line["level"] == "INFO"
    assert line["message"] == "POST /api/v1/payments/webhook/ 201"
    assert line["request_id"] == "req-access-0002"
    assert line["client_ip"] == "203.0.113.7"  # what the one trusted proxy saw
    assert line["http"] == {
        "method": "POST",
        "path": "/api/v1/payments/webhook/",
        "status": 201,
        "duration_ms": 12.3,
        "bytes": 64,
        "user_agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    }


def test_the_access_line_is_the_one_gunicorns_atoms_gave(monkeypatch):
    """The same request, through gunicorn's own atoms and AccessJsonFormatter, and
    through AccessLogger, gives the same line; an error answer (no status_code) too."""
    from gunicorn.glogging import Logger, SafeAtoms

    from platform_core.ops.logs import AccessJsonFormatter

    logger, stream = _access_logger(monkeypatch, proxies=2)
    req, environ, took = _gunicorn_request(HTTP_USER_AGENT="curl sk_test_51Hxyz")
    for resp in (
        _GunicornResponse("200 OK", [("x-request-id", "req-access-0003")], sent=39),
        _GunicornResponse("400 Bad Request", [], sent=0),
    ):
        if resp.status.startswith("400"):
            del resp.status_code  # gunicorn's error answer sets only the status text
        stream.truncate(0)
        stream.seek(0)
        logger.access(resp, req, environ, took)
        [ours] = [json.loads(x) for x in stream.getvalue().splitlines()]

        atoms = SafeAtoms(Logger.atoms(logger, resp, req, environ, took))
        record = logging.LogRecord("gunicorn.access", logging.INFO, "", 0, "%(h)s", (), None)
        record.args = atoms
        theirs = json.loads(AccessJsonFormatter().format(record))

        assert {**ours, "ts": None} == {**theirs, "ts": None}
        assert ours["client_ip"] == "198.51.100.1"
        assert "sk_test" not in ours["http"]["user_agent"]


def test_no_access_line_is_built_when_the_access_log_is_off(monkeypatch):
    logger, stream = _access_logger(monkeypatch, proxies=0)
    req, environ, took = _gunicorn_request()
    logger.access_log.setLevel(logging.WARNING)
    try:
        logger.access(_GunicornResponse("200 OK", [], sent=1), req, environ, took)
    finally:
        logger.access_log.setLevel(logging.INFO)

    assert stream.getvalue() == ""


def test_log_timestamps_are_utc_to_the_millisecond():
    from datetime import UTC, datetime

    from platform_core.ops.logs import _timestamp

    for created in (1_700_000_000.0, 1_700_000_000.0005, 1_700_000_000.123456, 1_700_000_001.9):
        expected = datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds")
        assert _timestamp(created) == expected


def test_scrub_misses_nothing_the_expressions_catch():
    """The quick checks before each expression never skip a text it would change."""
    import random

    from platform_core.ops.logs import _DIGIT_RUN, _SECRETS, _card_masked, scrub

    pieces = [
        "sk_test_51Hxyz", "rk_live_ABC123", "SK_TEST_x", "whsec_abc_1", "tg_" + "A" * 20,
        "pi_123abc_secret_XYZ789", "seti_1_secret_2", "cs_9_secret_z", "Bearer abc.def",
        "BEARER  tok-1", "bEaReR x", "4242 4242 4242 4242", "4242-4242-4242-4242",
        "4222222222222", "378282246310005", "1234567890123", "evt_fdd1f0d783334108b2a061e2",
        "order 7", " ", "-", "_", "(", "é", "\N{KELVIN SIGN}",
    ]  # fmt: skip
    rng = random.Random(7)
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 6)))
        assert scrub(text) == _DIGIT_RUN.sub(_card_masked, _SECRETS.sub("[redacted]", text)), text


def test_a_request_without_a_sane_id_gets_a_fresh_one():
    import re

    ids = [
        Client(headers=headers).get("/healthz")["X-Request-ID"]
        for headers in ({}, {}, {"X-Request-ID": "short"}, {"X-Request-ID": "a b;c" * 4})
    ]

    assert all(re.fullmatch(r"[0-9a-f]{32}", x) for x in ids), ids
    assert len(set(ids)) == len(ids)
    assert Client(headers={"X-Request-ID": "req-given-0001"}).get("/healthz")["X-Request-ID"] == (
        "req-given-0001"
    )
