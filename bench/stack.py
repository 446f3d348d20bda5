"""The stack under test: real processes on 127.0.0.1, started and stopped by the harness.

PostgreSQL is the local server (a dedicated database, dropped and migrated per
run); the harness starts localstripe, a timing proxy in front of it, gunicorn
serving `platform_core.wsgi` and one or more `manage.py qcluster` processes,
all with production settings (DEBUG=0, a real-looking SECRET_KEY,
CONN_MAX_AGE=600, Stripe pointed at localstripe through the proxy).

The rule: every process here is started through `bench.procs.start` (its own
process group, registered), so `Stack.stop` — or the registry's atexit and
watchdog — stops all of them, whatever went wrong.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench import procs

ROOT = Path(__file__).resolve().parent.parent
# logs and scratch files of a run: outside the checkout, where `make clean` or a
# `make run` that resets var/ cannot pull them from under a running stack.
RUN_ROOT = Path(tempfile.gettempdir()) / "tollgate-bench"
WEBHOOK_SECRET = "whsec_bench_" + "b3nch" * 6
DEFAULT_SERVER_URL = "postgres://postgres@127.0.0.1:5432/"


def server_url() -> str:
    """The PostgreSQL server to use: BENCH_DATABASE_URL's, else DATABASE_URL's, else local."""
    raw = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL") or ""
    if not raw.startswith("postgres"):
        raw = DEFAULT_SERVER_URL
    parts = urlsplit(raw)
    return urlunsplit((parts.scheme, parts.netloc, "/", "", ""))


def database_url(name: str) -> str:
    return server_url().rstrip("/") + "/" + name


@dataclass
class StackConfig:
    db_name: str = "tollgate_bench"
    web_workers: int = 2
    web_worker_class: str = "sync"
    web_threads: int = 1
    with_stripe: bool = True
    run_dir: Path = RUN_ROOT / "tollgate_bench"
    # Extra environment for every process (e.g. TOLLGATE_EVENT_MAX_ATTEMPTS).
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass
class QueueCluster:
    """One `manage.py qcluster` process: main → sentinel → workers, monitor, pusher."""

    proc: procs.Proc
    workers: int
    aux: set[int] = field(default_factory=set)  # the monitor's and pusher's pids

    @property
    def sentinel(self) -> int | None:
        kids = procs.children(self.proc.pid)
        return kids[0] if kids else None

    def worker_pids(self) -> list[int]:
        sentinel = self.sentinel
        if sentinel is None:
            return []
        return [p for p in procs.children(sentinel) if p not in self.aux]

    def all_pids(self) -> list[int]:
        sentinel = self.sentinel
        out = [self.proc.pid]
        if sentinel is not None:
            out += [sentinel, *procs.children(sentinel)]
        return out

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise RuntimeError(f"qcluster exited early; see {self.proc.log_path}")
            sentinel = self.sentinel
            kids = sorted(procs.children(sentinel)) if sentinel else []
            if len(kids) >= self.workers + 2:
                # Spawned in this order: the workers, then the monitor, then the pusher.
                self.aux = set(kids[self.workers : self.workers + 2])
                return
            time.sleep(0.1)
        raise RuntimeError(f"qcluster not ready after {timeout}s; see {self.proc.log_path}")


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.run_dir = config.run_dir
        self.log_dir = self.run_dir / "logs"
        self.db_url = database_url(config.db_name)
        self.web_port = procs.free_port()
        self.stripe_port = procs.free_port()
        self.proxy_port = procs.free_port()
        self.proxy_log = self.run_dir / "stripe_timings.jsonl"
        self.web: procs.Proc | None = None
        self.localstripe: procs.Proc | None = None
        self.proxy: procs.Proc | None = None
        self.clusters: list[QueueCluster] = []
        self.secret_key = "bench-" + secrets.token_urlsafe(40)

    # --- environment ------------------------------------------------------------------

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def stripe_url(self) -> str:
        return f"http://127.0.0.1:{self.stripe_port}"

    def env(self, **more: str) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "STRIPE_", "Q_"))
        }
        env.update(
            DJANGO_SETTINGS_MODULE="bench.settings",
            PYTHONPATH=str(ROOT),
            DATABASE_URL=self.db_url,
            CONN_MAX_AGE="600",
            DEBUG="0",
            SECRET_KEY=self.secret_key,
            ALLOWED_HOSTS="127.0.0.1,localhost",
            STRIPE_SECRET_KEY="sk_test_bench_localstripe",
            STRIPE_PUBLISHABLE_KEY="pk_test_bench_localstripe",
            STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
            STRIPE_API_BASE=f"http://127.0.0.1:{self.proxy_port}",
            LOG_LEVEL=os.environ.get("LOG_LEVEL", "INFO"),
            # Plain HTTP on loopback, as behind a TLS-terminating proxy.
            SECURE_SSL_REDIRECT="0",
            # One client sending thousands of requests on purpose (bench/settings.py).
            TOLLGATE_RATE_LIMIT_AUTH_TOKEN="off",
            TOLLGATE_RATE_LIMIT_PAYMENTS_CREATE="off",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.config.extra_env)
        env.update(more)
        return env

    def configure_django_here(self) -> None:
        """Point this process's Django at the stack's database (call before django.setup)."""
        os.environ.update(self.env())
        os.environ.pop("PYTHONUNBUFFERED", None)
        import django

        django.setup()

    # --- database ---------------------------------------------------------------------

    def database_create(self) -> None:
        import psycopg

        with psycopg.connect(database_url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.config.db_name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.config.db_name}"')

    def database_drop(self) -> None:
        import psycopg

        with psycopg.connect(database_url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.config.db_name}" WITH (FORCE)')

    def migrate(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / "migrate.log").open("wb") as log:
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "--noinput"],
                cwd=ROOT,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=300,
            )

    # --- processes --------------------------------------------------------------------

    def start_stripe(self) -> None:
        self.localstripe = procs.start(
            "localstripe",
            [
                sys.executable,
                "-m",
                "devstripe",
                "--port",
                str(self.stripe_port),
            ],
            env=self.env(),
            log_dir=self.log_dir,
            cwd=ROOT,
        )
        self.proxy_log.parent.mkdir(parents=True, exist_ok=True)
        self.proxy_log.write_text("")
        self.proxy = procs.start(
            "stripe-proxy",
            [
                sys.executable,
                "-m",
                "bench.stripe_proxy",
                "--port",
                str(self.proxy_port),
                "--upstream",
                self.stripe_url,
                "--log",
                str(self.proxy_log),
            ],
            env=self.env(),
            log_dir=self.log_dir,
            cwd=ROOT,
        )
        procs.wait_for_port(self.stripe_port, timeout=30, proc=self.localstripe)
        procs.wait_for_port(self.proxy_port, timeout=30, proc=self.proxy)

    def web_argv(self, app: str, port: int) -> list[str]:
        """gunicorn as this stack runs it, serving `app` on `port`."""
        c = self.config
        return [
            sys.executable, "-m", "gunicorn", app,
            "--bind", f"127.0.0.1:{port}",
            "--workers", str(c.web_workers),
            "--worker-class", c.web_worker_class,
            "--threads", str(c.web_threads),
            "--backlog", "2048",
            "--timeout", "60",
            "--graceful-timeout", "5",
        ]  # fmt: skip

    def start_web(self) -> None:
        c = self.config
        argv = self.web_argv("platform_core.wsgi:application", self.web_port)
        self.web = procs.start("gunicorn", argv, env=self.env(), log_dir=self.log_dir, cwd=ROOT)
        procs.wait_for_port(self.web_port, timeout=60, proc=self.web)
        deadline = time.monotonic() + 60
        while len(self.web_worker_pids()) < c.web_workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn workers did not start; see {self.web.log_path}")
            time.sleep(0.1)
        self._warm_web()

    def _warm_web(self) -> None:
        """One request per worker, so the first measured one does not pay for imports."""
        import urllib.request

        for _ in range(self.config.web_workers * 3):
            with contextlib.suppress(Exception):  # warming only; a 4xx is fine
                urllib.request.urlopen(self.web_url + "/api/v1/catalog/", timeout=10).read()  # noqa: S310

    def web_worker_pids(self) -> list[int]:
        return procs.children(self.web.pid) if self.web else []

    def web_pids(self) -> list[int]:
        return [self.web.pid, *self.web_worker_pids()] if self.web else []

    def start_queue(self, workers: int) -> QueueCluster:
        n = len(self.clusters) + 1
        proc = procs.start(
            f"qcluster-{n}",
            [sys.executable, "manage.py", "qcluster"],
            env=self.env(Q_WORKERS=str(workers)),
            log_dir=self.log_dir,
            cwd=ROOT,
        )
        cluster = QueueCluster(proc=proc, workers=workers)
        cluster.wait_ready()
        self.clusters.append(cluster)
        return cluster

    def stop_queues(self, grace: float = 8.0) -> None:
        """Stop every qcluster at once (django-q2 may take longer than `grace` to stop
        on SIGTERM; what is left is SIGKILLed, which its design survives)."""
        procs.stop_together([c.proc for c in self.clusters], grace)
        self.clusters = []

    def queue_worker_pids(self) -> list[int]:
        return [pid for c in self.clusters for pid in c.worker_pids()]

    def queue_pids(self) -> list[int]:
        return [pid for c in self.clusters for pid in c.all_pids()]

    def stripe_pids(self) -> list[int]:
        return [p.pid for p in (self.localstripe, self.proxy) if p is not None]

    def start(self, *, fresh_database: bool = True) -> None:
        if fresh_database:
            self.database_create()
            self.migrate()
        if self.config.with_stripe:
            self.start_stripe()
        self.start_web()

    def stop(self) -> None:
        running = [c.proc for c in self.clusters]
        running += [p for p in (self.web, self.proxy, self.localstripe) if p is not None]
        procs.stop_together(running, grace=8.0)
        self.clusters = []
        self.web = self.proxy = self.localstripe = None
