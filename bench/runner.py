"""The order of `make bench`'s phases, and how each one's figures become table rows.

The rule: a phase runs only if the time left allows it (otherwise its row says
"skipped"), and every correctness check that fails is added to `failures`,
which makes the run exit non-zero.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from contextlib import ExitStack
from typing import Any

from django.db import connection

from bench import checks, profiling, scenarios, seed, sqlcount
from bench.report import Row, _fmt_lat, other_share
from bench.stack import Stack
from billing.models import Fulfilment, Order, StripeEvent
from credits.models import CreditTransaction

T = {
    "ingest_per_s": 1500,
    "ingest_p99_ms": 50,
    "e2e_per_s": 1000,
    "create_overhead_ms": 5,
    "spends_per_s": 500,
    "scale_tolerance": 0.10,
}


def postgres_version() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return "PostgreSQL " + cursor.fetchone()[0].split()[0]


def _statuses(st: dict) -> str:
    return " ".join(f"{k}:{v}" for k, v in st.items())


def _profile(args, name: str, pid: int | None):
    if not args.profile or pid is None or not profiling.Profiler.available():
        return ExitStack()
    return profiling.Profiler(name, pid)


def run_all(
    stack: Stack,
    args: argparse.Namespace,
    budget,
    results: dict[str, Any],
    failures: list[str],
    rng: random.Random,
) -> list[Row]:
    if args.only == "credit-pay":
        rows = credit_pay_rows(stack, args, budget, results, failures)
        inv = checks.all_invariants()
        results["invariants"] = inv
        bad = {k: v for k, v in inv.items() if v}
        if bad:
            failures.append(f"invariants: {bad}")
        return rows
    rows: list[Row] = []
    rss = scenarios.RssPeaks()
    ingest_counts = [int(x) for x in args.ingest.split(",")]
    senders_levels = [1, 8, 32][: len(ingest_counts)]
    scale_sizes = [int(x) for x in args.scale.split(",") if x.strip()]

    # 0. The ceiling: what PostgreSQL itself does with the webhook's two rows per transaction.
    ceiling = scenarios.pg_ceiling(stack)
    results["pg_ceiling"] = ceiling
    if "skipped" not in ceiling:
        rows.append(
            Row(
                "0",
                "PostgreSQL ceiling (pgbench)",
                " / ".join(f"{ceiling[k]:,}" for k in ("1", "8", "32")) + " tx/s",
                "",
                "event row + queue row per tx, the real tables' shape and indexes",
                "",
                None,
                None,
                None,
            )
        )
        print(f"bench: pgbench ceiling at 1/8/32 clients: {ceiling}", flush=True)
    if args.profile:
        lean = scenarios.pg_ceiling(stack, clients=(8,), minimal_indexes=True)
        results["pg_ceiling_minimal_indexes"] = lean
        rows.append(
            Row(
                "0",
                "  same, only pkey + unique stripe_id",
                f"{lean['8']:,} tx/s at 8",
                "",
                "what the other 6 indexes on billing_stripeevent cost",
            )
        )

    users = seed.users_create(200, prefix="buyer")
    ingest_orders = seed.orders_create(users, sum(ingest_counts), rng=rng)
    print(f"bench: seeded {len(ingest_orders)} orders for ingest", flush=True)

    # 1. Ingest, queue workers stopped: the web process alone. A first, unmeasured
    # round warms the workers and PostgreSQL (the first requests after a start are
    # a third slower), and its events are checked with the rest.
    warm = seed.orders_create(users, 300, rng=rng)
    scenarios.ingest(stack, warm, 8, dup_ratio=args.dup, rng=rng)
    results["ingest"] = []
    offset = 0
    for senders, n in zip(senders_levels, ingest_counts, strict=False):
        batch = ingest_orders[offset : offset + n]
        offset += n
        if not budget.allows(60):
            rows.append(Row("1", f"ingest, {senders} senders", "skipped: out of time"))
            continue
        with _profile(args, f"web-ingest-{senders}", stack.web.pid if senders == 32 else None):
            r = scenarios.ingest(stack, batch, senders, dup_ratio=args.dup, rng=rng)
        rss.sample(stack)
        results["ingest"].append(r)
        print(
            f"bench: ingest at {senders} senders: {r['accepted_per_s']}/s, "
            f"p99 {r['latency_ms']['p99']} ms",
            flush=True,
        )
        target = ""
        ok = None
        if senders == 32:
            target = f">= {T['ingest_per_s']}/s, p99 <= {T['ingest_p99_ms']} ms"
            ok = (
                r["accepted_per_s"] >= T["ingest_per_s"]
                and (r["latency_ms"]["p99"] or 1e9) <= T["ingest_p99_ms"]
            )
        bad = {k: v for k, v in r["statuses"].items() if k != "200"}
        if r["lost"] or bad:
            failures.append(f"ingest at {senders} senders: {r['lost']} lost, statuses {bad}")
        rows.append(
            Row(
                "1",
                f"ingest, {senders} sender{'s' if senders > 1 else ''}",
                f"{r['accepted_per_s']:.0f} ev/s ({r['distinct_per_s']:.0f} distinct)",
                _fmt_lat(r["latency_ms"]),
                f"{_statuses(r['statuses'])}; {r['duplicates_sent']} dup; lost {r['lost']}",
                target,
                ok,
                r["loadgen_cpu_pct"],
                other_share(r["cpu_pct"], r["loadgen_cpu_pct"]),
            )
        )

    last = results["ingest"][-1] if results["ingest"] else None
    if last and last["senders"] == 32:
        rows.append(_cpu_row("1", "  CPU per delivery, 32 senders", last, "cpu_ms_per_delivery"))
        if budget.allows(60):
            floor = scenarios.http_floor(
                stack, ingest_orders[offset - last["distinct_events"] : offset], 32
            )
            results["http_floor"] = floor
            rows.append(
                Row(
                    "1",
                    "  HTTP floor: gunicorn, an app that only reads the body",
                    f"{floor['accepted_per_s']:.0f} req/s",
                    _fmt_lat(floor["latency_ms"]),
                    f"{_statuses(floor['statuses'])}; CPU per delivery: "
                    + _cpu_sum(floor["cpu_ms_per_delivery"])[0],
                    "",
                    None,
                    floor["loadgen_cpu_pct"],
                    other_share(floor["cpu_pct"], floor["loadgen_cpu_pct"]),
                )
            )

    if args.profile:
        counts = sqlcount.capture(stack, users, profiling.PROFILE_DIR / "sql.txt")
        results["sql_per_operation"] = counts
        print(f"bench: SQL per operation: {counts}", flush=True)

    # The backlog the ingest left is drained by 2 workers; then every order must be
    # fulfilled exactly once, whatever duplicates were sent.
    ids = [o.order_id for o in warm + ingest_orders[:offset]]
    d = scenarios.drain(stack, ids, workers=2, timeout=max(30.0, budget.left() - 200))
    rss.sample(stack)
    results["drain"] = d
    fulfilled = Fulfilment.objects.filter(order_id__in=ids).count()
    entries = CreditTransaction.objects.filter(reference__in=[f"order-{i}" for i in ids]).count()
    double = checks.fulfilled_twice() + max(0, fulfilled - len(ids)) + max(0, entries - len(ids))
    missing = len(ids) - fulfilled
    if double or missing:
        failures.append(f"ingest orders: {double} fulfilled twice, {missing} never fulfilled")
    rows.append(
        Row(
            "1",
            "duplicate handler double-runs",
            f"{double}",
            "",
            f"{fulfilled} fulfilments, {entries} ledger entries for {len(ids)} orders",
            "0",
            double == 0 and missing == 0,
        )
    )
    rows.append(
        Row(
            "2",
            "drain ingest backlog, 2 workers",
            f"{d['events_per_s'] or 0:.0f} ev/s" if d["finished"] else "NOT FINISHED",
            "",
            f"{d['backlog_events']} events in {d['seconds']} s",
            "",
            None,
            None,
            other_share(d["cpu_pct"]),
        )
    )

    # 2. End to end: events sent while the workers run.
    results["e2e"] = []
    for workers in (1, 2):
        if not budget.allows(90):
            rows.append(Row("2", f"end to end, {workers} worker(s)", "skipped: out of time"))
            continue
        orders = seed.orders_create(users, args.e2e, rng=rng)
        qpid = None
        if workers == 2 and args.profile:
            stack.stop_queues()
            stack.start_queue(2)
            qpid = stack.clusters[0].proc.pid
        with _profile(args, "queue-e2e-2w", qpid):
            r = scenarios.end_to_end(
                stack,
                orders,
                workers=workers,
                senders=8,
                timeout=max(30.0, budget.left() - 150),
                rng=rng,
            )
        rss.sample(stack)
        results["e2e"].append(r)
        print(f"bench: end to end, {workers} workers: {r['fulfilled_per_s']}/s", flush=True)
        if r["fulfilled"] != r["orders"] or r["paid"] != r["orders"]:
            failures.append(
                f"end to end, {workers} workers: {r['paid']} paid, "
                f"{r['fulfilled']} fulfilled of {r['orders']}"
            )
        lag = r["receipt_to_fulfilment_ms"]
        rows.append(
            Row(
                "2",
                f"end to end, {workers} worker{'s' if workers > 1 else ''}, 8 senders",
                f"{r['fulfilled_per_s'] or 0:.0f} orders/s",
                f"lag {_fmt_lat(lag, ('p50', 'p95'))} (p50/p95)",
                f"{r['paid']} paid, {r['fulfilled']} fulfilled of {r['orders']}",
                f">= {T['e2e_per_s']}/s" if workers == 2 else "",
                (r["fulfilled_per_s"] or 0) >= T["e2e_per_s"] if workers == 2 else None,
                r["loadgen_cpu_pct"],
                other_share(r["cpu_pct"], r["loadgen_cpu_pct"]),
            )
        )
    if results["e2e"] and results["e2e"][-1]["workers"] == 2:
        rows.append(
            _cpu_row("2", "  CPU per order, 2 workers", results["e2e"][-1], "cpu_ms_per_order")
        )
    if args.paced and budget.allows(60):
        n = int(args.paced * 8)
        orders = seed.orders_create(users, n, rng=rng)
        r = scenarios.end_to_end(
            stack, orders, workers=2, senders=8, timeout=60, rng=rng, rate=args.paced
        )
        results["e2e_paced"] = r
        lag = r["receipt_to_fulfilment_ms"]
        rows.append(
            Row(
                "2",
                f"steady {args.paced:.0f} ev/s, 2 workers",
                f"{r['fulfilled']}/{r['orders']} fulfilled",
                f"lag {_fmt_lat(lag, ('p50', 'p95'))} (p50/p95)",
                "receipt -> fulfilment",
                "",
                None,
                r["loadgen_cpu_pct"],
                other_share(r["cpu_pct"], r["loadgen_cpu_pct"]),
            )
        )
        if r["fulfilled"] != r["orders"]:
            failures.append(f"steady end to end: {r['fulfilled']} of {r['orders']} fulfilled")

    # 3. Order creation, split into Stripe's time and ours.
    results["create"] = []
    if budget.allows(60):
        results["localstripe"] = scenarios._localstripe_direct(stack, 50)
        for confirm in (False, True):
            with _profile(
                args,
                f"web-create{'-confirm' if confirm else ''}",
                stack.web.pid if confirm else None,
            ):
                r = scenarios.order_creation(stack, n=args.create, confirm=confirm)
            results["create"].append(r)
            ours = r["tollgate_ms"]["p50"] or 0
            hop = results["localstripe"]["proxy_hop_ms_p50"] * r["stripe_calls_per_order"]
            bad = {k: v for k, v in r["statuses"].items() if k != "201"}
            if bad:
                failures.append(f"order creation: statuses {r['statuses']}")
            rows.append(
                Row(
                    "3",
                    "order create " + ("+ confirm (pm_card_visa)" if confirm else "(PI create)"),
                    f"Tollgate {ours:.1f} ms + Stripe {r['stripe_ms']['p50']:.1f} ms (p50)",
                    f"total {_fmt_lat(r['total_ms'], ('p50', 'p95'))} (p50/p95)",
                    f"{_statuses(r['statuses'])}; {r['stripe_calls_per_order']} Stripe calls; "
                    f"proxy hop ~{hop:.1f} ms in ours",
                    f"ours <= {T['create_overhead_ms']} ms",
                    ours <= T["create_overhead_ms"],
                    None,
                    other_share(r["cpu_pct"]),
                )
            )
        ls = results["localstripe"]
        rows.append(
            Row(
                "3",
                "localstripe alone: PI create",
                f"{ls['direct']['p50']:.1f} ms direct, {ls['via_proxy']['p50']:.1f} ms "
                "via the timing proxy (p50)",
            )
        )

    # 4. Hot account.
    if budget.allows(45):
        with _profile(args, "web-hot-account", stack.web.pid):
            r = scenarios.hot_account(stack, spends=args.hot, senders=args.hot_senders)
        rss.sample(stack)
        results["hot_account"] = r
        if not r["ok"]:
            failures.append(f"hot account: {r}")
        rows.append(
            Row(
                "4",
                f"hot account, {args.hot_senders} senders",
                f"{r['spends_per_s']:.0f} spends/s",
                _fmt_lat(r["latency_ms"]),
                f"{r['spent_201']} spent of {r['granted']} granted, {r['refused_409']} refused; "
                f"balance {r['final_balance']} = ledger {r['ledger_sum']}; "
                f"negative {r['negative_balances']}",
                f">= {T['spends_per_s']}/s",
                r["spends_per_s"] >= T["spends_per_s"],
                r["loadgen_cpu_pct"],
                other_share(r["cpu_pct"], r["loadgen_cpu_pct"]),
            )
        )
    else:
        rows.append(Row("4", "hot account", "skipped: out of time"))
    rows += credit_pay_rows(stack, args, budget, results, failures)

    # 5. Scaling: the same ingest and end to end on top of 10k and 100k existing rows.
    # After the ingest, while its events are pending, the event table's statistics are
    # refreshed as autovacuum would do during traffic, and the worker's claim query is
    # explained: its plan, not the table size alone, decides how it scales.
    results["scaling"] = []
    for size in scale_sizes:
        existing = Order.objects.count()
        fill = max(0, size - existing)
        est = 45 + fill / 3000 + (args.scale_ingest + args.scale_e2e) / 40
        if not budget.allows(est):
            rows.append(Row("5", f"at {size:,} orders+events", "skipped: out of time"))
            continue
        stack.stop_queues()
        took = seed.background_fill(fill, rng=rng)
        counts = scenarios.table_counts()
        print(f"bench: {fill} history rows loaded in {took:.0f} s; now {counts}", flush=True)
        batch = seed.orders_create(users, args.scale_ingest, rng=rng)
        ing = scenarios.ingest(stack, batch, 32, dup_ratio=args.dup, rng=rng)
        claim_busy = scenarios.claim_plan(analyze_first=True)
        dr = scenarios.drain(
            stack,
            [o.order_id for o in batch],
            workers=2,
            timeout=max(20.0, min(180.0, budget.left() - 90)),
        )
        claim_idle = scenarios.claim_plan(analyze_first=False)
        e2e = None
        if dr["finished"] and budget.allows(30):
            orders = seed.orders_create(users, args.scale_e2e, rng=rng)
            e2e = scenarios.end_to_end(
                stack,
                orders,
                workers=2,
                senders=8,
                timeout=max(20.0, min(180.0, budget.left() - 45)),
                rng=rng,
            )
            if e2e["fulfilled"] != e2e["orders"]:
                failures.append(
                    f"scaling at {size}: {e2e['fulfilled']} of {e2e['orders']} fulfilled"
                )
        rss.sample(stack)
        if ing["lost"]:
            failures.append(f"scaling at {size}: {ing['lost']} webhooks lost")
        results["scaling"].append(
            {
                "size": size,
                "counts": counts,
                "fill_s": round(took, 1),
                "ingest": ing,
                "claim_with_pending": claim_busy,
                "drain": dr,
                "claim_nothing_due": claim_idle,
                "e2e": e2e,
            }
        )
        at = f"at {counts['orders']:,} orders / {counts['events']:,} events"
        rows.append(
            Row(
                "5",
                f"ingest, 32 senders, {at}",
                f"{ing['accepted_per_s']:.0f} ev/s",
                _fmt_lat(ing["latency_ms"]),
                f"{_statuses(ing['statuses'])}; lost {ing['lost']}",
                "",
                None,
                ing["loadgen_cpu_pct"],
                other_share(ing["cpu_pct"], ing["loadgen_cpu_pct"]),
            )
        )
        rows.append(
            Row(
                "5",
                "  worker's claim query (EXPLAIN ANALYZE)",
                _claim_ms(claim_busy, claim_idle),
                "",
                _claim_text(claim_busy) + "; stats refreshed with events pending",
            )
        )
        rows.append(
            Row(
                "5",
                "  drain of that backlog, 2 workers",
                f"{dr['events_per_s'] or 0:.0f} ev/s" if dr["finished"] else "NOT FINISHED",
                "",
                f"{dr['backlog_events']} events in {dr['seconds']} s",
                "",
                None,
                None,
                other_share(dr["cpu_pct"]),
            )
        )
        if e2e is None:
            rows.append(Row("5", f"  end to end, {at}", "skipped: the drain did not finish"))
            continue
        rows.append(
            Row(
                "5",
                "  end to end, 2 workers, 8 senders",
                f"{e2e['fulfilled_per_s'] or 0:.0f} orders/s",
                f"lag {_fmt_lat(e2e['receipt_to_fulfilment_ms'], ('p50', 'p95'))} (p50/p95)",
                f"{e2e['fulfilled']} fulfilled of {e2e['orders']}",
                "",
                None,
                e2e["loadgen_cpu_pct"],
                other_share(e2e["cpu_pct"], e2e["loadgen_cpu_pct"]),
            )
        )
    done = [r for r in results["scaling"] if r["e2e"]]
    if len(results["scaling"]) >= 2:
        a, b = results["scaling"][0], results["scaling"][-1]
        di = _change(a["ingest"]["accepted_per_s"], b["ingest"]["accepted_per_s"])
        dd = _change(a["drain"]["events_per_s"], b["drain"]["events_per_s"])
        de = (
            _change(a["e2e"]["fulfilled_per_s"], b["e2e"]["fulfilled_per_s"])
            if len(done) == len(results["scaling"])
            else float("nan")
        )
        # Slower by more than the tolerance is a miss; faster is noise, not a regression.
        ok = all(x >= -T["scale_tolerance"] for x in (di, dd, de))
        rows.append(
            Row(
                "5",
                f"change {a['size']:,} -> {b['size']:,}",
                f"ingest {di:+.0%}, drain {dd:+.0%}, end to end {de:+.0%}",
                "",
                "",
                "no more than 10% slower",
                ok,
            )
        )

    # 6. Memory, and the invariants over everything this run wrote.
    rss.sample(stack)
    results["rss"] = rss.as_dict()
    rows.append(
        Row(
            "6",
            "peak RSS (VmHWM)",
            f"web worker {rss.as_dict()['web_worker_mib']} MiB, "
            f"queue worker {rss.as_dict()['queue_worker_mib']} MiB",
        )
    )
    _settle(stack, budget)
    inv = checks.all_invariants()
    inv["events unfinished"] = checks.events_unfinished()
    results["invariants"] = inv
    results["events_by_status"] = checks.events_by_status()
    bad = {k: v for k, v in inv.items() if v}
    if bad:
        failures.append(f"invariants: {bad}")
    rows.append(
        Row(
            "6",
            "invariants over the whole database",
            "all 0" if not bad else f"VIOLATED: {bad}",
            "",
            f"{Order.objects.count():,} orders, {StripeEvent.objects.count():,} events",
            "0",
            not bad,
        )
    )
    return rows


def credit_pay_rows(
    stack: Stack, args: argparse.Namespace, budget, results: dict[str, Any], failures: list[str]
) -> list[Row]:
    """Orders paid with credits per second, and by card at the same concurrency."""
    senders = args.credit_pay_senders
    if not args.credit_pay:
        return []
    if not budget.allows(60):
        return [Row("4", f"orders paid with credits, {senders} senders", "skipped: out of time")]
    r = scenarios.credit_payments(stack, n=args.credit_pay, senders=senders)
    results["credit_pay"] = r
    if not r["ok"]:
        failures.append(f"paying with credits: {r}")
    c, k = r["credits"], r["card"]
    print(
        f"bench: orders paid with credits at {senders} senders: {c['orders_per_s']}/s; "
        f"by card: {k['orders_per_s']}/s",
        flush=True,
    )
    checks_text = (
        f"{c['paid_201']} of {r['orders']} paid ({_statuses(c['statuses'])}) for "
        f"{r['buyers']} buyers; balances 0 = ledger off {r['accounts_off']}, negative "
        f"{r['negative_balances']}, not paid once {r['credit_orders_not_paid_once']}"
    )
    return [
        Row(
            "4",
            f"orders paid with credits, {senders} senders",
            f"{c['orders_per_s']:.0f} orders/s",
            f"{_fmt_lat(c['latency_ms'], ('p50', 'p95'))} (p50/p95)",
            checks_text,
            "",
            None,
            c["loadgen_cpu_pct"],
            other_share(c["cpu_pct"], c["loadgen_cpu_pct"]),
        ),
        Row(
            "4",
            f"  same workshop by card (pm_card_visa at create), {senders} senders",
            f"{k['orders_per_s']:.0f} orders/s",
            f"{_fmt_lat(k['latency_ms'], ('p50', 'p95'))} (p50/p95)",
            f"{k['paid_201']} of {r['orders']} paid ({_statuses(k['statuses'])}); "
            f"not paid once {r['card_orders_not_paid_once']}",
            "",
            None,
            k["loadgen_cpu_pct"],
            other_share(k["cpu_pct"], k["loadgen_cpu_pct"]),
        ),
    ]


_GROUPS = {"postgres": "PostgreSQL", "load generator": "generator"}


def _cpu_sum(each: dict[str, float]) -> tuple[str, float]:
    """`web 1.10 + PostgreSQL 0.30 + generator 0.25 = 1.65 ms`, and the total."""
    total = sum(each.values())
    parts = " + ".join(f"{_GROUPS.get(k, k)} {v:.2f}" for k, v in each.items() if v)
    return f"{parts} = {total:.2f} ms", total


def _cpu_row(section: str, name: str, r: dict[str, Any], key: str) -> Row:
    """Where one unit's CPU went, and the rate the machine would reach spending only that."""
    text, total = _cpu_sum(r[key])
    cores = os.cpu_count() or 1
    busy = r["cpu_pct"].get("machine busy", 0.0)
    return Row(
        section,
        name,
        text,
        "",
        f"machine {busy:.0f}% busy; {cores} cores / {total:.2f} ms = "
        f"{cores * 1000 / total:,.0f}/s with every core on this work alone",
    )


def _claim_ms(busy: dict, idle: dict) -> str:
    if "skipped" in busy:
        return busy["skipped"]
    return f"{busy['ms']:.1f} ms with events due, {idle['ms']:.1f} ms with none"


def _claim_text(plan: dict) -> str:
    if "skipped" in plan:
        return ""
    return f"{plan['scan']}, {plan['rows_removed']:,} rows filtered"


def _change(before: float | None, after: float | None) -> float:
    if not before or after is None:
        return float("nan")
    return (after - before) / before


def _settle(stack: Stack, budget) -> None:
    """Let the queue finish what is due before the final checks (bounded)."""
    if not stack.clusters:
        stack.start_queue(2)
    deadline = time.monotonic() + min(60.0, max(5.0, budget.left() - 5))
    while time.monotonic() < deadline and checks.events_unfinished():
        time.sleep(0.5)
