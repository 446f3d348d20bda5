"""The supervisor of `make run`: the whole platform on one machine, for development.

It migrates the database, seeds the demo data, then starts and supervises three
children: the development Stripe (only when `STRIPE_API_BASE` is a loopback
address), the django-q2 worker and the web server; it registers the webhook
receiver with the development Stripe and prints the URLs and demo logins. Start
it through `python -m devstack.run`, which sets the development environment (and
starts the embedded database) before Django reads its settings.

The one rule: every child runs in its own process group and is stopped by this
process, whatever happens (Ctrl-C, SIGTERM, a child dying, an error while
starting), so no server is left holding a port. Terminal signals reach only this
process; it then stops the web server, the worker and localstripe in that order.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from devstack.run import DEFAULT_WEB_PORT, port_from_env
from platform_core.management.commands.seed_demo import DEMO_USERS

WEBHOOK_PATH = "/api/v1/payments/webhook/"
LOCALSTRIPE_RECEIVER = "tollgate"
STARTUP_TIMEOUT = 60.0  # seconds for a child's port to answer
STOP_TIMEOUT = 15.0  # seconds a child gets to exit before it is killed
_print_lock = threading.Lock()


class StopRequested(Exception):
    """A signal asked the whole platform to stop."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)


def say(message: str = "", stream: IO[str] | None = None) -> None:
    """Print one of run_local's own lines, never interleaved with a child's output."""
    with _print_lock:
        print(message, file=stream or sys.stdout, flush=True)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could listen on host:port (same socket options as the servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _die_with_parent() -> None:
    """Run in the child before exec: SIGTERM it if run_local itself is killed (Linux)."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass
class Child:
    """One supervised process and the thread that copies its output, prefixed."""

    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    pump: threading.Thread | None = field(default=None, repr=False)

    @property
    def command(self) -> str:
        return " ".join(Path(a).name if a == sys.executable else a for a in self.argv)

    def start(self, *, cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own process group: Ctrl-C reaches run_local only, which then stops
            # the children in order, and killpg() also reaches a child's children
            # (the worker's processes).
            process_group=0,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )

    def start_pump(self, width: int) -> None:
        assert self.process is not None and self.process.stdout is not None
        prefix = f"{self.name:<{width}} | "

        def copy(stream: IO[bytes]) -> None:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                with _print_lock:
                    sys.stdout.write(prefix + line + "\n")
                    sys.stdout.flush()

        self.pump = threading.Thread(target=copy, args=(self.process.stdout,), daemon=True)
        self.pump.start()

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def signal_group(self, signum: int) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    def stop(self, timeout: float) -> None:
        """SIGTERM the child, wait, then SIGKILL whatever is left of its process group.

        Only the child itself gets the SIGTERM: the worker's main process stops its
        own processes in order, and hangs if they are signalled behind its back.
        """
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                say(f"==> {self.name} did not stop within {timeout:.0f} s; killing it.")
        # Also reaps grandchildren that outlived their parent (the worker's processes).
        self.signal_group(signal.SIGKILL)
        self.process.wait()
        if self.pump is not None:
            self.pump.join(timeout=2)


class Supervisor:
    """Migrate, seed the demo data, start the children, and stop them all on Ctrl-C."""

    _stop_signal: int | None = None  # set by the signal handler, read at safe points

    def __init__(self, *, database_label: str) -> None:
        self.database_label = database_label

    def run(self, *, no_seed: bool = False) -> None:
        if not settings.DEBUG:
            raise CommandError(
                "The development stack needs DEBUG on. Start it with `make run` "
                "(python -m devstack.run), which sets the development defaults."
            )
        if not settings.STRIPE_SECRET_KEY:
            raise CommandError(
                "STRIPE_SECRET_KEY is not set. Start with `make run`, which uses localstripe "
                "when it is unset, or export a Stripe test key."
            )
        self.base_dir = Path(settings.BASE_DIR)
        self.web_port = port_from_env(os.environ, "TOLLGATE_PORT", DEFAULT_WEB_PORT)
        self.stripe_port = self._localstripe_port()
        self._check_ports_free()
        self._prepare_database(seed=not no_seed)

        children = self._children()
        # Signals only set a flag, read at safe points (the waiting loops), so a
        # Ctrl-C never lands in the middle of starting a child.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_signal)

        failure: str | None = None
        try:
            self._start(children)
            self._banner()
            failure = self._supervise(children)
        except StopRequested as stop:
            say(f"\n==> {stop}: stopping Tollgate.")
        except CommandError as error:
            failure = str(error)
        finally:
            for child in children:  # web first, localstripe last
                if child.process is not None:
                    say(f"==> stopping {child.name}")
                    child.stop(STOP_TIMEOUT)
            say("==> all processes stopped.")
        if failure:
            raise CommandError(failure)

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stop_signal = signum

    def _check_stop(self) -> None:
        if self._stop_signal is not None:
            raise StopRequested(self._stop_signal)

    # --- before any child starts ----------------------------------------------------

    def _localstripe_port(self) -> int | None:
        """The port to run localstripe on, or None when the Stripe API is not local."""
        base = urllib.parse.urlsplit(settings.STRIPE_API_BASE)
        if base.scheme == "http" and base.hostname in {"127.0.0.1", "localhost"}:
            return base.port or 80
        return None

    def _check_ports_free(self) -> None:
        wanted = [("the web server", self.web_port, "TOLLGATE_PORT")]
        if self.stripe_port is not None:
            wanted.append(("localstripe", self.stripe_port, "LOCALSTRIPE_PORT"))
        busy = [
            f"port {port} ({what}) is already in use; stop whatever holds it "
            f"(`ss -ltnp 'sport = :{port}'` shows it) or set {variable} to another port"
            for what, port, variable in wanted
            if not port_is_free(port)
        ]
        if busy:
            raise CommandError("Cannot start: " + "; ".join(busy) + ".")

    def _prepare_database(self, *, seed: bool) -> None:
        say(f"==> database: {self.database_label}; applying migrations")
        call_command("migrate", interactive=False, verbosity=0)
        if seed:
            say("==> demo data")
            call_command("seed_demo")
        # The children open their own connections; this process keeps none open.
        connections.close_all()

    # --- the children ---------------------------------------------------------------

    def _children(self) -> list[Child]:
        """In stopping order: the web server first, so nothing new arrives while the rest stop."""
        python, manage = sys.executable, "manage.py"  # the children run in base_dir
        children = [
            Child(
                "web",
                [python, manage, "run_web", f"127.0.0.1:{self.web_port}", "--noreload"],
            ),
            Child("worker", [python, manage, "qcluster"]),
        ]
        if self.stripe_port is not None:
            children.append(
                Child(
                    "localstripe",
                    [
                        python,
                        "-m",
                        "devstripe",
                        "--port",
                        str(self.stripe_port),
                        # Kept beside the database's data, so the two agree after a restart.
                        "--store",
                        os.environ.get("DEVSTRIPE_STORE")
                        or str(settings.BASE_DIR / "var" / "localstripe.pickle"),
                    ],
                )
            )
        return children

    def _start(self, children: list[Child]) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # localstripe first (the web server talks to it), the web server last. All are
        # started before the output threads exist: fork() from a threaded process is
        # what preexec_fn must avoid.
        for child in reversed(children):
            say(f"==> starting {child.name}: {child.command}")
            child.start(cwd=self.base_dir, env=env)
            self._check_stop()
        width = max(len(child.name) for child in children)
        for child in children:
            child.start_pump(width)

        by_name = {child.name: child for child in children}
        if self.stripe_port is not None:
            self._wait_for_port(by_name["localstripe"], self.stripe_port)
            self._register_localstripe_webhook()
            self._create_localstripe_plans()
        self._wait_for_port(by_name["web"], self.web_port)
        self._check_api_answers()
        if by_name["worker"].exit_code() is not None:
            raise self._died(by_name["worker"])

    def _wait_for_port(self, child: Child, port: int) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not port_answers(port):
            self._check_stop()
            if child.exit_code() is not None:
                raise self._died(child)
            if time.monotonic() > deadline:
                raise CommandError(
                    f"{child.name} did not open port {port} within {STARTUP_TIMEOUT:.0f} s."
                )
            time.sleep(0.2)
        say(f"==> {child.name} is listening on 127.0.0.1:{port}")

    def _register_localstripe_webhook(self) -> None:
        url = f"http://127.0.0.1:{self.web_port}{WEBHOOK_PATH}"
        secret = settings.STRIPE_WEBHOOK_SECRETS[0] if settings.STRIPE_WEBHOOK_SECRETS else ""
        if not secret:
            raise CommandError("STRIPE_WEBHOOK_SECRET is empty; localstripe cannot sign webhooks.")
        body = urllib.parse.urlencode({"url": url, "secret": secret}).encode()
        endpoint = f"http://127.0.0.1:{self.stripe_port}/_config/webhooks/{LOCALSTRIPE_RECEIVER}"
        try:
            with urllib.request.urlopen(endpoint, data=body, timeout=10) as response:
                response.read()
        except (urllib.error.URLError, OSError) as error:
            raise CommandError(
                f"Could not register the webhook with localstripe: {error}"
            ) from error
        say(f"==> localstripe sends webhooks to {url}")

    def _create_localstripe_plans(self) -> None:
        """Give localstripe the legacy plans the demo subscriptions bill through."""
        from credits.models import Plan

        for plan in Plan.objects.filter(active=True, stripe_price_id__startswith="plan_"):
            body = urllib.parse.urlencode(
                {
                    "id": plan.stripe_price_id,
                    "amount": plan.amount,
                    "currency": plan.currency,
                    "interval": plan.interval,
                    "interval_count": plan.interval_count,
                    "product[name]": plan.name,
                }
            ).encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.stripe_port}/v1/plans",
                data=body,
                headers={"Authorization": f"Bearer {settings.STRIPE_SECRET_KEY}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                    response.read()
            except urllib.error.HTTPError as error:
                if error.code not in (400, 409):  # it exists already (kept from the last run)
                    raise CommandError(f"localstripe refused plan {plan}: {error}") from error
        say("==> localstripe has the demo plans")

    def _check_api_answers(self) -> None:
        url = f"http://127.0.0.1:{self.web_port}/api/v1/openapi.json"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                response.read()
        except (urllib.error.URLError, OSError) as error:
            say(f"==> warning: {url} did not answer cleanly ({error}); see the web log above.")

    def _supervise(self, children: list[Child]) -> str:
        """Wait until a child exits on its own; that is a failure, named."""
        while True:
            self._check_stop()
            for child in children:
                if child.exit_code() is not None:
                    return str(self._died(child))
            time.sleep(0.3)

    @staticmethod
    def _died(child: Child) -> CommandError:
        code = child.exit_code() or 0
        how = (
            f"was killed by {signal.Signals(-code).name}"
            if code < 0
            else f"exited with code {code}"
        )
        say(f"==> {child.name} {how}; stopping the others.")
        return CommandError(
            f"{child.name} ({child.command}) {how}, so Tollgate was stopped. "
            "Its last output is above."
        )

    # --- the banner -----------------------------------------------------------------

    def _banner(self) -> None:
        web = f"http://127.0.0.1:{self.web_port}"
        demo = next(u for u in DEMO_USERS if not u.is_staff)
        staff = next(u for u in DEMO_USERS if u.is_staff)
        if self.stripe_port is not None:
            stripe_lines = [
                f"  Stripe API   {settings.STRIPE_API_BASE}  (localstripe, data in var/)",
                f"  Webhooks     localstripe -> {web}{WEBHOOK_PATH}",
            ]
        else:
            stripe_lines = [
                f"  Stripe API   {settings.STRIPE_API_BASE}  (real Stripe, test keys please)",
                "  Webhooks     forward them with the Stripe CLI, in another terminal:",
                f"                 stripe listen --forward-to {web}{WEBHOOK_PATH}",
                "               then restart with STRIPE_WEBHOOK_SECRET set to the whsec_... "
                "secret it prints.",
            ]
            if not settings.STRIPE_WEBHOOK_SECRETS:
                stripe_lines.append(
                    "  WARNING      STRIPE_WEBHOOK_SECRET is not set: every webhook will be "
                    "refused (400), so no order is ever marked paid."
                )
        rule = "-" * 78
        lines = [
            "",
            rule,
            "  Tollgate is running.  Ctrl-C stops everything.",
            "",
            f"  Web client   {web}/   (log in as the demo user and buy)",
            f"  API docs     {web}/api/v1/docs",
            f"  Admin        {web}/admin/",
            *stripe_lines,
            "  Worker       django-q2 (manage.py qcluster)",
            f"  Database     {self.database_label}",
            "",
            f"  Demo login   {demo.username} / {demo.password}",
            f"  Staff login  {staff.username} / {staff.password}   (also for the admin)",
            "",
            '  Try it: README.md, "Buy credits with curl".',
            rule,
            "",
        ]
        say("\n".join(lines))
