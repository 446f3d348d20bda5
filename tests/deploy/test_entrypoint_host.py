"""The production entrypoint's commands on this host, against PostgreSQL, DEBUG off.

collectstatic, migrate, then web (gunicorn) and worker (qcluster), exactly as the
image and the manifests run them; then what an operator checks first: a static
file is served, /healthz and /readyz answer, a signed webhook is accepted and the
worker processes it, the metrics show it, the logs are JSON with the ids.
"""

from __future__ import annotations

import json
import os
import time

import psycopg
import pytest

from tests.deploy import hostrun
from tests.stripe_events import encode, event, new_id, sign

pytestmark = pytest.mark.e2e


@pytest.fixture
def host_database():
    base = os.environ["DATABASE_URL"]
    name = base.rsplit("/", 1)[1] + f"_entrypoint_{os.getpid()}"
    url = hostrun.database_create(base, name)
    yield url
    hostrun.database_drop(base, name)


def json_lines(text: str) -> list[dict]:
    lines = []
    for raw in text.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict):
            lines.append(line)
    return lines


def test_migrate_web_and_worker_on_this_host(host_database, tmp_path):
    port = hostrun.free_port()
    # Q_SCHEDULER=1 as an operator's .env may say: `worker` must run no schedule all the same.
    env = hostrun.production_env(host_database, tmp_path, port, Q_SCHEDULER="1")
    base = f"http://127.0.0.1:{port}"

    hostrun.run(["check"], env)
    hostrun.run(["collectstatic"], env)
    hostrun.run(["migrate"], env)
    web_log, worker_log = tmp_path / "web.log", tmp_path / "worker.log"
    scheduler_log = tmp_path / "scheduler.log"
    web = hostrun.start(["web"], env, web_log)
    worker = hostrun.start(["worker"], env, worker_log)
    scheduler = hostrun.start(["scheduler"], env, scheduler_log)
    try:
        hostrun.wait_until_up(base, web, web_log)

        # Static files: collected with hashed names and served by the web process.
        manifest = json.loads((tmp_path / "static" / "staticfiles.json").read_text())
        hashed = manifest["paths"]["web/app.css"]
        status, headers, body = hostrun.get(f"{base}/static/{hashed}")
        assert status == 200 and b"{" in body
        assert "max-age=315360000" in headers["Cache-Control"]

        assert hostrun.get(base + "/healthz")[0] == 200
        status, _, body = hostrun.get(base + "/readyz")
        assert status == 200, body
        hostrun.run(["healthcheck", "web"], env)

        evt = event("product.created", {"id": new_id("prod"), "object": "product"})
        payload = encode(evt)
        status, _, body = hostrun.get(
            base + "/api/v1/payments/webhook/",
            {
                "Stripe-Signature": sign(payload, hostrun.WEBHOOK_SECRET),
                "Content-Type": "application/json",
                "X-Request-ID": "hostrun-webhook-0001",
            },
            payload,
        )
        assert status == 200, body
        assert json.loads(body) == {"received": True, "duplicate": False, "id": evt["id"]}

        deadline = time.monotonic() + 60
        with psycopg.connect(host_database, autocommit=True) as conn:
            while True:
                row = conn.execute(
                    "SELECT status FROM billing_stripeevent WHERE stripe_id = %s", [evt["id"]]
                ).fetchone()
                if row and row[0] not in ("pending", "processing", "retrying"):
                    break
                assert time.monotonic() < deadline, f"the worker never took it: {row}"
                time.sleep(0.3)
        assert row[0] == "ignored"  # no handler for product.created: taken and recorded

        deadline = time.monotonic() + 20
        while True:
            try:
                hostrun.run(["healthcheck", "worker"], env, timeout=60)
                break
            except AssertionError:
                assert time.monotonic() < deadline
                time.sleep(1)

        status, _, body = hostrun.get(base + "/metrics")
        assert status == 200
        text = body.decode()
        assert 'tollgate_webhooks_total{outcome="stored"} 1.0' in text
        assert 'tollgate_stripe_events{status="ignored"} 1.0' in text
        assert 'route="stripe_webhook",status="2xx"' in text

        # The schedules (due since migrate) are run by the scheduler; it ticks every ~30 s.
        deadline = time.monotonic() + 75
        while "from schedule" not in scheduler_log.read_text():
            assert time.monotonic() < deadline, scheduler_log.read_text()[-2000:]
            time.sleep(1)
    finally:
        stopped = {
            name: hostrun.stop(process)
            for name, process in (("web", web), ("worker", worker), ("scheduler", scheduler))
        }
    assert stopped == {"web": True, "worker": True, "scheduler": True}
    assert "from schedule" not in worker_log.read_text()

    web_lines = json_lines(web_log.read_text())
    access = [line for line in web_lines if line.get("logger") == "gunicorn.access"]
    webhook_access = [
        line for line in access if line["http"]["path"] == "/api/v1/payments/webhook/"
    ]
    assert webhook_access and webhook_access[0]["request_id"] == "hostrun-webhook-0001"
    assert webhook_access[0]["client_ip"] == "127.0.0.1"
    assert any(line.get("logger") == "gunicorn.error" for line in web_lines)
    intake = [line for line in web_lines if line.get("stripe_event_id") == evt["id"]]
    assert intake and intake[0]["request_id"] == "hostrun-webhook-0001"
