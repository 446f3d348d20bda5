"""Run Tollgate's production processes on this host, as the entrypoint starts them.

A throwaway database next to the suite's, a production environment (DEBUG off,
real-looking secrets), and helpers to start `deploy/entrypoint.sh` commands as
process groups and stop them.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"
WEBHOOK_SECRET = "whsec_hostrun_" + "a1" * 12


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_create(base_url: str, name: str) -> str:
    """A new empty database on the suite's server; answers its URL."""
    admin = base_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return base_url.rsplit("/", 1)[0] + f"/{name}"


def database_drop(base_url: str, name: str) -> None:
    admin = base_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def production_env(database_url: str, tmp: Path, port: int, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("STRIPE_", "PROMETHEUS_", "DJANGO_", "PYTEST_"))
    }
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        DEBUG="0",
        DATABASE_URL=database_url,
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        STRIPE_SECRET_KEY="sk_test_" + "hostrun" * 4,
        STRIPE_PUBLISHABLE_KEY="pk_test_" + "hostrun" * 4,
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        STRIPE_API_BASE="http://127.0.0.1:9",  # nothing here calls Stripe
        # Plain HTTP on loopback: no TLS in front, so no redirect to it.
        SECURE_SSL_REDIRECT="0",
        SILENCED_SYSTEM_CHECKS="security.W008",
        STATIC_ROOT=str(tmp / "static"),
        STATIC_MANIFEST="1",
        Q_STATUS_DIR=str(tmp / "q-status"),
        BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="2",
        Q_WORKERS="1",
        LOG_FORMAT="json",
    )
    env.update(extra)
    return env


def run(command: list[str], env: dict[str, str], timeout: float = 180) -> str:
    result = subprocess.run(
        [str(ENTRYPOINT), *command],
        env=env,
        cwd=env.get("RUN_DIR", str(ROOT)),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result.stdout


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    out = log.open("wb")
    return subprocess.Popen(
        [str(ENTRYPOINT), *command],
        env=env,
        cwd=str(ROOT),
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen) -> bool:
    """SIGTERM to the main process, as `docker stop` and Kubernetes send it; answers
    whether it ended by itself in time (else its whole group is killed)."""
    if process.poll() is not None:
        return True
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
        return True
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        return False


def get(url: str, headers: dict[str, str] | None = None, data: bytes | None = None):
    """(status, headers, body) of one request; never raises for an HTTP status."""
    request = urllib.request.Request(url, data=data, headers=headers or {})  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - loopback
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def wait_until_up(base: str, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            if get(base + "/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError("the web process did not answer: " + log.read_text()[-3000:])
