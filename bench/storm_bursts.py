"""The storm's API bursts: what one buyer sends at once over the public API.

Two classes of input that no webhook carries, each played over HTTP against the
storm's web server before the webhooks are delivered, and checked against the
plan's reference model (`storm_plan.SubscribeBurst`, `storm_plan.HoardPlan`):

- simultaneous subscribes: each burst user, with a saved card, sends the same
  `POST /api/v1/payments/subscriptions/` several times at once. Exactly one is
  answered 201, every other 409 `subscription_exists`; the user has one live
  subscription in the database and one at the storm's Stripe (listed there, so an
  orphan made by a losing request shows), whose one invoice was charged once and
  is one paid order. That invoice's real events then join the storm's deliveries,
  repeated and shuffled like the rest: they must change nothing.
- unpaid seat holds by one buyer: hoarders open many unpaid workshop orders at
  once. Each holds at most the per-session limit in a session and the per-user
  limit in all; a paying buyer still gets the seat left; a latecomer finds the
  session full. Then the hoarders' holds run out (their clock is moved past the
  hold time, as the bookings tests do): the lapsed seats go at once, before any
  sweep, to paying buyers; the hoarder's lapsed order cannot take a seat that is
  gone; and the hoarder may hold anew, within the limits.

The rule: every answer is compared with what the model says, status and error
code; what the platform stored is judged afterwards by SQL (`bench.checks`).
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import requests
from django.db import connection

from bench import checks
from bench.storm_plan import HoardPlan, Purchase, StormPlan, _stripe_client

Answer = tuple[int, str]  # HTTP status, and the error code or the order's status


def _answer(resp: requests.Response) -> Answer:
    try:
        body = resp.json()
    except ValueError:
        return resp.status_code, "not json"
    if resp.status_code >= 400:
        return resp.status_code, str(body.get("code", ""))
    return resp.status_code, str(body.get("status") or body.get("subscription", {}).get("status"))


def _at_once(calls: list[tuple[str, str, str, dict[str, Any] | None]]) -> list[Answer]:
    """Send every (token, method, path, body) at the same moment, one thread each."""
    barrier = threading.Barrier(len(calls))
    answers: list[Any] = [None] * len(calls)

    def send(i: int) -> None:
        token, method, url, body = calls[i]
        with requests.Session() as s:
            s.headers["Authorization"] = f"Bearer {token}"
            barrier.wait(timeout=60)
            try:
                answers[i] = _answer(s.request(method, url, json=body, timeout=60))
            except requests.RequestException as exc:
                answers[i] = (0, type(exc).__name__)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return answers


def _card_add(web_url: str, token: str) -> None:
    """What the browser does: a SetupIntent from us, confirmed at Stripe with a card."""
    client = _stripe_client()
    with requests.Session() as s:
        s.headers["Authorization"] = f"Bearer {token}"
        setup = s.post(web_url + "/api/v1/payments/methods/setup/", timeout=30)
        setup.raise_for_status()
        method = client.v1.payment_methods.create(
            params={
                "type": "card",
                "card": {
                    "number": "4242424242424242",
                    "exp_month": 11,
                    "exp_year": 2033,
                    "cvc": "123",
                },
            }
        )
        client.v1.setup_intents.confirm(
            setup.json()["setup_intent_id"], params={"payment_method": method.id}
        )
        listed = s.get(web_url + "/api/v1/payments/methods/", timeout=30)
        listed.raise_for_status()
        if not listed.json()["payment_methods"]:
            raise RuntimeError("the card added through a SetupIntent is not listed")


# --- simultaneous subscribes ----------------------------------------------------------


def subscribes_run(plan: StormPlan, web_url: str) -> list[dict[str, Any]]:
    """Play every burst; answers the real Stripe events of what they made (to deliver)."""
    from billing.models import StripeCustomer
    from tests.stripe_events import event

    bursts = plan.subscribe_bursts
    if not bursts:
        return []
    for b in bursts:
        _card_add(web_url, b.token)
    url = web_url + "/api/v1/payments/subscriptions/"
    calls = [
        (b.token, "POST", url, {"plan_id": plan.burst_plan_id})
        for b in bursts
        for _ in range(b.requests)
    ]
    answers = _at_once(calls)
    client = _stripe_client()
    events: list[dict[str, Any]] = []
    at = 0
    for b in bursts:
        b.answers = answers[at : at + b.requests]
        at += b.requests
        customer = StripeCustomer.objects.filter(user_id=b.user_id).first()
        if customer is None:
            continue
        b.stripe_customer_id = customer.stripe_customer_id
        listed = client.v1.subscriptions.list(
            params={"customer": customer.stripe_customer_id, "limit": 100}
        ).to_dict()["data"]
        b.stripe_live = [
            s["id"] for s in listed if s["status"] not in ("canceled", "incomplete_expired")
        ]
        for sub_id in b.stripe_live:
            sub = client.v1.subscriptions.retrieve(sub_id).to_dict()
            events.append(event("customer.subscription.created", sub))
            invoices = client.v1.invoices.list(
                params={"subscription": sub_id, "limit": 100}
            ).to_dict()["data"]
            paid = [i for i in invoices if i.get("status") == "paid"]
            b.stripe_paid_invoices += [i["id"] for i in paid]
            for inv in paid:
                events.append(event("invoice.paid", inv))
                events.append(event("invoice.payment_succeeded", inv))
        b.stripe_charges = sum(
            1
            for c in client.v1.charges.list(
                params={"customer": customer.stripe_customer_id, "limit": 100}
            ).to_dict()["data"]
            if c.get("status") == "succeeded"
        )
        # The model: one cycle paid, so one purchase of the plan's credits.
        if len(b.stripe_paid_invoices) == 1:
            plan.purchases.append(
                Purchase(
                    "subscription",
                    b.user_id,
                    plan.burst_amount,
                    plan.burst_credits,
                    "paid",
                    invoice_id=b.stripe_paid_invoices[0],
                )
            )
    plan.events += events
    return events


def subscribes_off(plan: StormPlan) -> dict[str, int]:
    """What the bursts broke: answers, live records here and at Stripe, charges."""
    from billing.models import Order, Subscription

    answered, live_here, live_there, charged = 0, 0, 0, 0
    for b in plan.subscribe_bursts:
        got = Counter(b.answers)
        if got != Counter({(201, "active"): 1, (409, "subscription_exists"): b.requests - 1}):
            answered += 1
        records = Subscription.objects.filter(
            user_id=b.user_id, plan_ref=str(plan.burst_plan_id), status__in=["active", "trialing"]
        )
        ids = list(records.values_list("stripe_subscription_id", flat=True))
        if len(ids) != 1:
            live_here += 1
        if b.stripe_live != ids or len(b.stripe_live) != 1:
            live_there += 1
        orders = Order.objects.filter(subscription__user_id=b.user_id, status="paid")
        if (
            len(b.stripe_paid_invoices) != 1
            or b.stripe_charges != 1
            or list(orders.values_list("stripe_invoice_id", flat=True)) != b.stripe_paid_invoices
        ):
            charged += 1
    return {
        "subscribe bursts not answered one 201, the rest 409": answered,
        "users whose live subscriptions here != 1": live_here + checks.subscriptions_live_twice(),
        "users whose live subscriptions at Stripe != the one here": live_there,
        "users charged other than once for their one cycle": charged,
    }


# --- unpaid seat holds ----------------------------------------------------------------


def _order(service_id: int, session_id: int, *, paid: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "service_id": service_id,
        "payment_type": "intent",
        "scheduling_data": {"service_session_id": session_id},
    }
    if paid:
        body["payment_method_id"] = "pm_card_visa"
    return body


def _step(h: HoardPlan, name: str, calls, expected: Counter) -> list[Answer]:
    answers = _at_once(calls)
    h.steps.append((name, expected, Counter(answers)))
    return answers


def _lapse(user_ids: list[int], minutes: int) -> None:
    """Move these users' live holds `minutes` into the past, made and expiring: what
    the clock does to them when that long has passed."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE bookings_seathold SET created_at = created_at - %s, "
            "expires_at = expires_at - %s WHERE user_id = ANY(%s) AND status = 'active'",
            [timedelta(minutes=minutes), timedelta(minutes=minutes), user_ids],
        )


def hoard_run(plan: StormPlan, web_url: str) -> None:
    """Play the hoarders, the payers and the latecomer, step by step (see the module)."""
    h = plan.hoard
    if h is None:
        return
    url = web_url + "/api/v1/payments/create/"
    a, bs = h.session_a, h.sessions_b
    s, u = h.per_session, h.per_user
    tries = h.tries
    limit = (409, "seat_hold_limit")
    full = (409, "seats_unavailable")
    pending = (201, "pending")
    paid = (201, "paid")

    # Every hoarder at once, `tries` unpaid orders each for session A.
    calls = [
        (tok, "POST", url, _order(h.service_id, a, paid=False))
        for _, tok in h.hoarders
        for _ in range(tries)
    ]
    answers = _step(
        h,
        "hoarders at once, unpaid, one session",
        calls,
        Counter({pending: s * len(h.hoarders), limit: (tries - s) * len(h.hoarders)}),
    )
    per_hoarder = [Counter(answers[i * tries : (i + 1) * tries]) for i in range(len(h.hoarders))]
    h.steps.append(
        (
            "each hoarder holds the per-session limit",
            Counter({s: len(h.hoarders)}),
            Counter(c[pending] for c in per_hoarder),
        )
    )
    # One seat is left: a paying buyer gets it; after that a latecomer finds none.
    _step(h, "a paying buyer", [(h.payers[0][1], "POST", url, _order(h.service_id, a, paid=True))],
          Counter({paid: 1}))  # fmt: skip
    _step(h, "a latecomer, unpaid", [(h.latecomer[1], "POST", url,
          _order(h.service_id, a, paid=False))], Counter({full: 1}))  # fmt: skip

    # The first hoarder spreads over other sessions: the per-user limit stops it.
    first_tok = h.hoarders[0][1]
    calls = [(first_tok, "POST", url, _order(h.service_id, b, paid=False)) for b in bs]
    room = max(0, u - s)
    _step(
        h,
        "a hoarder at once over many sessions",
        calls,
        Counter({pending: room, limit: len(bs) - room}),
    )

    # The hold time passes for the hoarders: their seats in A are free again at once.
    lapsed_orders = _hold_orders(h.hoarders[0][0], a)
    _lapse([uid for uid, _ in h.hoarders], h.hold_minutes + 1)
    lapsed = s * len(h.hoarders)
    calls = [(tok, "POST", url, _order(h.service_id, a, paid=True)) for _, tok in h.payers[1:]]
    _step(h, "paying buyers take the lapsed seats", calls, Counter({paid: lapsed}))
    # The hoarder's lapsed order pays now: its seat is gone, so it is refused, not booked.
    calls = [
        (first_tok, "POST", web_url + f"/api/v1/payments/orders/{oid}/pay/",
         {"payment_method_id": "pm_card_visa"})
        for oid in lapsed_orders[:1]
    ]  # fmt: skip
    h.lapsed_paid_order_ids = lapsed_orders[:1]
    _step(h, "a lapsed order pays after its seat went", calls, Counter({full: len(calls)}))
    # The other hoarder holds anew elsewhere: lapsed holds count against no limit.
    second_tok = h.hoarders[1][1]
    calls = [(second_tok, "POST", url, _order(h.service_id, bs[-1], paid=False))] * tries
    _step(h, "a hoarder holds anew", calls, Counter({pending: s, limit: tries - s}))


def _hold_orders(user_id: int, session_id: int) -> list[int]:
    from bookings.models import SeatHold

    return sorted(
        set(
            SeatHold.objects.filter(
                user_id=user_id, session_id=session_id, status="active"
            ).values_list("order_id", flat=True)
        )
    )


def hoard_off(plan: StormPlan) -> dict[str, int]:
    h = plan.hoard
    if h is None:
        return {}
    from billing.models import Order

    steps_off = sum(1 for _, want, got in h.steps if want != got)
    charged_late = Order.objects.filter(
        pk__in=h.lapsed_paid_order_ids, status__in=["paid", "partially_refunded", "refunded"]
    ).count()
    users = [uid for uid, _ in h.hoarders + h.payers] + [h.latecomer[0]]
    return {
        "hold requests not answered as the limits say": steps_off,
        "sessions where bookings + live holds > capacity": checks.sessions_over_capacity(),
        "buyers holding past the limits": checks.holds_past_limits(
            user_ids=users, per_session=h.per_session, per_user=h.per_user
        ),
        "holds that outlive the hold time": checks.holds_longer_than(minutes=h.hold_minutes),
        "lapsed orders paid for a seat that was gone": charged_late,
    }


def hoard_lines(plan: StormPlan) -> list[str]:
    h = plan.hoard
    if h is None:
        return []
    out = []
    for name, want, got in h.steps:
        mark = "ok" if want == got else "OFF"
        out.append(f"  hold step {mark:<3} {name}: {dict(got)} (model {dict(want)})")
    return out


def subscribe_lines(plan: StormPlan) -> list[str]:
    return [
        f"  subscribe burst user {b.user_id}: {dict(Counter(b.answers))}; live at Stripe "
        f"{len(b.stripe_live)}, paid invoices {len(b.stripe_paid_invoices)}, "
        f"charges {b.stripe_charges}"
        for b in plan.subscribe_bursts
    ]
