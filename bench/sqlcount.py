"""The SQL each money-path operation runs, captured in this process (profile runs only).

The same code the stack runs, called through Django's test client and the
services against the stack's database, with `CaptureQueriesContext`: a webhook
delivery (a new event that enqueues a drain task, one that rides on it, a
duplicate), processing one event, a credit spend, an order create. Written to
`bench/profiles/sql.txt`, to read next to the py-spy profiles: a round trip to
PostgreSQL costs the same whether a profile calls it
CPU or waiting.

The rule: it runs while the queue workers are stopped, so the event it
processes is the one it stored.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from bench import seed
from bench.stack import WEBHOOK_SECRET, Stack
from billing.models import QueuedDrain, StripeEvent
from credits.services import credits_grant
from tests.stripe_events import encode, sign


def _block(title: str, ctx: CaptureQueriesContext, status: int | None = None) -> list[str]:
    head = f"{title}: {len(ctx.captured_queries)} SQL statements"
    if status is not None:
        head += f" (HTTP {status})"
    lines = [head]
    for q in ctx.captured_queries:
        sql = " ".join(q["sql"].split())
        lines.append(f"    {sql[:240]}")
    return [*lines, ""]


def capture(stack: Stack, users: list[int], out: Path) -> dict[str, int]:
    from billing.services.events import events_drain

    client = Client(HTTP_HOST="127.0.0.1")
    lines: list[str] = []
    counts: dict[str, int] = {}
    first, second = seed.orders_create(users, 2, rng=random.Random(1))  # noqa: S311
    body = encode(seed.payment_event(first))
    rider = encode(seed.payment_event(second))
    for name, sent in (("new event", body), ("new event", rider), ("duplicate event", rider)):
        drains = QueuedDrain.objects.count()
        with CaptureQueriesContext(connection) as ctx:
            resp = client.post(
                "/api/v1/payments/webhook/",
                sent,
                content_type="application/json",
                HTTP_STRIPE_SIGNATURE=sign(sent, WEBHOOK_SECRET),
            )
        if name == "new event":  # which way it went: a task of its own, or riding on one
            enqueued = QueuedDrain.objects.count() > drains
            name += " enqueuing a drain task" if enqueued else " riding on a queued drain"
        counts[f"webhook, {name}"] = len(ctx.captured_queries)
        lines += _block(f"webhook, {name}", ctx, resp.status_code)
    event_id = StripeEvent.objects.get(stripe_id=json.loads(body)["id"]).pk
    with CaptureQueriesContext(connection) as ctx:
        events_drain(first_event_id=event_id, limit=1)
    counts["process one payment_intent.succeeded (drain task body)"] = len(ctx.captured_queries)
    lines += _block(
        "process one payment_intent.succeeded (events_drain, limit=1; excludes "
        "django-q2's own dequeue/ack statements)",
        ctx,
    )

    user_id, token = seed.user_with_token(prefix="sql")
    credits_grant(user_id=user_id, amount=100, reference="sql-grant", memo="bench")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    with CaptureQueriesContext(connection) as ctx:
        resp = client.post(
            "/api/v1/credits/spend/",
            {"amount": 1, "reference": "sql-1"},
            content_type="application/json",
            **auth,
        )
    counts["credit spend"] = len(ctx.captured_queries)
    lines += _block("POST /credits/spend/", ctx, resp.status_code)
    if stack.localstripe is not None:
        body = {"is_credit_purchase": True, "credit_amount": 100, "payment_type": "intent"}
        for confirm in (False, True):
            if confirm:
                body = {**body, "payment_method_id": "pm_card_visa"}
            with CaptureQueriesContext(connection) as ctx:
                resp = client.post(
                    "/api/v1/payments/create/", body, content_type="application/json", **auth
                )
            name = "order create" + (" + confirm" if confirm else "")
            counts[name] = len(ctx.captured_queries)
            lines += _block(f"POST /payments/create/ ({name})", ctx, resp.status_code)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = ["SQL statements per operation (Django's CaptureQueriesContext, this process):"]
    summary += [f"  {n:3d}  {k}" for k, n in counts.items()]
    out.write_text("\n".join([*summary, "", *lines]) + "\n")
    return counts
