"""Stripe faults while an order is created, paid again or cancelled: the answer lost, a
timeout, a 5xx, a decline with Stripe's own decline code.

A real HTTP proxy on 127.0.0.1 stands between Tollgate and localstripe. It
forwards every request, so localstripe really makes the PaymentIntent, and then,
for the faults it is given, loses the answer: it closes the connection without
one, holds it past the client's timeout, or answers 500 instead (a decline it
answers itself, forwarding nothing). It also notes each request's
Idempotency-Key. localstripe ignores idempotency keys (a repeated key makes a
second object), so only the look-up by the order's metadata stands between a
retry and a second PaymentIntent: these tests fail without it.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from fnmatch import fnmatch
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import stripe

from billing import gateway
from billing.models import Order, Payment
from billing.services.orders import order_pay
from tests.billing.factories import OrderFactory
from tests.billing.test_e2e_payments import card
from tests.billing.test_orders import BUY_100, stripe_intents

CREATE = ("POST", "/v1/payment_intents")
LIST = ("GET", "/v1/payment_intents")
CONFIRM = ("POST", "/v1/payment_intents/*/confirm")
ATTACH = ("POST", "/v1/payment_methods/*/attach")
INSUFFICIENT_FUNDS = {
    "type": "card_error",
    "code": "card_declined",
    "decline_code": "insufficient_funds",
    "message": "Your card has insufficient funds.",
}
CANCEL = ("POST", "/v1/payment_intents/*/cancel")
# A card, and what the order says once a PaymentIntent with it has been confirmed.
CONFIRMED_AT_STRIPE = pytest.mark.parametrize(
    ("number", "answer"),
    [("4000002500003155", "requires_action"), ("4242424242424242", "paid")],
    ids=["3d-secure", "no-3d-secure"],
)
# A fault's name, or what to run with Stripe's answer before it goes back.
Fault = str | Callable[[bytes], object]


class FaultyProxy:
    """Forwards to `upstream`; the next requests matching a fault's route lose their answer."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.faults: list[tuple[tuple[str, str], Fault]] = []
        self.seen: Counter[tuple[str, str]] = Counter()
        self.keys: list[tuple[tuple[str, str], str | None]] = []  # each request's Idempotency-Key
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _any(self) -> None:
                proxy.handle(self)

            do_GET = do_POST = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def fail_next(self, route: tuple[str, str], how: Fault, times: int = 1) -> None:
        """`route` is a method and a path, in which `*` matches an object's id. `how` is a
        fault's name, or a function given Stripe's answer (bytes) to run before the
        answer goes back: what happened meanwhile (a webhook that overtook it)."""
        with self.lock:
            self.faults.extend([(route, how)] * times)

    def _fault_for(self, route: tuple[str, str]) -> Fault | None:
        with self.lock:
            self.seen[route] += 1
            for i, (r, how) in enumerate(self.faults):
                if r[0] == route[0] and fnmatch(route[1], r[1]):  # `*` stands for an id
                    del self.faults[i]
                    return how
        return None

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        body = req.rfile.read(int(req.headers.get("Content-Length") or 0))
        route = (req.command, urlsplit(req.path).path)
        fault = self._fault_for(route)
        with self.lock:
            self.keys.append((route, req.headers.get("Idempotency-Key")))
        if fault == "insufficient_funds":  # Stripe declines the card: nothing is charged
            self.answer(req, 402, json.dumps({"error": INSUFFICIENT_FUNDS}).encode())
            return
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=10)
        headers = {k: v for k, v in req.headers.items() if k.lower() not in ("host", "connection")}
        conn.request(req.command, req.path, body=body, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        conn.close()
        if callable(fault):
            fault(payload)
        if fault == "drop":  # Stripe did it; the answer never arrives
            req.close_connection = True
            return
        if fault == "timeout":  # the answer comes after the client gave up
            time.sleep(2.5)
            req.close_connection = True
            return
        if fault == "500":
            payload = b'{"error": {"type": "api_error", "message": "An unknown error occurred"}}'
            status = 500
        else:
            status = resp.status
        self.answer(req, status, payload)

    @staticmethod
    def answer(req: BaseHTTPRequestHandler, status: int, payload: bytes) -> None:
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(payload)))
        req.end_headers()
        req.wfile.write(payload)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(stripe_server, settings) -> Iterator[FaultyProxy]:
    proxy = FaultyProxy(stripe_server.base)
    settings.STRIPE_API_BASE = proxy.base
    settings.STRIPE_TIMEOUT = 1
    yield proxy
    proxy.close()


def _intents_of(order_id: int) -> list:
    return [i for i in stripe_intents() if i.metadata["order_id"] == str(order_id)]


@pytest.mark.parametrize("fault", ["drop", "timeout", "500"])
def test_a_lost_create_answer_is_found_by_metadata_not_sent_again(api, settings, proxy, fault):
    settings.STRIPE_MAX_NETWORK_RETRIES = 2
    proxy.fail_next(CREATE, fault)
    resp = api.post("/payments/create/", BUY_100)
    assert resp.status_code == 201, resp.content
    order = Order.objects.get()
    [intent] = _intents_of(order.pk)
    assert resp.json()["payment_intent_id"] == intent.id
    assert Payment.objects.get().stripe_payment_intent_id == intent.id
    assert proxy.seen[CREATE] == 1  # the look-up found it; nothing was sent twice


@pytest.mark.parametrize("fault", ["drop", "timeout", "500"])
def test_a_retry_after_a_502_resumes_the_payment_intent_stripe_made(api, settings, proxy, fault):
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    proxy.fail_next(CREATE, fault)
    proxy.fail_next(LIST, "drop")  # and the look-up right after it: the client gets a 502
    first = api.post("/payments/create/", BUY_100, headers={"Idempotency-Key": "lost-answer"})
    assert first.status_code == 502, first.content
    assert first.json()["extra"]["retryable"] is True
    order = Order.objects.get(pk=first.json()["extra"]["order_id"])
    assert order.status == Order.Status.PENDING
    assert "failed to create the payment" in order.gateway_error
    [made] = _intents_of(order.pk)  # Stripe made it; we never heard

    retry = api.post("/payments/create/", BUY_100, headers={"Idempotency-Key": "lost-answer"})
    assert retry.status_code == 200, retry.content
    assert retry.json()["order_id"] == order.pk
    assert retry.json()["payment_intent_id"] == made.id
    assert [i.id for i in _intents_of(order.pk)] == [made.id]
    assert proxy.seen[CREATE] == 1


def test_a_resumed_order_with_a_card_is_confirmed_once_and_paid(api, settings, proxy):
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    body = {**BUY_100, "payment_method_id": "pm_card_visa"}
    proxy.fail_next(CREATE, "drop")
    proxy.fail_next(LIST, "drop")
    first = api.post("/payments/create/", body, headers={"Idempotency-Key": "lost-card"})
    assert first.status_code == 502
    retry = api.post("/payments/create/", body, headers={"Idempotency-Key": "lost-card"})
    assert retry.status_code == 200, retry.content
    assert retry.json()["status"] == "paid"
    order = Order.objects.get()
    [intent] = _intents_of(order.pk)
    assert intent.status == "succeeded"
    assert proxy.seen[CREATE] == 1
    assert proxy.seen[("POST", f"/v1/payment_intents/{intent.id}/confirm")] == 1


@CONFIRMED_AT_STRIPE
def test_a_resumed_payment_intent_already_confirmed_is_not_confirmed_again(
    api, settings, proxy, stripe_server, number, answer
):
    """Two retries of one request may race, and the other one has confirmed the
    PaymentIntent this one finds: it is not confirmed again (no second 3-D Secure check,
    no second attempt at the card). The answer is what Stripe says of it."""
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    body = {**BUY_100, "payment_method_id": card(number)}
    proxy.fail_next(CREATE, "drop")
    proxy.fail_next(LIST, "drop")
    first = api.post("/payments/create/", body, headers={"Idempotency-Key": "raced"})
    assert first.status_code == 502
    order = Order.objects.get()
    [made] = _intents_of(order.pk)
    at_stripe = stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": stripe_server.base}
    )
    at_stripe.v1.payment_intents.confirm(made.id)  # the racing retry, straight to Stripe

    retry = api.post("/payments/create/", body, headers={"Idempotency-Key": "raced"})
    assert retry.status_code == 200, retry.content
    assert retry.json()["status"] == answer
    assert proxy.seen[("POST", f"/v1/payment_intents/{made.id}/confirm")] == 0
    assert [i.id for i in _intents_of(order.pk)] == [made.id]


@pytest.mark.parametrize("ahead", [295, 299])
def test_a_retry_finds_the_payment_intent_while_our_clock_runs_ahead_of_stripes(
    api, settings, proxy, ahead
):
    """Our clock may run up to five minutes ahead of Stripe's: the PaymentIntent the first
    request made then looks older than its order, and the retry still finds it (and
    makes no second one)."""
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    proxy.fail_next(CREATE, "drop")
    proxy.fail_next(LIST, "drop")
    first = api.post("/payments/create/", BUY_100, headers={"Idempotency-Key": "skewed"})
    assert first.status_code == 502, first.content
    order_id = first.json()["extra"]["order_id"]
    [made] = _intents_of(order_id)
    created_here = datetime.fromtimestamp(made.created + ahead, tz=UTC)
    Order.objects.filter(pk=order_id).update(created_at=created_here)

    retry = api.post("/payments/create/", BUY_100, headers={"Idempotency-Key": "skewed"})
    assert retry.status_code == 200, retry.content
    assert retry.json()["payment_intent_id"] == made.id
    assert [i.id for i in _intents_of(order_id)] == [made.id]
    assert proxy.seen[CREATE] == 1


def test_when_stripe_made_nothing_the_retry_creates_it(api, settings, proxy):
    """Stripe was never reached: the retry's look-up finds nothing, so it sends the create."""
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    working = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens: never reached Stripe
    first = api.post("/payments/create/", BUY_100, headers={"Idempotency-Key": "never-sent"})
    assert first.status_code == 502
    settings.STRIPE_API_BASE = working
    retry = api.post("/payments/create/", BUY_100, headers={"Idempotency-Key": "never-sent"})
    assert retry.status_code == 200, retry.content
    [intent] = _intents_of(first.json()["extra"]["order_id"])
    assert retry.json()["payment_intent_id"] == intent.id
    assert proxy.seen[CREATE] == 1


def test_the_look_up_matches_the_whole_order_inside_its_window(stripe_server):
    """Another deployment's order 1 (same number, other user or other amount) is not
    ours, nor is anything made outside the window; an empty metadata value, which
    Stripe drops, does not stop a match."""
    base = {"order_id": "1", "user_id": "7", "order_type": "credit", "service_name": ""}
    want = {"metadata": base, "amount": 1000, "currency": "usd", "customer": None}

    def make(key: str, **changes):
        made = {**want, **changes}
        return gateway.payment_intent_create(
            amount=made["amount"],
            currency=made["currency"],
            metadata=made["metadata"],
            idempotency_key=key,
        )

    make("other-user", metadata={**base, "user_id": "8"})
    make("other-amount", amount=2000)
    since = int(time.time()) - 60
    assert gateway.payment_intent_find(**want, created_after=since) is None
    ours = make("ours")
    found = gateway.payment_intent_find(**want, created_after=since)
    assert found is not None and found.id == ours.id
    later = int(time.time()) + 60
    assert gateway.payment_intent_find(**want, created_after=later) is None
    before = since - 3600
    assert gateway.payment_intent_find(**want, created_after=before, created_before=since) is None


def test_a_lost_confirm_answer_is_502_and_the_order_keeps_the_error(api, settings, proxy):
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    proxy.fail_next(CONFIRM, "500")
    resp = api.post("/payments/create/", {**BUY_100, "payment_method_id": "pm_card_visa"})
    assert resp.status_code == 502, resp.content
    order = Order.objects.get(pk=resp.json()["extra"]["order_id"])
    assert order.status == Order.Status.PENDING  # the webhook will say what Stripe did
    assert "failed to confirm the payment" in order.gateway_error


def test_a_lost_answer_when_paying_again_is_502_and_the_order_keeps_the_error(
    user, settings, proxy
):
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    order = OrderFactory(user=user, gateway_error="Stripe could not be reached.")
    proxy.fail_next(CREATE, "500")
    proxy.fail_next(LIST, "drop")  # and the look-up right after it
    with pytest.raises(gateway.PaymentGatewayError) as failed:
        order_pay(order_id=order.pk, user_id=user.pk, payment_method_id="pm_card_visa")
    assert failed.value.extra["order_id"] == order.pk
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
    assert "failed to create the payment" in order.gateway_error


def test_a_lost_cancel_answer_still_cancels_the_order(api, settings, proxy):
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    order_id = api.post("/payments/create/", BUY_100).json()["order_id"]
    proxy.fail_next(CANCEL, "500")  # Stripe cancelled it; the answer was lost
    resp = api.post(f"/payments/orders/{order_id}/cancel/")
    assert resp.status_code == 200, resp.content
    assert Order.objects.get(pk=order_id).status == Order.Status.CANCELED
    [intent] = _intents_of(order_id)
    assert intent.status == "canceled"


def test_every_write_for_an_order_carries_a_key_of_that_order(api, proxy):
    """A retried write is one write at Stripe: the create and the confirm each carry a key
    made of the order's id. A new order looks for no earlier PaymentIntent."""
    resp = api.post("/payments/create/", {**BUY_100, "payment_method_id": "pm_card_visa"})
    assert resp.status_code == 201, resp.content
    order_id = resp.json()["order_id"]
    assert [route for route, _ in proxy.keys] == [
        CREATE,
        ("POST", f"/v1/payment_intents/{resp.json()['payment_intent_id']}/confirm"),
    ]
    posted = [(path, key) for (method, path), key in proxy.keys if method == "POST"]
    create_key, confirm_key = (key or "" for _, key in posted)
    assert create_key.endswith(f"-order-{order_id}-pi")
    assert confirm_key.endswith(f"-order-{order_id}-pi-confirm")


def test_paying_again_writes_under_keys_of_the_attempt_not_the_first_ones(api, settings, proxy):
    """Stripe answers a key it has seen with its first answer: were the new card confirmed
    under the first attempt's key, Stripe would decline it again with the first card's
    decline, and the buyer could never pay. Each attempt writes under keys of its own."""
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    proxy.fail_next(CONFIRM, "insufficient_funds")
    declined = api.post("/payments/create/", {**BUY_100, "payment_method_id": "pm_card_visa"})
    assert declined.status_code == 402, declined.content
    order_id = declined.json()["extra"]["order_id"]
    paid = api.post(f"/payments/orders/{order_id}/pay/", {"payment_method_id": "pm_card_visa"})
    assert paid.status_code == 200, paid.content
    assert paid.json()["status"] == "paid"
    posted = [key or "" for (method, _), key in proxy.keys if method == "POST"]
    assert [key.split(f"-order-{order_id}-", 1)[-1] for key in posted] == [
        "pi",
        "pi-confirm",
        "pay-1-method",
        "pay-1-confirm",
    ]


def test_paying_again_with_a_lost_answer_charges_the_card_given_not_the_first_ones(
    api, settings, proxy
):
    """The first request made its PaymentIntent with one card and lost every answer; the
    buyer pays the order with another card, and that create's answer is lost too. The
    look-up that stands in for the lost answer finds the PaymentIntent made with the card
    given, never the earlier one (same order, same amount, made minutes before), so the
    card the buyer chose is the one charged, once."""
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    first_card, chosen = card("4242424242424242"), card("5555555555554444")
    proxy.fail_next(CREATE, "drop")
    proxy.fail_next(LIST, "drop")
    created = api.post("/payments/create/", {**BUY_100, "payment_method_id": first_card})
    assert created.status_code == 502, created.content
    order_id = created.json()["extra"]["order_id"]

    proxy.fail_next(CREATE, "drop")  # Stripe makes the new one; the answer is lost
    paid = api.post(f"/payments/orders/{order_id}/pay/", {"payment_method_id": chosen})
    assert paid.status_code == 200, paid.content
    assert paid.json()["status"] == "paid"
    charged = [i for i in _intents_of(order_id) if i.status == "succeeded"]
    assert [i.payment_method for i in charged] == [chosen]
    assert paid.json()["payment_intent_id"] == charged[0].id


@CONFIRMED_AT_STRIPE
def test_paying_again_with_a_lost_answer_finds_the_first_payment_confirmed_and_leaves_it(
    api, settings, proxy, stripe_server, number, answer
):
    """The first request made its PaymentIntent with a card and lost every answer, and a
    racing retry confirmed it. The buyer pays the order again with the same card, and
    that create's answer is lost too: the look-up finds the first PaymentIntent (the
    oldest one made with that card), which is not confirmed again (no second 3-D Secure
    check, no second attempt at the card). The answer is what Stripe says of it."""
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    same_card = card(number)
    proxy.fail_next(CREATE, "drop")
    proxy.fail_next(LIST, "drop")
    created = api.post("/payments/create/", {**BUY_100, "payment_method_id": same_card})
    assert created.status_code == 502, created.content
    order_id = created.json()["extra"]["order_id"]
    [made] = _intents_of(order_id)
    at_stripe = stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": stripe_server.base}
    )
    at_stripe.v1.payment_intents.confirm(made.id)  # the racing retry, straight to Stripe
    while time.time() < made.created + 1:  # the next one is made in a later second
        time.sleep(0.05)

    proxy.fail_next(CREATE, "drop")  # Stripe makes the new one; the answer is lost
    paid = api.post(f"/payments/orders/{order_id}/pay/", {"payment_method_id": same_card})
    assert paid.status_code == 200, paid.content
    assert paid.json()["status"] == answer
    assert paid.json()["payment_intent_id"] == made.id
    assert proxy.seen[("POST", f"/v1/payment_intents/{made.id}/confirm")] == 0
    assert [i.status for i in _intents_of(order_id) if i.id != made.id] == ["requires_confirmation"]


def test_the_decline_code_stripe_gives_is_the_orders_failure_code(api, settings, proxy):
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    proxy.fail_next(CONFIRM, "insufficient_funds")
    resp = api.post("/payments/create/", {**BUY_100, "payment_method_id": "pm_card_visa"})
    assert resp.status_code == 402, resp.content
    order = Order.objects.get(pk=resp.json()["extra"]["order_id"])
    assert order.status == Order.Status.FAILED
    assert order.failure_code == "insufficient_funds"


def test_a_card_to_save_that_stripe_fails_to_attach_is_502_and_the_order_keeps_the_error(
    api, settings, proxy
):
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    proxy.fail_next(ATTACH, "500")
    resp = api.post(
        "/payments/create/",
        {**BUY_100, "payment_method_id": "pm_card_visa", "save_payment_method": True},
    )
    assert resp.status_code == 502, resp.content
    order = Order.objects.get(pk=resp.json()["extra"]["order_id"])
    assert order.status == Order.Status.PENDING
    assert "failed to save the card" in order.gateway_error
    assert not order.payments.exists()


def test_paying_with_a_saved_card_attaches_it_to_nobody_again(api, proxy):
    """Saved once when the buyer asked; a later order charged to the saved card asks
    Stripe to attach nothing."""

    def attaches() -> int:
        return sum(
            n for (m, path), n in proxy.seen.items() if m == "POST" and fnmatch(path, ATTACH[1])
        )

    new_card = card("4242424242424242")
    first = api.post(
        "/payments/create/",
        {**BUY_100, "payment_method_id": new_card, "save_payment_method": True},
    )
    assert first.status_code == 201, first.content
    assert attaches() == 1
    again = api.post("/payments/create/", {**BUY_100, "payment_method_id": new_card})
    assert (again.status_code, again.json()["status"]) == (201, "paid"), again.content
    assert attaches() == 1
