"""`make bench`: measure the money path on this machine, print one table, write bench/results.json.

    python -m bench [--quick] [--profile] [--scale 10000,100000] [--ingest 500,1500,2500] ...

Starts its own stack (see `bench.stack`) on a dedicated database, runs its
scenarios with bounded counts, checks every figure against the
database, stops everything it started, and exits non-zero if a correctness
check failed (a missed performance target is reported, not fatal).

The rule: the whole run is bounded (`--time-limit`, default 570 s): phases that
no longer fit are skipped and say so, and a watchdog stops every process and
exits if anything hangs.
"""

from __future__ import annotations

import argparse
import os
import random
import runpy
import shlex
import sys
import time
import traceback
from typing import Any

from bench import procs, report
from bench.stack import ROOT, RUN_ROOT, Stack, StackConfig


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="small counts (a smoke run, ~1.5 min)")
    p.add_argument(
        "--ingest", default="400,1200,2000", help="distinct events sent at 1, 8 and 32 senders"
    )
    p.add_argument("--dup", type=float, default=0.2, help="share of events delivered twice")
    p.add_argument("--e2e", type=int, default=1000, help="orders per end-to-end run")
    p.add_argument(
        "--paced",
        type=float,
        default=100.0,
        help="events/s of the steady end-to-end run (0 to skip)",
    )
    p.add_argument("--create", type=int, default=100, help="orders per order-creation run")
    p.add_argument("--hot", type=int, default=3000, help="spend requests on the hot account")
    p.add_argument("--hot-senders", type=int, default=16)
    p.add_argument(
        "--credit-pay",
        type=int,
        default=400,
        help="workshop orders paid with credits, and as many by card (0 to skip)",
    )
    p.add_argument("--credit-pay-senders", type=int, default=8)
    p.add_argument(
        "--only",
        choices=["credit-pay"],
        help="run only this row group (with the invariants); the doc is left alone",
    )
    p.add_argument(
        "--scale",
        default="10000,100000",
        help="existing orders+events for the scaling runs ('' to skip)",
    )
    p.add_argument("--scale-ingest", type=int, default=1500, help="events ingested per size")
    p.add_argument("--scale-e2e", type=int, default=1000, help="orders end to end per size")
    p.add_argument(
        "--web-workers",
        type=int,
        default=int(os.environ.get("BENCH_WEB_WORKERS") or _deployed_web_workers()),
        help="gunicorn workers (default: what gunicorn.conf.py starts on this machine)",
    )
    p.add_argument("--worker-class", default=os.environ.get("BENCH_WORKER_CLASS", "sync"))
    p.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", 1)))
    p.add_argument("--db", default=os.environ.get("BENCH_DB", "tollgate_bench"))
    p.add_argument(
        "--profile",
        action="store_true",
        help="attach py-spy to the web and queue workers (figures then run slower)",
    )
    p.add_argument("--time-limit", type=float, default=570.0, help="seconds for the whole run")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=float(os.environ.get("BENCH_WAIT_QUIET", 0)),
        help="first wait up to this many seconds for the machine to be under 15%% busy",
    )
    p.add_argument("--no-doc", action="store_true", help="leave docs/performance.md alone")
    p.add_argument("--seed", type=int, default=8)
    args = p.parse_args(argv)
    if args.quick:
        args.ingest, args.e2e, args.create, args.hot = "200,500,800", 500, 30, 600
        args.credit_pay = 100
        args.scale, args.scale_ingest, args.scale_e2e, args.paced = "3000,10000", 300, 200, 50.0
    return args


def _deployed_web_workers() -> int:
    """The worker count `gunicorn.conf.py` gives a deployment here (`WEB_CONCURRENCY` too)."""
    return int(runpy.run_path(str(ROOT / "gunicorn.conf.py"))["workers"])


class Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def allows(self, seconds: float) -> bool:
        return self.left() > seconds


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    procs.install_signal_handlers()
    config = StackConfig(
        db_name=args.db,
        web_workers=args.web_workers,
        web_worker_class=args.worker_class,
        web_threads=args.threads,
        run_dir=RUN_ROOT / args.db,
    )
    busy_before = _machine_busy(2.0)
    waited = 0.0
    while busy_before > 15 and waited < args.wait_quiet:
        print(
            f"bench: the machine is {busy_before:.0f}% busy; waiting for it to quiet down",
            flush=True,
        )
        time.sleep(8)
        waited += 10
        busy_before = _machine_busy(2.0)
    started = time.time()
    procs.watchdog(args.time_limit + 25, "make bench")
    budget = Budget(args.time_limit)
    stack = Stack(config)
    results: dict[str, Any] = {"options": vars(args), "busy_before_pct": busy_before}
    failures: list[str] = []
    print(
        f"bench: starting the stack (database {args.db}, gunicorn {args.web_workers} "
        f"{args.worker_class} workers); machine {busy_before:.0f}% busy before the run",
        flush=True,
    )
    try:
        stack.start()
        stack.configure_django_here()
        from bench import runner

        rows = runner.run_all(stack, args, budget, results, failures, random.Random(args.seed))  # noqa: S311
        results["postgres"] = runner.postgres_version()
    except KeyboardInterrupt:
        print("\nbench: interrupted; stopping the stack.", flush=True)
        return 130
    except Exception:
        traceback.print_exc()
        print(f"bench: failed; logs under {stack.log_dir}", flush=True)
        return 2
    finally:
        stack.stop()
    meta = {
        "finished": report_time(),
        "revision": report.git_revision(),
        "duration_s": time.time() - started,
        "machine": report.machine(),
        "postgres": results.get("postgres", "PostgreSQL"),
        "web": f"{args.web_workers} {args.worker_class} workers"
        + (f" × {args.threads} threads" if args.threads > 1 else ""),
        "options": " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
        or "defaults",
        "busy_before_pct": busy_before,
    }
    header = [
        f"Tollgate bench — {meta['finished']} — {meta['revision']} — {meta['duration_s']:.0f} s",
        f"{meta['machine']['cpu']}, {meta['machine']['cores']} cores; {meta['postgres']}; "
        f"gunicorn {meta['web']}; machine {busy_before:.0f}% busy just before the run"
        + (
            "; PROFILED (py-spy attached): figures are slower than unprofiled"
            if args.profile
            else ""
        ),
    ]
    table = report.render(rows, header)
    print("\n" + table + "\n")
    results["meta"] = meta
    results["rows"] = report.rows_as_dicts(rows)
    results["failures"] = failures
    report.write_results(results)
    print(f"bench: wrote {report.RESULTS.relative_to(ROOT)}", end="")
    documented = not (args.no_doc or args.profile or args.quick or args.only) and report.update_doc(
        table, meta
    )
    if documented:
        print(f" and the figures in {report.DOC.relative_to(ROOT)}", end="")
    print()
    if failures:
        print("bench: CORRECTNESS CHECKS FAILED:\n  " + "\n  ".join(failures))
        return 1
    return 0


def report_time() -> str:
    from datetime import datetime

    return datetime.now().astimezone().isoformat(timespec="seconds")


def _machine_busy(seconds: float) -> float:
    b0, t0 = procs.machine_cpu_seconds()
    time.sleep(seconds)
    b1, t1 = procs.machine_cpu_seconds()
    return round(100 * (b1 - b0) / max(t1 - t0, 1e-9), 1)


if __name__ == "__main__":
    sys.exit(main())
