"""py-spy profiles of the web and queue workers while a scenario runs, as files and text.

`Profiler(name, pid)` attaches `py-spy record` (idle samples included, so time
spent waiting on PostgreSQL shows as well as CPU) to a process and its children
for the length of a `with` block, then writes under `bench/profiles/`:
`<name>.txt` (collapsed stacks, the raw data), `<name>.svg` (a flame graph) and
`<name>.summary.txt` (where the time went: waits by kind, top functions by own
and by inclusive time, and time by package).

The rule: a profiled run is slower than an unprofiled one, so its figures are
never reported as measurements, only its proportions.
"""

from __future__ import annotations

import contextlib
import html
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from bench import procs

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"

# A leaf frame says what an idle sample was waiting for.
WAITS = [
    (
        "waiting on PostgreSQL (a query's round trip or a row lock)",
        ("Connection.wait (psycopg", "psycopg/waiting", "wait_c (", "Connection._wait"),
    ),
    ("gunicorn: waiting for the client to close (close_graceful)", ("close_graceful",)),
    (
        "gunicorn: waiting for a request",
        ("SyncWorker.wait", "SyncWorker.accept", "socket.accept", "select (selectors"),
    ),
    ("django-q: waiting for a task", ("Queue.get", "queues.py", "Condition.wait")),
    ("sleeping", ("time.sleep", "<built-in method sleep")),
    ("waiting on a socket / HTTP (Stripe)", ("socket.py", "ssl.py", "http/client.py", "urllib3")),
]

PACKAGES = [
    (
        "django.db (ORM, SQL compile)",
        ("django/db/models", "django/db/backends", "django/db/transaction"),
    ),
    ("psycopg", ("psycopg/",)),
    ("django-q2", ("django_q/",)),
    ("ninja", ("ninja/",)),
    ("pydantic", ("pydantic",)),
    ("django (request, middleware, other)", ("django/",)),
    ("stripe-python", ("stripe/",)),
    ("json", ("json/",)),
    ("logging", ("logging/",)),
    ("gunicorn", ("gunicorn/",)),
    ("billing", ("billing/",)),
    ("credits", ("credits/",)),
    ("purchasables", ("purchasables/",)),
    ("platform_core / kernel", ("platform_core/", "kernel/")),
    ("pluggy", ("pluggy/",)),
    ("hmac / hashlib", ("hmac.py", "hashlib")),
    ("pickle / signing", ("pickle", "signing", "core_signing")),
]


class Profiler:
    def __init__(
        self, name: str, pid: int, *, rate: int = 100, out_dir: Path = PROFILE_DIR
    ) -> None:
        self.name = name
        self.pid = pid
        self.rate = rate
        self.out_dir = out_dir
        self.proc: subprocess.Popen | None = None
        self.raw = out_dir / f"{name}.txt"

    @staticmethod
    def available() -> bool:
        return bool(shutil.which("py-spy") or (Path(sys.executable).parent / "py-spy").exists())

    def _exe(self) -> str:
        local = Path(sys.executable).parent / "py-spy"
        return str(local) if local.exists() else "py-spy"

    def __enter__(self) -> Profiler:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(  # noqa: S603 - py-spy with our own arguments
            [
                self._exe(),
                "record",
                "--pid",
                str(self.pid),
                "--subprocesses",
                "--idle",
                "--format",
                "raw",
                "--rate",
                str(self.rate),
                "--output",
                str(self.raw),
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.out_dir / f"{self.name}.pyspy.log").open("wb"),
            start_new_session=True,
        )
        time.sleep(0.5)  # let it attach before the work starts
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if self.raw.exists():
            stacks = read_collapsed(self.raw)
            (self.out_dir / f"{self.name}.svg").write_text(flamegraph_svg(stacks, self.name))
            (self.out_dir / f"{self.name}.summary.txt").write_text(summary(stacks, self.name))


def read_collapsed(path: Path) -> Counter:
    stacks: Counter = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[stack] += int(count)
    return stacks


def _frames(stack: str) -> list[str]:
    return [f for f in stack.split(";") if f and not f.startswith("process ")]


def _idle_kind(frames: list[str]) -> str | None:
    leaf = frames[-1] if frames else ""
    for kind, marks in WAITS:
        if any(m in leaf for m in marks):
            return kind
    return None


def _is_worker(frames: list[str]) -> bool:
    """Samples of the processes that serve requests or run tasks, not of the gunicorn
    arbiter, the qcluster sentinel, pusher or monitor."""
    text = ";".join(frames)
    return (
        "SyncWorker.run" in text
        or "ThreadWorker.run" in text
        or ("worker (django_q/worker.py" in text)
    )


def summary(stacks: Counter, title: str, top: int = 30) -> str:
    total = sum(stacks.values()) or 1
    working = Counter({s: n for s, n in stacks.items() if _is_worker(_frames(s))})
    work_total = sum(working.values()) or 1
    waits: Counter = Counter()
    self_time: Counter = Counter()
    inclusive: Counter = Counter()
    packages: Counter = Counter()
    for stack, n in working.items():
        frames = _frames(stack)
        kind = _idle_kind(frames)
        if kind:
            waits[kind] += n
        else:
            waits["running Python / C code"] += n
            self_time[frames[-1]] += n
            for pkg, marks in PACKAGES:
                if any(m in stack.rsplit(";", 1)[-1] for m in marks):
                    packages[pkg] += n
                    break
            else:
                packages["other"] += n
        for frame in set(frames):
            inclusive[frame] += n
    lines = [
        f"{title}: {total} samples, {work_total} in web/queue worker processes "
        f"({100 * work_total / total:.0f}%); percentages below are of those.",
        "",
        "Where the worker's time went (leaf frame of each sample):",
    ]
    lines += [f"  {100 * n / work_total:5.1f}%  {k}" for k, n in waits.most_common()]
    lines += ["", "CPU by package of the leaf frame:"]
    lines += [f"  {100 * n / work_total:5.1f}%  {k}" for k, n in packages.most_common()]
    lines += ["", f"Top {top} functions by own time (CPU samples only):"]
    lines += [f"  {100 * n / work_total:5.1f}%  {k}" for k, n in self_time.most_common(top)]
    lines += ["", f"Top {top * 2} functions by inclusive time (waits included):"]
    lines += [f"  {100 * n / work_total:5.1f}%  {k}" for k, n in inclusive.most_common(top * 2)]
    return "\n".join(lines) + "\n"


def flamegraph_svg(stacks: Counter, title: str, width: int = 1600, row: int = 16) -> str:
    """A plain flame graph (root at the bottom), one <rect> per frame, titles on hover."""
    tree: dict = {"n": 0, "kids": {}}
    for stack, n in stacks.items():
        node = tree
        node["n"] += n
        for frame in _frames(stack):
            node = node["kids"].setdefault(frame, {"n": 0, "kids": {}})
            node["n"] += n
    total = tree["n"] or 1

    def depth(node) -> int:
        return 1 + max((depth(k) for k in node["kids"].values()), default=0)

    levels = depth(tree)
    height = (levels + 2) * row
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="monospace" font-size="11">',
        f'<text x="4" y="12">{html.escape(title)} ({total} samples; hover for names)</text>',
    ]
    palette = defaultdict(lambda: "#e8a33d")
    palette.update(
        {
            "psycopg": "#6aa0d8",
            "django/db": "#8fb8e0",
            "django_q": "#b58fe0",
            "billing": "#7cc47c",
            "credits": "#7cc47c",
            "ninja": "#e07f7f",
        }
    )

    def colour(frame: str) -> str:
        for mark, c in palette.items():
            if mark in frame:
                return c
        return "#e8a33d"

    def draw(node, x: float, level: int) -> None:
        for frame, kid in sorted(node["kids"].items()):
            w = width * kid["n"] / total
            if w >= 0.5:
                y = height - (level + 1) * row
                label = html.escape(frame)
                pct = 100 * kid["n"] / total
                out.append(
                    f"<g><title>{label} — {kid['n']} samples ({pct:.1f}%)</title>"
                    f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 1}" '
                    f'fill="{colour(frame)}"/>'
                )
                if w > 60:
                    chars = int(w / 7)
                    out.append(f'<text x="{x + 2:.1f}" y="{y + 11}">{label[:chars]}</text>')
                out.append("</g>")
                draw(kid, x, level + 1)
            x += w

    draw(tree, 0.0, 0)
    out.append("</svg>")
    return "\n".join(out)


def pids_for(proc_pid: int) -> list[int]:
    return [proc_pid, *procs.children(proc_pid)]
