"""The one table `make bench` prints, `bench/results.json`, and the figures in docs/performance.md.

The rule: every row says what was measured, the check that makes it trustworthy,
the target it is held to, and how much of the machine the load generator and
unrelated processes took while it ran (a busy machine makes any figure lower).
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench:latest:begin -->", "<!-- bench:latest:end -->"


@dataclass
class Row:
    group: str
    scenario: str
    result: str
    latency: str = ""
    checks: str = ""
    target: str = ""
    ok: bool | None = None  # None: no target
    gen_pct: float | None = None
    other_pct: float | None = None


def _fmt_lat(lat: dict | None, keys=("p50", "p90", "p99", "max")) -> str:
    if not lat or lat.get("n") in (0, None):
        return ""
    return " / ".join(f"{lat[k]:.1f}" if lat.get(k) is not None else "-" for k in keys)


def other_share(cpu: dict, gen_pct: float | None = 0.0) -> float | None:
    """CPU taken by processes outside the stack and the generator (other work on the box)."""
    if not cpu:
        return None
    ours = sum(v for k, v in cpu.items() if k != "machine busy") + (gen_pct or 0.0)
    return round(max(0.0, cpu["machine busy"] - ours), 1)


def render(rows: list[Row], header: list[str]) -> str:
    cols = [
        "#",
        "scenario",
        "result",
        "latency ms p50/p90/p99/max",
        "checks",
        "target",
        "",
        "gen%",
        "other%",
    ]
    data = [
        [
            r.group,
            r.scenario,
            r.result,
            r.latency,
            r.checks,
            r.target,
            {True: "ok", False: "MISS", None: ""}[r.ok],
            "" if r.gen_pct is None else f"{r.gen_pct:.0f}",
            "" if r.other_pct is None else f"{r.other_pct:.0f}",
        ]
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *data, strict=False)]

    def line(values):
        return "  ".join(str(v).ljust(w) for v, w in zip(values, widths, strict=False)).rstrip()

    out = [*header, "", line(cols), line(["-" * w for w in widths])]
    group = None
    for values in data:
        if group is not None and values[0] != group:
            out.append("")
        group = values[0]
        out.append(line(values))
    out += [
        "",
        "gen% = the load generator's CPU, other% = CPU of processes outside the stack, both as a",
        "share of the whole machine during that row; ev/s = webhook deliveries answered 200 per",
        "second (distinct = new events stored per second).",
    ]
    return "\n".join(out)


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass

    def v(name: str) -> str:
        try:
            return version(name)
        except Exception:
            return "?"

    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "django": v("django"),
        "django-q2": v("django-q2"),
        "django-ninja": v("django-ninja"),
        "gunicorn": v("gunicorn"),
        "psycopg": v("psycopg"),
        "localstripe": v("localstripe"),
    }


def git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=ROOT,
            text=True,
            capture_output=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            cwd=ROOT,
            text=True,
            capture_output=True,
            timeout=10,
        ).stdout
        return rev + ("+uncommitted changes" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


def write_results(results: dict) -> None:
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")


def rows_as_dicts(rows: list[Row]) -> list[dict]:
    return [asdict(r) for r in rows]


def update_doc(table: str, meta: dict) -> bool:
    """Replace the generated block of docs/performance.md with this run's table."""
    if not DOC.exists():
        return False
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        return False
    m = meta["machine"]
    block = "\n".join(
        [
            BEGIN,
            f"Latest `make bench`: {meta['finished']} on revision {meta['revision']}, "
            f"{meta['duration_s']:.0f} s; {m['cpu']}, {m['cores']} cores, {m['memory']}, "
            f"{meta['postgres']}; Python {m['python']}, Django {m['django']}, "
            f"django-q2 {m['django-q2']}, gunicorn {m['gunicorn']} "
            f"({meta['web']}); options `{meta['options']}`.",
            "",
            "```text",
            table,
            "```",
            END,
        ]
    )
    text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    DOC.write_text(text)
    return True
