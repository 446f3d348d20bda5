"""`make run` as a newcomer runs it: the whole platform comes up, answers, and stops on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest
from django.conf import settings

from devstack.database import url_for
from tollgate_testing.stripe_server import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# What the suite's own environment sets that `make run` must not inherit.
NOT_INHERITED = ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "CONN_MAX_AGE", "SECURE_SSL_REDIRECT")


@pytest.fixture
def run_database():
    """A database of its own on the suite's server, dropped afterwards."""
    name = f"tollgate_make_run_{os.getpid()}"
    admin = settings.DATABASES["default"]
    conninfo = dict(
        dbname="postgres", user=admin["USER"], host=admin["HOST"], port=admin["PORT"] or None
    )
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield url_for(admin, name)
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        return response.status, response.read()


@pytest.mark.e2e
def test_make_run_serves_the_platform_and_stops_everything_on_ctrl_c(run_database, tmp_path):
    web_port, stripe_port = free_port(), free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in NOT_INHERITED and not key.startswith("STRIPE_")
    }
    env |= {
        "DATABASE_URL": run_database,
        "TOLLGATE_PORT": str(web_port),
        "LOCALSTRIPE_PORT": str(stripe_port),
        # Not the developer's own var/localstripe.pickle.
        "DEVSTRIPE_STORE": str(tmp_path / "stripe.pickle"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.run"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not any("Tollgate is running" in line for line in lines):
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.2)
        banner = "".join(lines)
        assert f"Web client   http://127.0.0.1:{web_port}/ " in banner
        assert f"http://127.0.0.1:{web_port}/api/v1/docs" in banner
        assert "demo / demo-password-123" in banner

        status, body = _get(f"http://127.0.0.1:{web_port}/api/v1/catalog/")
        assert status == 200
        names = {t["name"] for t in json.loads(body)["purchase_types"]}
        assert {"credits", "workshop", "subscription"} <= names
        status, _ = _get(f"http://127.0.0.1:{web_port}/")
        assert status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
        reader.join(timeout=5)
    output = "".join(lines)
    assert code == 0, output
    assert "all processes stopped" in output
    assert (tmp_path / "stripe.pickle").exists()  # the development Stripe kept its data
    for port in (web_port, stripe_port):
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
