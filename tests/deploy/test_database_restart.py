"""A PostgreSQL restart under load: the web tier comes back by itself, with no 500.

The test runs a PostgreSQL cluster of its own (initdb and pg_ctl, on a free port),
migrates it through the entrypoint, starts the web process (gunicorn, persistent
connections) and keeps signed webhooks coming from a few threads while the cluster
is stopped for two seconds and started again.

What is acceptable: while PostgreSQL is down a request may fail, and then it
answers 503 with Retry-After (never 500); every request sent after PostgreSQL is
back answers 200. Then PostgreSQL restarts while nothing is sent: without
CONN_HEALTH_CHECKS each web worker's next request would meet its dead connection.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.deploy import hostrun
from tests.stripe_events import encode, event, new_id, sign

pytestmark = pytest.mark.e2e

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def as_postgres(*command: str) -> list[str]:
    """Run a server command as the postgres user when root (initdb refuses root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return list(command)


class Cluster:
    def __init__(self, directory: Path, port: int) -> None:
        self.data, self.port = directory / "data", port
        self.log = directory / "postgres.log"

    def ctl(self, *args: str) -> None:
        subprocess.run(
            as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), *args),
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip

    def init(self) -> None:
        subprocess.run(
            as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust",
                        "-U", "postgres", "--no-sync"),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.ctl("start", "-w", "-o", options)

    def stop(self) -> None:
        self.ctl("stop", "-m", "fast", "-w")


@pytest.fixture
def cluster():
    if not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL 15's server programs are not installed")
    # Not under pytest's tmp_path: the postgres user cannot enter root's.
    directory = Path(tempfile.mkdtemp(prefix="tollgate-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
    cluster = Cluster(directory, hostrun.free_port())
    cluster.init()
    cluster.start()
    subprocess.run(
        [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres",
         "tollgate"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    yield cluster
    with contextlib.suppress(subprocess.CalledProcessError):
        cluster.stop()
    shutil.rmtree(directory, ignore_errors=True)


def deliver() -> tuple[float, float, int]:
    evt = event("product.created", {"id": new_id("prod"), "object": "product"})
    payload = encode(evt)
    headers = {
        "Stripe-Signature": sign(payload, hostrun.WEBHOOK_SECRET),
        "Content-Type": "application/json",
    }
    sent = time.monotonic()
    try:
        status, response_headers, body = hostrun.get(BASE[0] + WEBHOOK, headers, payload)
    except OSError:
        return sent, time.monotonic(), 0  # no answer at all
    if status == 503:
        assert response_headers["Retry-After"], body
        assert json.loads(body)["message"], body
    return sent, time.monotonic(), status


BASE: list[str] = []
WEBHOOK = "/api/v1/payments/webhook/"


def test_a_postgresql_restart_under_load_gives_no_500(cluster, tmp_path):
    port = hostrun.free_port()
    env = hostrun.production_env(
        f"postgres://postgres@127.0.0.1:{cluster.port}/tollgate", tmp_path, port,
        CONN_MAX_AGE="600", WEB_CONCURRENCY="2",
    )  # fmt: skip
    hostrun.run(["migrate"], env)
    BASE[:] = [f"http://127.0.0.1:{port}"]
    web_log = tmp_path / "web.log"
    web = hostrun.start(["web"], env, web_log)
    results: list[tuple[float, float, int]] = []
    stop = threading.Event()

    def load() -> None:
        deadline = time.monotonic() + 60  # bounded, whatever happens
        while not stop.is_set() and time.monotonic() < deadline:
            results.append(deliver())
            time.sleep(0.01)

    try:
        hostrun.wait_until_up(BASE[0], web, web_log)
        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(2)
        down_at = time.monotonic()
        cluster.stop()
        time.sleep(2)
        cluster.start()
        up_at = time.monotonic()
        time.sleep(3)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        # A restart while no request comes: every worker keeps its dead connection
        # until its next request, which must still be served.
        cluster.stop()
        cluster.start()
        quiet = [deliver()[2] for _ in range(12)]
    finally:
        stop.set()
        hostrun.stop(web)

    # Answered before the stop; in flight or sent while down; sent once it was back.
    before = [status for sent, done, status in results if done < down_at]
    during = [status for sent, done, status in results if done >= down_at and sent < up_at]
    after = [status for sent, done, status in results if sent >= up_at]
    assert before and set(before) == {200}, before
    assert during and set(during) <= {200, 503}, sorted(set(during))
    assert 503 in during  # the window was real
    assert len(after) >= 20 and set(after) == {200}, (
        f"after the restart: {sorted(set(after))}\n" + web_log.read_text()[-3000:]
    )
    assert set(quiet) == {200}, f"after a quiet restart: {quiet}"
