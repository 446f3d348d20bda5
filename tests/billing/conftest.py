"""Billing fixtures: posting signed webhooks, and localstripe delivering to a live server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from billing.models import StripeEvent
from billing.services.events import events_drain
from tests.stripe_events import PRIMARY_SECRET, encode, sign
from tollgate_testing.events import wait_for_event

__all__ = ["wait_for_event"]

WEBHOOK_PATH = "/api/v1/payments/webhook/"


def post_webhook(evt: dict[str, Any] | bytes, *, secret: str = PRIMARY_SECRET, client=None, **kw):
    body = evt if isinstance(evt, bytes) else encode(evt)
    headers = {"Stripe-Signature": sign(body, secret, **kw)}
    return (client or Client()).post(
        WEBHOOK_PATH, body, content_type="application/json", headers=headers
    )


def deliver(evt: dict[str, Any]) -> StripeEvent:
    """Post a signed event, let the worker process it, and answer its stored row."""
    assert post_webhook(evt).status_code == 200
    events_drain()
    return StripeEvent.objects.get(stripe_id=evt["id"])


@pytest.fixture
def live_stripe(live_server, stripe_server):
    """localstripe, emptied, sending its webhooks to this test's live server.

    The live server outlives the test, so afterwards the receiver is pointed at
    the discard port: localstripe reads its receivers when it sends (about a
    second after each change), and a late delivery must not land in a later test.
    """
    stripe_server.register_webhook("tollgate-tests", live_server.url + WEBHOOK_PATH, PRIMARY_SECRET)
    yield stripe_server
    stripe_server.register_webhook("tollgate-tests", "http://127.0.0.1:9/", PRIMARY_SECRET)


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def in_threads(n: int, work: Callable[[int], Any]) -> list:
    """`work(i)` in `n` threads started together, each on its own connection (closed
    after); the answers, or the exceptions raised, in thread order."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = work(i)
        except Exception as exc:  # surfaced by the assertions
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


@pytest.fixture
def stripe_without_the_route(settings):
    """A Stripe API without the route asked for: every path answers a plain-text 404, as
    a fake Stripe without Checkout or the portal (stock localstripe) does."""

    class NotFound(BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(404)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"404: Not Found")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{server.server_address[1]}"
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    yield
    server.shutdown()
    server.server_close()


def stripe_plan_create(plan):
    """Make the legacy plan `plan` bills through at the Stripe in use (the development
    Stripe knows plans, and prices by a plan's id); answers `plan`."""
    import stripe
    from django.conf import settings

    stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
    ).v1.plans.create(
        params={
            "id": plan.stripe_price_id,
            "amount": plan.amount,
            "currency": plan.currency,
            "interval": plan.interval,
            "product": {"name": plan.name},
        }
    )
    return plan
