"""`make run`'s web server on PostgreSQL keeps no database connection per request thread.

The development server serves each client connection on a new thread. With
`CONN_MAX_AGE` above zero (what the worker needs), a thread that ends keeps its
PostgreSQL connection open, so every burst of requests left that many
connections behind until PostgreSQL refused new clients. This starts the web
server exactly as `make run` does (the command of `devstack.supervisor`, the
environment of `devstack.run`), against this test session's database, makes a
burst of concurrent requests that each read the database, and counts its
connections in `pg_stat_activity`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db import connection

from devstack.database import url_for
from devstack.run import development_defaults
from devstack.supervisor import Supervisor
from tollgate_testing.stripe_server import free_port

pytestmark = pytest.mark.django_db(transaction=True)

BURST = 40


def _web_argv(port: int) -> list[str]:
    """The web child's command line, as `make run`'s supervisor starts it."""
    supervisor = Supervisor(database_label="")
    supervisor.web_port, supervisor.stripe_port = port, None
    [web] = [child for child in supervisor._children() if child.name == "web"]
    return web.argv


def _connections_of(app_name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [app_name]
        )
        return cursor.fetchone()[0]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the web server exited: {proc.stdout.read().decode()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the web server did not start")


def test_a_burst_of_requests_leaves_the_web_server_holding_few_connections(tmp_path: Path):
    port = free_port()
    app_name = f"tollgate-web-{uuid.uuid4().hex[:8]}"
    base_env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DEBUG", "SECRET_KEY", "CONN_MAX_AGE"}
    }
    env = {
        **base_env,
        **development_defaults({**base_env, "TOLLGATE_PORT": str(port)}),
        "DATABASE_URL": url_for(connection.settings_dict),
        "PGAPPNAME": app_name,  # libpq names each of the server's connections
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        _web_argv(port),
        cwd=settings.BASE_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_port(port, proc)
        url = f"http://127.0.0.1:{port}/api/v1/catalog/"
        assert requests.get(url, timeout=30).status_code == 200

        def fetch(_: int) -> int:
            # A client of its own each: a new TCP connection, so a new server thread.
            return requests.get(url, timeout=60, headers={"Connection": "close"}).status_code

        with ThreadPoolExecutor(max_workers=BURST) as pool:
            statuses = list(pool.map(fetch, range(BURST * 2)))
        assert statuses == [200] * (BURST * 2)
        time.sleep(1)  # let the last threads finish

        held = _connections_of(app_name)

        assert held <= 2, f"the idle web server holds {held} connections"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
