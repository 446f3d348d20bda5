"""The storm itself: plan, deliver under kills, wait for the retries, check (Django set up).

The rule: convergence is judged by the database against the plan's reference
model, polled until it holds or the bounded settle time runs out; the figures
printed are those of the final poll, so a violation is never hidden by a
check that ran too early.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter
from typing import Any

from django.db import connection

from bench import checks, loadgen, storm_bursts, storm_credits, storm_plan
from bench.report import other_share
from bench.scenarios import cpu_meter
from bench.stack import Stack
from billing.models import Order, Refund, StripeEvent
from credits.models import CreditAccount


def _order_states(plan: storm_plan.StormPlan) -> dict[str, int]:
    """How many purchases ended where the reference model says (and how many did not)."""
    credit = {p.order_id: p for p in plan.purchases if p.order_id is not None}
    cycles = {p.invoice_id: p for p in plan.purchases if p.kind == "subscription"}
    actual = dict(Order.objects.filter(pk__in=list(credit)).values_list("pk", "status"))
    by_invoice = dict(
        Order.objects.filter(stripe_invoice_id__in=list(cycles)).values_list(
            "stripe_invoice_id", "status"
        )
    )
    wrong, missing = 0, 0
    for order_id, p in credit.items():
        if actual.get(order_id) != p.expected_status:
            wrong += 1
    for invoice_id, p in cycles.items():
        status = by_invoice.get(invoice_id)
        if status is None:
            missing += 1
        elif status != p.expected_status:
            wrong += 1
    return {"wrong state": wrong, "never created": missing}


def _bookings_off(plan: storm_plan.StormPlan) -> int:
    """Bookable orders whose booking is missing, extra, or not in the expected status."""
    wanted = {p.order_id: p.expected_booking for p in plan.purchases if p.kind == "workshop"}
    if not wanted:
        return 0
    from bookings.models import Booking

    found: dict[int, list[str]] = {}
    for order_id, status in Booking.objects.filter(order_id__in=list(wanted)).values_list(
        "order_id", "status"
    ):
        found.setdefault(order_id, []).append(status)
    off = 0
    for order_id, status in wanted.items():
        got = found.get(order_id, [])
        if (status is None and got) or (status is not None and got != [status]):
            off += 1
    return off


def _refunds_unapplied(plan: storm_plan.StormPlan) -> int:
    wanted = [r for p in plan.purchases for r in p.refund_ids]
    applied = Refund.objects.filter(stripe_refund_id__in=wanted, applied_at__isnull=False).count()
    return len(wanted) - applied


def _others(plan: storm_plan.StormPlan) -> dict[str, int]:
    """What must hold for what the platform's own flows never send (see `storm_plan`)."""
    from billing.models import Dispute, Payment

    automatic = Counter(
        Refund.objects.filter(
            order_id__in=plan.unwanted_order_ids, source=Refund.Source.AUTOMATIC
        ).values_list("order_id", flat=True)
    )
    disputed = [p for p in plan.purchases if p.dispute]
    recorded = Dispute.objects.filter(
        payment__stripe_payment_intent_id__in=[p.payment_intent_id for p in disputed]
    ).count()
    return {
        "foreign payments attached to an order": Payment.objects.filter(
            stripe_payment_intent_id__in=plan.foreign_payment_ids
        ).count(),
        "foreign refunds taken as ours": Refund.objects.filter(
            stripe_refund_id__in=plan.foreign_refund_ids
        ).count(),
        "unwanted payments not refunded exactly once": sum(
            1 for order_id in plan.unwanted_order_ids if automatic[order_id] != 1
        ),
        "invoices that are not a cycle but made an order": Order.objects.filter(
            stripe_invoice_id__in=plan.odd_invoice_ids
        ).count(),
        "disputes not recorded once": abs(len(disputed) - recorded),
    }


def _balances_off(plan: storm_plan.StormPlan) -> int:
    expected = plan.expected_balances()
    actual = dict(
        CreditAccount.objects.filter(user_id__in=list(expected)).values_list("user_id", "balance")
    )
    return sum(1 for u, b in expected.items() if actual.get(u, 0) != b)


def _throughput(sent_at: float) -> dict[str, Any]:
    """Events stored and processed while the deliveries ran, and how long the slowest took."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), extract(epoch FROM min(received_at)), "
            "sum(CASE WHEN processed_at <= to_timestamp(%s) THEN 1 ELSE 0 END), "
            "sum(CASE WHEN attempts > 1 THEN 1 ELSE 0 END), "
            "max(extract(epoch FROM processed_at - received_at)) FROM billing_stripeevent",
            [sent_at],
        )
        n, first, done, retried, worst = cursor.fetchone()
    span = sent_at - float(first) if first else None
    return {
        "events stored": n,
        "events processed per s while delivering": round((done or 0) / span, 1) if span else None,
        "events that needed a retry": retried or 0,
        "longest receipt -> processed s": round(float(worst), 1) if worst else None,
    }


def _burst_sizes(args: argparse.Namespace) -> dict[str, int]:
    """Subscribe bursts (users, requests each) and hoarders: fewer in the small storm."""
    if args.small:
        return {"subscribe_bursts": 2, "subscribe_requests": 5, "hoarders": 2}
    return {"subscribe_bursts": 6, "subscribe_requests": 8, "hoarders": 3}


def _converged(plan: storm_plan.StormPlan) -> bool:
    return (
        checks.events_unfinished() == 0
        and not any(_order_states(plan).values())
        and _refunds_unapplied(plan) == 0
        and _balances_off(plan) == 0
        and _bookings_off(plan) == 0
        and not any(_others(plan).values())
    )


def _unhandled_event() -> loadgen.Request:
    from bench.scenarios import _webhook
    from tests.stripe_events import event, fixture, new_id

    customer = fixture("customer")
    customer["id"] = new_id("cus")
    return _webhook(event("customer.created", customer))


def storm(stack: Stack, args: argparse.Namespace, killer_cls, started: float):
    rng = random.Random(args.seed)  # noqa: S311 - a workload, not a secret
    ready_at = t = time.time()
    plan = storm_plan.build(orders=args.orders, rng=rng, **_burst_sizes(args))
    credit_storm = storm_credits.build(small=args.small)
    planned = time.time() - t
    # What buyers send at once over the API, before the webhooks and the kills.
    t = time.time()
    storm_bursts.subscribes_run(plan, stack.web_url)
    storm_bursts.hoard_run(plan, stack.web_url)
    storm_credits.run(credit_storm, stack.web_url)
    bursts_s = time.time() - t
    print(f"storm: API bursts played in {bursts_s:.1f} s", flush=True)
    deliveries, repeats = storm_plan.deliveries(plan, repeat_share=args.repeat, rng=rng)
    print(
        f"storm: {len(plan.purchases)} purchases, {len(plan.events)} distinct events, "
        f"{repeats} repeated deliveries; planned in {planned:.1f} s",
        flush=True,
    )
    stack.start_queue(1)
    stack.start_queue(1)

    kills = [k for k in args.kills.split(",") if k]
    shares = [(i + 1) / (len(kills) + 1) for i in range(len(kills))]
    progress: dict[str, int] = {}
    killer = killer_cls(stack, list(zip(shares, kills, strict=True)), len(deliveries), progress)
    meter = cpu_meter(stack)
    meter.begin()
    send_from = time.time()
    killer.start()
    result = loadgen.run(
        stack.web_url, deliveries, args.senders, retries=60, progress=progress, timeout=30
    )
    sent_at = time.time()
    killer.join(timeout=60)
    killer.stop_event.set()
    cpu = meter.end()
    if killer.error:
        raise RuntimeError("a kill failed:\n" + killer.error)
    undelivered = sum(1 for s in result.samples if s.status != 200)
    print(
        f"storm: {len(result.samples)} deliveries in {result.wall:.1f} s "
        f"({result.rate():.0f}/s answered 200), {undelivered} never accepted; "
        f"kills: {[k['what'] for k in killer.log]}",
        flush=True,
    )

    # Wait for the retries (back-off, dead leases, the minute sweep) to settle it all.
    # Meanwhile a trickle of events of a type nobody handles keeps drain tasks coming,
    # as live traffic would; without it only the one-minute sweep retries what is due.
    deadline = sent_at + args.settle
    converged_at = None
    trickle = 0
    while True:
        if _converged(plan):
            converged_at = time.time()
            break
        if time.time() > deadline:
            break
        if args.trickle:
            loadgen.run(stack.web_url, [[_unhandled_event()]], 1, retries=3)
            trickle += 1
        time.sleep(2.0)
    stack.stop_queues()

    states = _order_states(plan)
    inv = checks.all_invariants()
    refunds_unapplied = _refunds_unapplied(plan)
    balances_off = _balances_off(plan)
    unfinished = checks.events_unfinished()
    queue_kills = [k for k in killer.log if k["what"].startswith("queue")]
    figures: dict[str, Any] = {
        "orders lost (never created, or not in their final state)": states["never created"]
        + states["wrong state"],
        "fulfilled twice": inv["fulfilled twice"],
        "paid but never fulfilled": inv["paid but not fulfilled"],
        "refunds applied twice": inv["refunds applied twice"],
        "refunds never applied": refunds_unapplied,
        "accounts where ledger != balance": inv["ledger != balance (accounts)"],
        "accounts whose balance != the reference model": balances_off,
        "running balances broken": inv["running balance breaks"],
        "spends below zero": inv["spends below zero"],
        "bookings not as the orders say": _bookings_off(plan),
        "overbooked sessions": inv["overbooked sessions"]
        if inv["overbooked sessions"] is not None
        else "n/a (no bookings app)",
        "accounts where lots != balance": inv["lots != balance (accounts)"],
        "balances taken below zero other than by a refund debit": inv[
            "below zero other than a refund debit"
        ],
        "expired lots with credits left": inv["expired lots with credits left"],
        "orders whose credits were taken other than once, or given back more": inv[
            "orders' credits taken other than once, or given back more"
        ],
        "unpaid orders keeping their credits, or fulfilled": inv[
            "unpaid orders keeping credits, or fulfilled"
        ],
        **storm_credits.off(credit_storm),
        **_others(plan),
        **storm_bursts.subscribes_off(plan),
        **storm_bursts.hoard_off(plan),
        "events left unprocessed": unfinished,
        "deliveries never accepted": undelivered,
    }
    violations = [f"{k}: {v}" for k, v in figures.items() if isinstance(v, int) and v]
    by_status = checks.events_by_status()
    kinds = Counter(p.kind for p in plan.purchases)
    lines = [
        "",
        f"Storm — {len(plan.purchases)} purchases ({kinds['credit']} credit orders, "
        f"{kinds['workshop']} workshop seats, {kinds['subscription']} subscription "
        f"cycles), {sum(len(p.refund_ids) for p in plan.purchases)} refunds, "
        f"{sum(1 for p in plan.purchases if p.dispute)} disputes; another system's "
        f"{len(plan.foreign_payment_ids)} payments and {len(plan.foreign_refund_ids)} "
        f"refunds, {len(plan.unwanted_order_ids)} payments no order can take, "
        f"{len(plan.odd_invoice_ids)} invoices that are not a cycle; "
        f"{len(plan.subscribe_bursts)} users subscribing "
        f"{max((b.requests for b in plan.subscribe_bursts), default=0)} times at once, "
        f"{len(plan.hoard.hoarders) if plan.hoard else 0} seat hoarders; "
        f"{len(plan.events)} distinct events, {len(result.samples)} deliveries "
        f"({repeats} repeats), {args.senders} senders"
        + (f"; then {trickle} unhandled events while settling" if trickle else ""),
        "",
    ]
    width = max(len(k) for k in figures)
    lines += [f"  {k.ljust(width)}  {v}" for k, v in figures.items()]
    lines += [
        "",
        f"  deliveries answered 200 per s   {result.rate():.0f} "
        f"(p50 {result.latency()['p50']} ms, p99 {result.latency()['p99']} ms; "
        f"statuses of final attempts {result.statuses}; "
        f"{sum(s.attempts - 1 for s in result.samples)} retried attempts)",
    ]
    lines += storm_bursts.subscribe_lines(plan) + storm_bursts.hoard_lines(plan)
    lines += storm_credits.lines(credit_storm)
    lines += [f"  {k.ljust(width)}  {v}" for k, v in _throughput(sent_at).items()]
    lines += [
        f"  events by status                {by_status}",
        f"  load generator CPU              {result.cpu_share}% of the machine; "
        f"other processes {other_share(cpu, result.cpu_share)}%",
    ]
    lines.append(
        f"  retry back-off {args.backoff or 'the platform default'} s, at most "
        f"{args.max_attempts} attempts; lease {storm_plan_lease()} s"
    )
    for k in killer.log:
        at = k["at"] - started
        lines.append(
            f"  kill {k['what']:<14} at {at:5.1f} s: {k.get('pid') or k.get('pids')} "
            f"-> {k['replaced_by']} (restarted by {k['restarted_by']})"
        )
    if converged_at:
        lines.append(
            f"  converged {converged_at - sent_at:.1f} s after the last delivery"
            + (
                f" ({converged_at - queue_kills[-1]['at']:.0f} s after the last queue "
                f"kill; a killed worker's claimed event waits for its "
                f"{storm_plan_lease()} s lease)"
                if queue_kills
                else ""
            )
        )
    else:
        lines.append(f"  NOT converged {args.settle:.0f} s after the last delivery")
    settled = (converged_at or time.time()) - sent_at
    lines.append(
        f"  total run {time.time() - started:.0f} s: stack start {ready_at - started:.0f} s, "
        f"plan {send_from - ready_at:.0f} s, deliveries {sent_at - send_from:.0f} s, "
        f"settling {settled:.0f} s"
    )
    return "\n".join(lines), violations


def storm_plan_lease() -> int:
    from billing.services.events import LEASE

    return int(LEASE.total_seconds())


__all__ = ["StripeEvent", "storm"]
