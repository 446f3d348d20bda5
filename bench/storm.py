"""`make storm`: the money invariants under duplicate, shuffled deliveries and killed processes.

    python -m bench.storm [--orders 2000] [--senders 8] [--small]

Real processes: gunicorn (2 workers), two `qcluster` processes of one worker
each, PostgreSQL, localstripe. 8 senders deliver every event of the plan
(`bench.storm_plan`) over HTTP, signed as Stripe signs them, 30% of them more
than once, shuffled; a failed delivery is retried, as Stripe would. During the
run a queue worker is SIGKILLed (its cluster's sentinel starts another), later
a whole queue cluster is SIGKILLed and restarted, and the web server is
SIGKILLed and restarted. Then the harness waits for the retries to settle and
checks the database against the plan's reference model, printing every figure;
it exits 1 on any violation. Before the deliveries, buyers' API bursts are played
(`bench.storm_bursts`): simultaneous subscribes to one plan, and hoarders opening
unpaid workshop orders against the per-user seat-hold limits, which the storm's
web server keeps on (`BENCH_HOLD_LIMITS=on`); and buyers paying a workshop with
credits (`bench.storm_credits`): concurrent credit payments, some with too few
credits, credits applied with declined and good cards, cancellations and refunds
sent twice at once, and lots expiring while the expiry sweep runs beside the
spends. The credit ledger is then checked by SQL too: balance = ledger = lots,
nothing below zero but a refund debit, each order's credits taken once and given
back at most once, no expired lot with credits left.

The retry back-off is compressed (2, 5, 10, 20, 30 s, with 25 attempts, so an
event that keeps waiting for one held by a dead worker's lease still outlasts
it): with the platform's own schedule (5, 30, 120, 600, 1800 s, 8 attempts) an
event that arrives before what it depends on and fails four times waits 755 s,
and the storm would need a quarter of an hour to settle. The invariants do not
depend on the schedule; `--backoff ''` runs it with the platform's.

`--small` is the version `tests/test_storm_small.py` runs: 200 orders, one
kill (the web server, which leaves no lease behind) and a back-off of 1, 2, 4,
8, 15, 30 s, about a minute and a half.

The rule: the wait for convergence is bounded; an event a killed worker had
claimed is retaken only when its lease (5 minutes, in billing's code) runs out,
so after a queue kill the storm reports how long that took rather than
shortening it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any

from bench import procs
from bench.stack import RUN_ROOT, Stack, StackConfig

LEASE_S = 300  # billing.services.events.LEASE, which the harness must not change


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.storm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--orders", type=int, default=2000)
    p.add_argument("--senders", type=int, default=8)
    p.add_argument("--repeat", type=float, default=0.3, help="share of events sent again")
    p.add_argument("--web-workers", type=int, default=2)
    p.add_argument(
        "--kills",
        default="queue-worker,web,queue-cluster",
        help="what to SIGKILL, in order, spread over the run",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=LEASE_S + 150,
        help="seconds to wait after the last delivery/kill for retries to finish",
    )
    p.add_argument(
        "--no-trickle",
        dest="trickle",
        action="store_false",
        help="while settling, send no live traffic (retries then wait for the one-minute sweep)",
    )
    p.add_argument(
        "--backoff",
        default="2,5,10,20,30",
        help="retry back-off in seconds ('' for the platform's 5,30,120,600,...)",
    )
    p.add_argument(
        "--max-attempts",
        type=int,
        default=25,
        help="TOLLGATE_EVENT_MAX_ATTEMPTS: enough tries to outlast a dead worker's lease",
    )
    p.add_argument("--db", default=os.environ.get("STORM_DB", "tollgate_storm"))
    p.add_argument("--keep-db", action="store_true", help="leave the database for inspection")
    p.add_argument("--small", action="store_true", help="200 orders, one web kill, ~90 s")
    p.add_argument("--time-limit", type=float, default=900.0)
    p.add_argument("--seed", type=int, default=5)
    args = p.parse_args(argv)
    if args.small:
        args.orders, args.kills, args.settle = 200, "web", 40.0
        args.backoff = "1,2,4,8,15,30"
        args.time_limit = min(args.time_limit, 130.0)
    return args


class Killer(threading.Thread):
    """SIGKILLs what `plan` names when the senders have started that share of deliveries."""

    def __init__(
        self, stack: Stack, plan: list[tuple[float, str]], total: int, progress: dict
    ) -> None:
        super().__init__(daemon=True)
        self.stack, self.plan, self.total, self.progress = stack, plan, total, progress
        self.log: list[dict[str, Any]] = []
        self.error: str | None = None
        self.stop_event = threading.Event()

    def run(self) -> None:
        try:
            for share, what in self.plan:
                while self.progress.get("started", 0) < share * self.total:
                    if self.stop_event.wait(0.05):
                        return
                self.log.append({"at": time.time(), "what": what, **self._kill(what)})
        except Exception:
            self.error = traceback.format_exc()

    def _kill(self, what: str) -> dict[str, Any]:
        stack = self.stack
        if what == "queue-worker":
            cluster = stack.clusters[0]
            victim = cluster.worker_pids()[0]
            os.kill(victim, signal.SIGKILL)
            # The cluster's sentinel notices and starts a new worker.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                fresh = [p for p in cluster.worker_pids() if p != victim]
                if fresh:
                    return {"pid": victim, "replaced_by": fresh[0], "restarted_by": "sentinel"}
                time.sleep(0.1)
            return {"pid": victim, "replaced_by": None, "restarted_by": "nobody"}
        if what == "queue-cluster":
            cluster = stack.clusters[-1]
            pids = cluster.all_pids()
            cluster.proc.kill_group()
            stack.clusters.remove(cluster)
            time.sleep(1.0)
            new = stack.start_queue(cluster.workers)
            return {"pids": pids, "replaced_by": new.proc.pid, "restarted_by": "harness"}
        if what == "web":
            pids = stack.web_pids()
            stack.web.kill_group()
            time.sleep(0.5)
            stack.start_web()
            return {"pids": pids, "replaced_by": stack.web.pid, "restarted_by": "harness"}
        raise ValueError(f"unknown kill {what!r}")


def run(args: argparse.Namespace) -> int:
    procs.install_signal_handlers()
    procs.watchdog(args.time_limit + 20, "storm")
    started = time.time()
    extra = {"TOLLGATE_EVENT_MAX_ATTEMPTS": str(args.max_attempts), "BENCH_HOLD_LIMITS": "on"}
    if args.backoff:
        extra["BENCH_EVENT_RETRY_BACKOFF"] = args.backoff
    stack = Stack(
        StackConfig(
            db_name=args.db,
            web_workers=args.web_workers,
            run_dir=RUN_ROOT / args.db,
            extra_env=extra,
        )
    )
    try:
        stack.start()
        stack.configure_django_here()
        from bench import storm_run

        figures, violations = storm_run.storm(stack, args, Killer, started)
    except KeyboardInterrupt:
        print("\nstorm: interrupted; stopping the stack.", flush=True)
        return 130
    except Exception:
        traceback.print_exc()
        print(f"storm: failed; logs under {stack.log_dir}", flush=True)
        return 2
    finally:
        stack.stop()
        if not args.keep_db:
            try:
                from django.db import connections

                connections.close_all()
            except Exception:  # noqa: S110 - Django may not be set up yet
                pass
            stack.database_drop()
    print(figures)
    if violations:
        print("storm: VIOLATIONS: " + "; ".join(violations))
        return 1
    print("storm: every invariant held.")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
