"""The measurements behind `make bench`, one function per row group of the table.

Each scenario takes a running `Stack` (and Django set up against its database),
does bounded work (a fixed count of requests, a deadline for every wait) and
answers a plain dict of figures, checks included, for the table and
`bench/results.json`.

The rule: figures are measured from outside the application — the client's
clock, the proxy's clock, the database's rows, /proc — never from counters the
application keeps about itself.
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import requests
from django.db import connection
from django.db.models import Max, Min

from bench import checks, loadgen, procs, seed
from bench.stack import ROOT, WEBHOOK_SECRET, Stack
from billing.models import Fulfilment, Order, StripeEvent
from credits.models import CreditAccount, CreditTransaction
from credits.services import credits_grant
from tests.stripe_events import encode

WEBHOOK = "/api/v1/payments/webhook/"


def cpu_meter(stack: Stack) -> procs.CpuMeter:
    return procs.CpuMeter(
        {
            "web": stack.web_pids,
            "queue": stack.queue_pids,
            "postgres": lambda: procs.pids_named("postgres"),
            "stripe": stack.stripe_pids,
        }
    )


def cpu_ms_each(
    cpu: dict[str, float], wall: float, units: int, loadgen_cpu_s: float
) -> dict[str, float]:
    """CPU milliseconds that each unit of work (a delivery, an order) cost each group of
    processes over a `CpuMeter` window of `wall` seconds, the load generator's included."""
    if not units:
        return {}
    capacity_ms = wall * (os.cpu_count() or 1) * 1000
    each = {
        name: round(pct / 100 * capacity_ms / units, 2)
        for name, pct in cpu.items()
        if name != "machine busy" and pct
    }
    each["load generator"] = round(loadgen_cpu_s * 1000 / units, 2)
    return each


def _webhook(evt: dict[str, Any]) -> loadgen.Request:
    return loadgen.Request(WEBHOOK, encode(evt), webhook_secret=WEBHOOK_SECRET, tag=evt["id"])


def webhook_deliveries(
    events: list[dict[str, Any]], *, dup_ratio: float, rng: random.Random
) -> tuple[list[list[loadgen.Request]], int]:
    """Every event once; `dup_ratio` of them again, half at the same moment, half later."""
    reqs = [_webhook(e) for e in events]
    dup = rng.sample(range(len(reqs)), int(len(reqs) * dup_ratio))
    simultaneous = set(dup[: len(dup) // 2])
    later = dup[len(dup) // 2 :]
    deliveries = [[r, r] if i in simultaneous else [r] for i, r in enumerate(reqs)]
    for i in later:  # resent after the original, like Stripe's retry of a slow answer
        at = rng.randint(min(i + 1, len(deliveries)), len(deliveries))
        deliveries.insert(at, [reqs[i]])
    return deliveries, len(dup)


def _stored(stripe_ids: list[str]) -> int:
    return StripeEvent.objects.filter(stripe_id__in=stripe_ids).count()


def ingest(
    stack: Stack,
    orders: list[seed.SeededOrder],
    senders: int,
    *,
    dup_ratio: float,
    rng: random.Random,
) -> dict[str, Any]:
    """Signed payment_intent.succeeded webhooks for existing orders, queue workers stopped."""
    events = [seed.payment_event(o) for o in orders]
    deliveries, dups = webhook_deliveries(events, dup_ratio=dup_ratio, rng=rng)
    meter = cpu_meter(stack)
    meter.begin()
    result = loadgen.run(stack.web_url, deliveries, senders)
    cpu = meter.end()
    stored = _stored([e["id"] for e in events])
    each = cpu_ms_each(cpu, meter.wall, len(result.samples), result.cpu)
    return {
        "senders": senders,
        "distinct_events": len(events),
        "duplicates_sent": dups,
        "requests": len(result.samples),
        "wall_s": round(result.wall, 2),
        "accepted_per_s": round(result.rate(), 1),
        "distinct_per_s": round(stored / result.wall, 1),
        "latency_ms": result.latency(),
        "statuses": result.statuses,
        "stored": stored,
        "lost": len(events) - stored,
        "loadgen_cpu_pct": result.cpu_share,
        "cpu_pct": cpu,
        "cpu_ms_per_delivery": each,
    }


def http_floor(stack: Stack, orders: list[seed.SeededOrder], senders: int) -> dict[str, Any]:
    """The same deliveries as `ingest`, to gunicorn serving `bench.http_floor` instead of
    Tollgate: the ceiling of the HTTP server and the load generator on this machine."""
    port = procs.free_port()
    argv = stack.web_argv("bench.http_floor:application", port)
    floor = procs.start("gunicorn-floor", argv, env=stack.env(), log_dir=stack.log_dir, cwd=ROOT)
    try:
        procs.wait_for_port(port, timeout=60, proc=floor)
        workers = stack.config.web_workers
        wait_until(lambda: len(procs.children(floor.pid)) >= workers, timeout=60, every=0.1)
        deliveries = [[_webhook(seed.payment_event(o))] for o in orders]
        url = f"http://127.0.0.1:{port}"
        loadgen.run(url, deliveries[: len(deliveries) // 10], senders)  # warm
        meter = procs.CpuMeter({"web": lambda: [floor.pid, *procs.children(floor.pid)]})
        meter.begin()
        result = loadgen.run(url, deliveries, senders)
        cpu = meter.end()
    finally:
        procs.stop_together([floor], grace=5.0)
    return {
        "senders": senders,
        "requests": len(result.samples),
        "accepted_per_s": round(result.rate(), 1),
        "latency_ms": result.latency(),
        "statuses": result.statuses,
        "loadgen_cpu_pct": result.cpu_share,
        "cpu_pct": cpu,
        "cpu_ms_per_delivery": cpu_ms_each(cpu, meter.wall, len(result.samples), result.cpu),
    }


def wait_until(predicate, *, timeout: float, every: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


def drain(stack: Stack, order_ids: list[int], *, workers: int, timeout: float) -> dict[str, Any]:
    """Start the queue on a backlog of stored events and time until every order is fulfilled."""
    backlog = StripeEvent.objects.filter(status__in=["pending", "retrying"]).count()
    meter = cpu_meter(stack)
    t0 = time.time()
    stack.start_queue(workers)
    meter.begin()
    done = wait_until(
        lambda: (
            Fulfilment.objects.filter(order_id__in=order_ids).count() >= len(order_ids)
            and checks.events_unfinished() == 0
        ),
        timeout=timeout,
    )
    cpu = meter.end()
    # From the first event the workers finished to the last: the queue's own rate,
    # without the cluster's start-up.
    span_row = StripeEvent.objects.filter(processed_at__gte=datetime.fromtimestamp(t0, UTC))
    agg = span_row.aggregate(first=Min("processed_at"), last=Max("processed_at"))
    span = (agg["last"] - agg["first"]).total_seconds() if agg["first"] else None
    return {
        "workers": workers,
        "backlog_events": backlog,
        "orders": len(order_ids),
        "finished": done,
        "seconds": round(span, 2) if span else None,
        "events_per_s": round(backlog / span, 1) if span else None,
        "cpu_pct": cpu,
    }


def _lags(pi_ids: list[str]) -> dict[str, Any]:
    """Receipt → processed and receipt → fulfilment, per event, from the rows themselves."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT extract(epoch FROM e.processed_at - e.received_at) * 1000, "
            "       extract(epoch FROM f.created_at - e.received_at) * 1000 "
            "FROM billing_stripeevent e "
            "JOIN billing_payment p ON p.stripe_payment_intent_id = e.object_id "
            "JOIN billing_fulfilment f ON f.order_id = p.order_id "
            "WHERE e.object_id = ANY(%s) AND e.type = 'payment_intent.succeeded'",
            [pi_ids],
        )
        rows = cursor.fetchall()
    processed = [float(r[0]) for r in rows if r[0] is not None]
    fulfilled = [float(r[1]) for r in rows if r[1] is not None]
    return {
        "receipt_to_processed_ms": loadgen.percentiles(processed, (50, 95, 99)),
        "receipt_to_fulfilment_ms": loadgen.percentiles(fulfilled, (50, 95, 99)),
    }


def end_to_end(
    stack: Stack,
    orders: list[seed.SeededOrder],
    *,
    workers: int,
    senders: int,
    timeout: float,
    rng: random.Random,
    rate: float | None = None,
) -> dict[str, Any]:
    """Paid events sent while `workers` queue workers run: time until every order is fulfilled.

    With `rate`, deliveries are paced (events/s) to show the lag under a steady load
    the workers keep up with, instead of the lag of a backlog.
    """
    if stack.clusters and stack.clusters[0].workers != workers:
        stack.stop_queues()
    if not stack.clusters:
        stack.start_queue(workers)
    events = [seed.payment_event(o) for o in orders]
    deliveries = [[_webhook(e)] for e in events]
    order_ids = [o.order_id for o in orders]
    meter = cpu_meter(stack)
    meter.begin()
    t0 = time.time()
    if rate:
        result = _paced(stack, deliveries, senders, rate)
    else:
        result = loadgen.run(stack.web_url, deliveries, senders)
    done = wait_until(
        lambda: Fulfilment.objects.filter(order_id__in=order_ids).count() >= len(order_ids),
        timeout=timeout,
    )
    cpu = meter.end()
    each = cpu_ms_each(cpu, meter.wall, len(orders), result.cpu)
    fulfilled = Fulfilment.objects.filter(order_id__in=order_ids).count()
    last = Fulfilment.objects.filter(order_id__in=order_ids).aggregate(m=Max("created_at"))["m"]
    span = (last.timestamp() - t0) if last else None
    paid = Order.objects.filter(pk__in=order_ids, status=Order.Status.PAID).count()
    return {
        "workers": workers,
        "senders": senders,
        "paced_per_s": rate,
        "orders": len(orders),
        "paid": paid,
        "fulfilled": fulfilled,
        "finished": done,
        "seconds": round(span, 2) if span else None,
        "fulfilled_per_s": round(fulfilled / span, 1) if span else None,
        "ingest_per_s": round(result.rate(), 1),
        "statuses": result.statuses,
        **_lags([o.payment_intent_id for o in orders]),
        "loadgen_cpu_pct": result.cpu_share,
        "cpu_pct": cpu,
        "cpu_ms_per_order": each,
    }


def _paced(stack: Stack, deliveries, senders: int, rate: float) -> loadgen.LoadResult:
    """Send in one-second slices of `rate` deliveries, so the offered load is steady."""
    samples, cpu, wall = [], 0.0, 0.0
    step = max(1, int(rate))
    for i in range(0, len(deliveries), step):
        t0 = time.perf_counter()
        part = loadgen.run(stack.web_url, deliveries[i : i + step], senders)
        samples += part.samples
        cpu += part.cpu
        time.sleep(max(0.0, 1.0 - (time.perf_counter() - t0)))
        wall += time.perf_counter() - t0
    return loadgen.LoadResult(samples, wall, cpu)


# --- order creation -------------------------------------------------------------------

_ORDER_KEY = re.compile(r"order-(\d+)-")


def _proxy_records(stack: Stack, since: float) -> list[dict[str, Any]]:
    out = []
    for line in stack.proxy_log.read_text().splitlines():
        rec = json.loads(line)
        if rec["start"] >= since:
            out.append(rec)
    return out


def _localstripe_direct(stack: Stack, n: int) -> dict[str, Any]:
    """localstripe's own latency for a PaymentIntent create, direct and through the proxy."""
    out = {}
    auth = {"Authorization": "Bearer sk_test_bench_localstripe"}
    form = {"amount": "1000", "currency": "usd", "metadata[order_id]": "0"}
    for name, base in (
        ("direct", stack.stripe_url),
        ("via_proxy", f"http://127.0.0.1:{stack.proxy_port}"),
    ):
        with requests.Session() as s:
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                s.post(base + "/v1/payment_intents", data=form, headers=auth, timeout=10)
                times.append((time.perf_counter() - t0) * 1000)
        out[name] = loadgen.percentiles(times, (50, 95))
    out["proxy_hop_ms_p50"] = round(out["via_proxy"]["p50"] - out["direct"]["p50"], 2)
    return out


def order_creation(stack: Stack, *, n: int, confirm: bool) -> dict[str, Any]:
    """POST /payments/create/ one at a time; each request's time split into Stripe's and ours."""
    _, token = seed.user_with_token(prefix="buyer")
    body = {
        "is_credit_purchase": True,
        "credit_amount": 100,
        "amount": "10.00",
        "payment_type": "intent",
    }
    if confirm:
        body["payment_method_id"] = "pm_card_visa"
    since = time.time()
    results = []
    meter = cpu_meter(stack)
    meter.begin()
    with requests.Session() as s:
        s.headers["Authorization"] = f"Bearer {token}"
        for _ in range(n):
            t0 = time.perf_counter()
            resp = s.post(stack.web_url + "/api/v1/payments/create/", json=body, timeout=30)
            ms = (time.perf_counter() - t0) * 1000
            order_id = resp.json().get("order_id") if resp.status_code in (200, 201) else None
            results.append((resp.status_code, order_id, ms))
    cpu = meter.end()
    stripe_ms: dict[int, float] = {}
    calls: dict[int, int] = {}
    for rec in _proxy_records(stack, since):
        m = _ORDER_KEY.search(rec["key"])
        if m:
            oid = int(m.group(1))
            stripe_ms[oid] = stripe_ms.get(oid, 0.0) + rec["ms"]
            calls[oid] = calls.get(oid, 0) + 1
    ok = [(oid, ms) for status, oid, ms in results if oid is not None]
    totals = [ms for _, ms in ok]
    stripes = [stripe_ms.get(oid, 0.0) for oid, _ in ok]
    ours = [ms - stripe_ms.get(oid, 0.0) for oid, ms in ok]
    statuses: dict[str, int] = {}
    for status, _, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        "confirm": confirm,
        "orders": n,
        "statuses": statuses,
        "stripe_calls_per_order": round(statistics.mean(calls.values()), 2) if calls else 0,
        "total_ms": loadgen.percentiles(totals, (50, 95)),
        "stripe_ms": loadgen.percentiles(stripes, (50, 95)),
        "tollgate_ms": loadgen.percentiles(ours, (50, 95)),
        "cpu_pct": cpu,
    }


# --- hot account ----------------------------------------------------------------------


def hot_account(stack: Stack, *, spends: int, senders: int) -> dict[str, Any]:
    """Concurrent 1-credit spends on one account, granted 90% of what they ask for.

    Exactly the granted number must succeed, the rest be refused (409), and the
    balance end at 0, equal to its ledger, never below zero on the way.
    """
    user_id, token = seed.user_with_token(prefix="hot")
    granted = spends - spends // 10
    credits_grant(user_id=user_id, amount=granted, reference="bench-hot-grant", memo="bench")
    auth = {"Authorization": f"Bearer {token}"}
    deliveries = [
        [
            loadgen.Request(
                "/api/v1/credits/spend/",
                json.dumps({"amount": 1, "reference": f"hot-{i}"}).encode(),
                headers=auth,
                tag=i,
            )
        ]
        for i in range(spends)
    ]
    meter = cpu_meter(stack)
    meter.begin()
    result = loadgen.run(stack.web_url, deliveries, senders)
    cpu = meter.end()
    account = CreditAccount.objects.get(user_id=user_id)
    entries = CreditTransaction.objects.filter(account=account)
    ledger = sum(entries.values_list("amount", flat=True))
    spent = entries.filter(kind="spend").count()
    negative = entries.filter(balance_after__lt=0).count()
    ok = result.statuses.get("201", 0)
    return {
        "senders": senders,
        "requests": spends,
        "granted": granted,
        "spent_201": ok,
        "refused_409": result.statuses.get("409", 0),
        "statuses": result.statuses,
        "spends_per_s": round(ok / result.wall, 1),
        "requests_per_s": round(len(result.samples) / result.wall, 1),
        "latency_ms": result.latency(),
        "final_balance": account.balance,
        "ledger_sum": ledger,
        "ledger_spend_entries": spent,
        "negative_balances": negative,
        "ok": account.balance == ledger == 0 and spent == ok == granted and negative == 0,
        "loadgen_cpu_pct": result.cpu_share,
        "cpu_pct": cpu,
    }


# --- paying with credits --------------------------------------------------------------

CREDIT_PAY_PRICE = 4500  # the workshop's price in cents, and in credits:
CREDIT_PAY_CREDITS = 40


def _credit_pay_setup(n: int, buyers: int) -> tuple[int, list[int], list[tuple[int, str]]]:
    """A workshop sold for cents or credits, sessions with room for every order of both
    paths, and buyers with API tokens."""
    from datetime import timedelta

    from django.utils import timezone

    from bookings.models import Service, ServiceSession

    service = Service.objects.create(
        name="Bench credit workshop",
        kind=Service.Kind.WORKSHOP,
        price=CREDIT_PAY_PRICE,
        currency="usd",
        credit_price=CREDIT_PAY_CREDITS,
    )
    start = timezone.now() + timedelta(days=10)
    sessions = [
        ServiceSession.objects.create(
            service=service,
            start=start + timedelta(hours=2 * i),
            end=start + timedelta(hours=2 * i + 1),
            capacity=2 * n,
        ).pk
        for i in range(buyers)
    ]
    people = [seed.user_with_token(prefix=f"credit-payer-{i}") for i in range(buyers)]
    return service.pk, sessions, people


def _orders_paid_once(order_ids: list[int], *, by_credits: bool) -> int:
    """Of these orders, how many are not paid exactly once: status paid, one fulfilment,
    and either one spend of the credit price and no card payment, or one card payment
    received in full and no credits."""
    from billing.models import Payment

    paid = set(Order.objects.filter(pk__in=order_ids, status="paid").values_list("pk", flat=True))
    fulfilments: dict[int, int] = {}
    for oid in Fulfilment.objects.filter(order_id__in=order_ids).values_list("order_id", flat=True):
        fulfilments[oid] = fulfilments.get(oid, 0) + 1
    received: dict[int, list[int]] = {}
    for oid, amount in Payment.objects.filter(
        order_id__in=order_ids, status="succeeded"
    ).values_list("order_id", "amount_received"):
        received.setdefault(oid, []).append(amount)
    refs = dict(Order.objects.filter(pk__in=order_ids).values_list("pk", "credits_reference"))
    spends: dict[str, list[int]] = {}
    for ref, amount in CreditTransaction.objects.filter(
        reference__in=[f"spend:{r}" for r in refs.values() if r], kind="spend"
    ).values_list("reference", "amount"):
        spends.setdefault(ref.removeprefix("spend:"), []).append(amount)
    bad = 0
    for oid in order_ids:
        took = spends.get(refs.get(oid) or "", [])
        if by_credits:
            once = took == [-CREDIT_PAY_CREDITS] and not received.get(oid)
        else:
            once = not took and received.get(oid) == [CREDIT_PAY_PRICE]
        bad += not (oid in paid and fulfilments.get(oid) == 1 and once)
    return bad + len(order_ids) - len(set(order_ids))


def _create_run(stack: Stack, bodies: list[tuple[str, dict[str, Any]]], senders: int):
    deliveries = [
        [
            loadgen.Request(
                "/api/v1/payments/create/",
                json.dumps(body).encode(),
                headers={"Authorization": f"Bearer {token}"},
                tag=i,
            )
        ]
        for i, (token, body) in enumerate(bodies)
    ]
    meter = cpu_meter(stack)
    meter.begin()
    result = loadgen.run(stack.web_url, deliveries, senders, keep_body=True, timeout=60)
    cpu = meter.end()
    order_ids = []
    for sample in result.samples:
        if sample.status == 201:
            order_ids.append(json.loads(sample.body)["order_id"])
    return result, cpu, order_ids


def credit_payments(stack: Stack, *, n: int, senders: int, buyers: int = 20) -> dict[str, Any]:
    """`n` workshop orders paid with credits (`payment_type: "credits"`) by `senders`
    concurrent senders, for `buyers` buyers granted exactly what their orders cost;
    then `n` orders of the same workshop paid by card (`pm_card_visa` confirmed at
    create) at the same concurrency, for comparison.

    Checks: every request 201 and paid; each order paid exactly once (one fulfilment;
    one spend of its credit price, or one card payment of its price); every buyer's
    balance 0 = the sum of their ledger, no entry below zero.
    """
    from credits.models import CreditAccount

    service_id, sessions, people = _credit_pay_setup(n, buyers)

    def body(i: int, **more: Any) -> tuple[str, dict[str, Any]]:
        _, token = people[i % buyers]
        return token, {
            "service_id": service_id,
            "scheduling_data": {"service_session_id": sessions[i % buyers]},
            **more,
        }

    for k, (user_id, _) in enumerate(people):
        orders = len(range(k, n, buyers))
        if orders:
            credits_grant(
                user_id=user_id,
                amount=orders * CREDIT_PAY_CREDITS,
                reference=f"bench-credit-pay-{user_id}",
                memo="bench",
            )
    by_credits, credits_cpu, credit_ids = _create_run(
        stack, [body(i, payment_type="credits") for i in range(n)], senders
    )
    by_card, card_cpu, card_ids = _create_run(
        stack, [body(i, payment_method_id="pm_card_visa") for i in range(n)], senders
    )
    user_ids = [uid for uid, _ in people]
    accounts = dict(CreditAccount.objects.filter(user_id__in=user_ids).values_list("pk", "balance"))
    ledger: dict[int, int] = {}
    for account_id, amount in CreditTransaction.objects.filter(
        account_id__in=list(accounts)
    ).values_list("account_id", "amount"):
        ledger[account_id] = ledger.get(account_id, 0) + amount
    balance_off = sum(1 for a, b in accounts.items() if b != 0 or ledger.get(a, 0) != b)
    negative = CreditTransaction.objects.filter(
        account_id__in=list(accounts), balance_after__lt=0
    ).count()
    credits_not_once = _orders_paid_once(credit_ids, by_credits=True)
    card_not_once = _orders_paid_once(card_ids, by_credits=False)

    def paid(result: loadgen.LoadResult) -> int:
        return sum(
            1 for s in result.samples if s.status == 201 and json.loads(s.body)["status"] == "paid"
        )

    def figures(result: loadgen.LoadResult, cpu: dict[str, float]) -> dict[str, Any]:
        ok = paid(result)
        return {
            "paid_201": ok,
            "statuses": result.statuses,
            "orders_per_s": round(ok / result.wall, 1) if result.wall else 0.0,
            "latency_ms": loadgen.percentiles([s.ms for s in result.samples], (50, 95)),
            "loadgen_cpu_pct": result.cpu_share,
            "cpu_pct": cpu,
        }

    return {
        "orders": n,
        "senders": senders,
        "buyers": buyers,
        "credits": figures(by_credits, credits_cpu),
        "card": figures(by_card, card_cpu),
        "accounts_off": balance_off,
        "negative_balances": negative,
        "credit_orders_not_paid_once": credits_not_once,
        "card_orders_not_paid_once": card_not_once,
        "ok": (
            paid(by_credits) == paid(by_card) == n
            and balance_off == 0
            and negative == 0
            and credits_not_once == card_not_once == 0
        ),
    }


# --- memory ---------------------------------------------------------------------------


class RssPeaks:
    """Peak RSS (VmHWM) of web and queue worker processes, kept over the whole run."""

    def __init__(self) -> None:
        self.web_kb = 0
        self.queue_kb = 0

    def sample(self, stack: Stack) -> None:
        for pid in stack.web_worker_pids():
            self.web_kb = max(self.web_kb, procs.rss_kb(pid)[1])
        for pid in stack.queue_worker_pids():
            self.queue_kb = max(self.queue_kb, procs.rss_kb(pid)[1])

    def as_dict(self) -> dict[str, float]:
        return {
            "web_worker_mib": round(self.web_kb / 1024, 1),
            "queue_worker_mib": round(self.queue_kb / 1024, 1),
        }


def table_counts() -> dict[str, int]:
    return {
        "orders": Order.objects.count(),
        "events": StripeEvent.objects.count(),
    }


def now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


# --- the PostgreSQL ceiling ------------------------------------------------------------

_CEILING_SQL = """BEGIN;
INSERT INTO bench_ceiling_event (stripe_id, type, api_version, object_id, livemode, \
stripe_created, payload, status, attempts, last_error, next_attempt_at, received_at) \
VALUES ('evt_' || md5(random()::text), 'payment_intent.succeeded', '2026-10-28.endive', \
'pi_' || md5(random()::text), false, now(), '{payload}', 'pending', 0, '', now(), now());
INSERT INTO bench_ceiling_queue (key, payload, lock) VALUES ('tollgate', '{task}', now());
COMMIT;
"""


def pg_ceiling(
    stack: Stack,
    *,
    clients: tuple[int, ...] = (1, 8, 32),
    seconds: int = 4,
    minimal_indexes: bool = False,
) -> dict[str, Any]:
    """pgbench: one transaction = one event row (the real table's shape and indexes) plus one
    queue row, as the webhook writes them; the most any webhook code can store here."""
    import shutil
    import subprocess
    from urllib.parse import urlsplit

    pgbench = shutil.which("pgbench")
    if not pgbench:
        return {"skipped": "pgbench is not installed"}
    order = seed.SeededOrder(1, 1, 1000, "usd", {"order_id": "1", "user_id": "1"}, "pi_x", 100)
    payload = json.dumps(seed.payment_event(order)).replace("'", "''")
    task = "gAWV" + "x" * 380  # a pickled, signed django-q2 task is about this long
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_ceiling_event, bench_ceiling_queue")
        if minimal_indexes:
            cursor.execute(
                "CREATE TABLE bench_ceiling_event (LIKE billing_stripeevent INCLUDING DEFAULTS "
                "INCLUDING IDENTITY INCLUDING CONSTRAINTS)"
            )
            cursor.execute("ALTER TABLE bench_ceiling_event ADD PRIMARY KEY (id)")
            cursor.execute("CREATE UNIQUE INDEX ON bench_ceiling_event (stripe_id)")
        else:
            cursor.execute(
                "CREATE TABLE bench_ceiling_event (LIKE billing_stripeevent INCLUDING ALL)"
            )
        cursor.execute("CREATE TABLE bench_ceiling_queue (LIKE django_q_ormq INCLUDING ALL)")
    stack.run_dir.mkdir(parents=True, exist_ok=True)
    script = stack.run_dir / "ceiling.sql"
    script.write_text(_CEILING_SQL.replace("{payload}", payload).replace("{task}", task))
    url = urlsplit(stack.db_url)
    env = {
        "PGHOST": url.hostname or "127.0.0.1",
        "PGPORT": str(url.port or 5432),
        "PGUSER": url.username or "postgres",
        "PATH": "/usr/bin:/bin",
    }
    if url.password:
        env["PGPASSWORD"] = url.password
    out: dict[str, Any] = {"minimal_indexes": minimal_indexes}
    try:
        for n in clients:
            proc = subprocess.run(  # noqa: S603 - pgbench with our own arguments
                [pgbench, "-n", "-f", str(script), "-c", str(n), "-j", str(min(n, 2)),
                 "-T", str(seconds), url.path.lstrip("/")],
                env=env, capture_output=True, text=True, timeout=seconds + 30, check=False,
            )  # fmt: skip
            tps = re.search(r"tps = ([\d.]+)", proc.stdout)
            out[str(n)] = round(float(tps.group(1))) if tps else None
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS bench_ceiling_event, bench_ceiling_queue")
    return out


# --- the event worker's claim query ----------------------------------------------------


def claim_plan(*, analyze_first: bool = True) -> dict[str, Any]:
    """EXPLAIN ANALYZE of the queries the event worker runs to take the next due event.

    The worker's own claim (`billing.sql.events_claim`, with the worker's lease and
    attempt limit) runs once inside a transaction that is rolled back, its
    `SELECT … FOR UPDATE` statements are captured and each is explained (also
    rolled back), so whatever the claim's code becomes, the figure follows it. With
    `analyze_first`, the table's statistics are refreshed first, as autovacuum would
    while traffic is flowing: the plan PostgreSQL then picks is the one production
    gets after its next auto-analyze.
    """
    from django.conf import settings
    from django.db import transaction
    from django.test.utils import CaptureQueriesContext

    try:
        from billing.services.events import CLAIM_BATCH, LEASE
        from billing.sql import events_claim
    except ImportError:
        return {"skipped": "billing.sql.events_claim is gone; update bench.scenarios"}
    with connection.cursor() as cursor:
        if analyze_first:
            cursor.execute("ANALYZE billing_stripeevent")
    with transaction.atomic():
        with CaptureQueriesContext(connection) as ctx:
            events_claim(
                size=CLAIM_BATCH,
                lease=LEASE,
                max_attempts=settings.TOLLGATE["EVENT_MAX_ATTEMPTS"],
            )
        transaction.set_rollback(True)
    selects = [q["sql"] for q in ctx.captured_queries if "FOR UPDATE" in q["sql"]]
    ms, removed, scans = 0.0, 0, []
    for sql in selects:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
            plan = cursor.fetchone()[0]
            transaction.set_rollback(True)
        if isinstance(plan, str):
            plan = json.loads(plan)
        root = plan[0]
        ms += root.get("Execution Time", 0.0)
        found = list(_scans(root["Plan"]))
        removed += sum(n.get("Rows Removed by Filter", 0) for n in found)
        if found:
            first = found[0]
            scans.append(
                first.get("Node Type", "?")
                + (f" on {first['Index Name']}" if first.get("Index Name") else "")
            )
    return {
        "ms": round(ms, 2),
        "queries": len(selects),
        "scan": " + ".join(scans) or "?",
        "rows_removed": removed,
    }


def _scans(node: dict[str, Any]):
    if "Scan" in node.get("Node Type", ""):
        yield node
    for kid in node.get("Plans", []):
        yield from _scans(kid)
