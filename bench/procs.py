"""Child processes the harness starts, and what /proc says about them.

The rule: every process is started in its own process group and stopped as a
group (SIGTERM, then SIGKILL after a grace period), and every one is registered
with `REGISTRY` as it starts, so a failure, Ctrl-C or a time limit anywhere in a
run still stops all of them. Nothing here ever signals a process it did not start.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, *, timeout: float, proc: Proc | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if proc is not None and proc.popen.poll() is not None:
                raise RuntimeError(
                    f"{proc.name} exited with {proc.popen.returncode} before listening on "
                    f"{port}; see {proc.log_path}"
                ) from None
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"nothing listens on 127.0.0.1:{port} after {timeout}s"
                ) from None
            time.sleep(0.05)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the whole group, then SIGKILL whatever is left after `grace` seconds."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        # The leader may be gone while its children (gunicorn workers, the
        # qcluster sentinel) linger in the group: make sure of them too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        REGISTRY.forget(self)

    def kill_group(self) -> None:
        """SIGKILL the whole group at once (a crash, not a shutdown)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        REGISTRY.forget(self)


def stop_together(procs: list[Proc], grace: float) -> None:
    """SIGTERM every group at once, SIGKILL what is left after `grace` seconds."""
    for proc in procs:
        if proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
    for proc in procs:
        proc.stop(grace=0)


@dataclass
class _Registry:
    procs: list[Proc] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, proc: Proc) -> None:
        with self.lock:
            self.procs.append(proc)

    def forget(self, proc: Proc) -> None:
        with self.lock:
            if proc in self.procs:
                self.procs.remove(proc)

    def stop_all(self, grace: float = 8.0) -> None:
        with self.lock:
            procs = list(reversed(self.procs))
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                if proc.popen.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        for proc in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=5)
            self.forget(proc)


REGISTRY = _Registry()
atexit.register(REGISTRY.stop_all)


def start(name: str, argv: Sequence[str], *, env: dict[str, str], log_dir: Path, cwd: Path) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log = log_path.open("ab")
    popen = subprocess.Popen(  # noqa: S603 - our own argv, never a shell
        list(argv),
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, stopped as one
    )
    log.close()
    proc = Proc(name=name, popen=popen, log_path=log_path)
    REGISTRY.add(proc)
    return proc


def install_signal_handlers() -> None:
    """Ctrl-C and SIGTERM unwind the run (finally blocks stop the stack)."""

    def _raise(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _raise)
    signal.signal(signal.SIGINT, _raise)
    signal.signal(signal.SIGHUP, _raise)


def watchdog(seconds: float, what: str) -> threading.Timer:
    """Past the time limit, stop every process we started and exit, whatever is running."""

    def _fire() -> None:
        print(f"\n{what}: time limit of {seconds:.0f}s reached; stopping everything.", flush=True)
        REGISTRY.stop_all(grace=3)
        os._exit(3)

    timer = threading.Timer(seconds, _fire)
    timer.daemon = True
    timer.start()
    return timer


# --- /proc -------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kb(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) in KiB from /proc/<pid>/status; (0, 0) if gone."""
    cur = peak = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1])
    except OSError:
        pass
    return cur, peak


def pids_named(comm: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == comm:
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, from /proc/stat."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in first]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


class CpuMeter:
    """CPU used by groups of processes over a window, as a share of the machine."""

    def __init__(self, groups: dict[str, callable]) -> None:
        self.groups = groups  # name -> function answering the pids now
        self.start: dict[str, dict[int, float]] = {}
        self.t0 = 0.0
        self.wall = 0.0  # the last window's length, set by `end`
        self.machine0 = (0.0, 0.0)

    def begin(self) -> None:
        self.t0 = time.monotonic()
        self.machine0 = machine_cpu_seconds()
        self.start = {
            name: {pid: cpu_seconds(pid) for pid in pids()} for name, pids in self.groups.items()
        }

    def end(self) -> dict[str, float]:
        """Each group's share of the machine's CPU capacity (cores × wall time), in %."""
        wall = time.monotonic() - self.t0
        self.wall = wall
        capacity = wall * (os.cpu_count() or 1)
        out = {}
        for name, pids in self.groups.items():
            used = 0.0
            for pid in pids():
                used += cpu_seconds(pid) - self.start.get(name, {}).get(pid, 0.0)
            out[name] = round(100 * used / capacity, 1) if capacity else 0.0
        busy1, total1 = machine_cpu_seconds()
        busy0, total0 = self.machine0
        out["machine busy"] = round(100 * (busy1 - busy0) / max(total1 - total0, 1e-9), 1)
        return out
