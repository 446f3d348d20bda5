"""Stripe's test clocks for the development Stripe: move subscriptions through their cycles.

`/v1/test_helpers/test_clocks` (create, retrieve, list, delete, `/advance`), as
at the pinned API version. A customer created with `test_clock` lives on that
clock's time: its subscriptions start at the clock's `frozen_time`, and
advancing the clock past a period's end renews each of them as Stripe does: a
new invoice, charged to the customer's default card, with its PaymentIntent,
`invoice.payment_succeeded` and `invoice.paid` (or `invoice.payment_failed`
and the subscription `past_due`), and `customer.subscription.updated`; a
subscription set to cancel at period end ends instead
(`customer.subscription.deleted`). Every paid invoice also sends `invoice.paid`,
as at Stripe; localstripe sends only `invoice.payment_succeeded`.

The rule: a clock only moves forward, and a period is renewed once.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from localstripe.resources import (
    Customer,
    Event,
    Invoice,
    List,
    PaymentIntent,
    StripeObject,
    Subscription,
    store,
)
from localstripe.webhooks import schedule_webhook

from devstripe import hosted
from devstripe.hosted import invalid

# Stripe deletes a test clock, and everything on it, 30 days after it was made.
CLOCK_LIFETIME = 30 * 24 * 60 * 60
LIVE_STATUSES = ("active", "past_due", "trialing")


class TestClock(StripeObject):
    object = "test_helpers.test_clock"
    _id_prefix = "clock_"

    def __init__(self, frozen_time: int, name: str | None) -> None:
        super().__init__()
        self.deletes_after = self.created + CLOCK_LIFETIME
        self.frozen_time = frozen_time
        self.name = name
        self.status = "ready"
        self.status_details = {}


def clock_get(clock_id: str) -> TestClock:
    found = store.get(f"{TestClock.object}:{clock_id}")
    if found is None:
        raise invalid(f"No such test_clock: '{clock_id}'", "test_clock", status=404)
    return found


def clock_of_customer(customer_id: str | None) -> TestClock | None:
    customer = store.get(f"customer:{customer_id}") if customer_id else None
    clock_id = getattr(customer, "test_clock", None)
    return store.get(f"{TestClock.object}:{clock_id}") if clock_id else None


def subscription_renew_due(sub: Subscription, until: int) -> int:
    """Renew `sub` for every period that ended by `until`; how many periods were billed."""
    billed = 0
    while sub.status in LIVE_STATUSES and sub.current_period_end <= until:
        if sub.cancel_at_period_end:
            sub.ended_at = sub.current_period_end
            sub.status = "canceled"
            schedule_webhook(_event("customer.subscription.deleted", sub))
            break
        previous: dict[str, Any] = {
            "current_period_start": sub.current_period_start,
            "current_period_end": sub.current_period_end,
            "latest_invoice": sub.latest_invoice,
            "status": sub.status,
        }
        sub.start_date = sub.current_period_end
        sub._create_invoice()
        billed += 1
        invoice = Invoice._api_retrieve(sub.latest_invoice)
        if invoice.status != "paid":
            # localstripe charges a renewal without telling anyone it failed.
            if invoice.payment_intent:
                intent = PaymentIntent._api_retrieve(invoice.payment_intent)
                schedule_webhook(_event("payment_intent.payment_failed", intent))
            schedule_webhook(_event("invoice.payment_failed", invoice))
        hosted.emit("customer.subscription.updated", sub, previous, pinned=False)
    return billed


def _event(event_type: str, obj: Any) -> Event:
    """An event in localstripe's own version: its objects are in localstripe's shape."""
    return Event(event_type, obj)


def clock_advance(clock: TestClock, frozen_time: int) -> dict[str, Any]:
    """Move the clock to `frozen_time`, renewing its customers' subscriptions on the way."""
    if frozen_time <= clock.frozen_time:
        raise invalid(
            "The frozen_time must be after the test clock's current frozen time.", "frozen_time"
        )
    clock.status = "advancing"
    clock.status_details = {"advancing": {"target_frozen_time": frozen_time}}
    answer = clock._export()
    hosted.emit("test_helpers.test_clock.advancing", clock)
    customers = [
        v
        for k, v in list(store.items())
        if k.startswith("customer:") and getattr(v, "test_clock", None) == clock.id
    ]
    for customer in customers:
        subs = Subscription._api_list_all(None, customer=customer.id)._list
        for sub in sorted(subs, key=lambda s: s.created):
            subscription_renew_due(sub, frozen_time)
    clock.frozen_time = frozen_time
    clock.status = "ready"
    clock.status_details = {}
    hosted.emit("test_helpers.test_clock.ready", clock)
    return answer


# --- localstripe, taught the clock ------------------------------------------------------


def _install_customer_clock() -> None:
    original = Customer.__init__

    def init(self, *args: Any, test_clock: str | None = None, **kwargs: Any) -> None:
        if test_clock is not None:
            clock_get(str(test_clock))  # 404 before anything is made
        original(self, *args, **kwargs)
        self.test_clock = test_clock

    Customer.__init__ = init


def _install_subscription_clock() -> None:
    create = StripeObject._api_create.__func__

    def subscription_create(cls, **data: Any) -> Subscription:
        clock = clock_of_customer(data.get("customer"))
        if clock is not None and not data.get("backdate_start_date"):
            data["backdate_start_date"] = clock.frozen_time
        return create(cls, **data)

    Subscription._api_create = classmethod(subscription_create)


def _install_invoice_paid() -> None:
    original = Invoice._on_payment_success

    def on_payment_success(self) -> None:
        original(self)
        schedule_webhook(_event("invoice.paid", self))

    Invoice._on_payment_success = on_payment_success


# --- the API ----------------------------------------------------------------------------


async def api_create(request: web.Request) -> web.Response:
    params = await hosted.read_params(request)
    params.pop("expand", None)
    hosted.unknown_params(params, {"frozen_time", "name"})
    if params.get("frozen_time") in (None, ""):
        raise invalid("Missing required param: frozen_time.", "frozen_time")
    frozen_time = hosted.to_int(params["frozen_time"], "frozen_time")
    clock = TestClock(frozen_time, params.get("name") or None)
    return hosted.reply(clock._export())


async def api_retrieve(request: web.Request) -> web.Response:
    return hosted.reply(clock_get(request.match_info["id"])._export())


async def api_delete(request: web.Request) -> web.Response:
    clock = clock_get(request.match_info["id"])
    for key, value in list(store.items()):
        if key.startswith("customer:") and getattr(value, "test_clock", None) == clock.id:
            for sub in Subscription._api_list_all(None, customer=value.id)._list:
                Subscription._api_delete(sub.id)
            Customer._api_delete(value.id)
    del store[f"{TestClock.object}:{clock.id}"]
    return hosted.reply({"id": clock.id, "object": TestClock.object, "deleted": True})


async def api_list(request: web.Request) -> web.Response:
    params = hosted.query_params(request)
    listing = List(
        "/v1/test_helpers/test_clocks",
        limit=params.get("limit"),
        starting_after=params.get("starting_after"),
    )
    listing._list = sorted(
        (v for k, v in store.items() if k.startswith(TestClock.object + ":")),
        key=lambda c: (c.created, c.id),
        reverse=True,
    )
    return hosted.reply(listing._export())


async def api_advance(request: web.Request) -> web.Response:
    clock = clock_get(request.match_info["id"])
    params = await hosted.read_params(request)
    params.pop("expand", None)
    hosted.unknown_params(params, {"frozen_time"})
    if params.get("frozen_time") in (None, ""):
        raise invalid("Missing required param: frozen_time.", "frozen_time")
    frozen_time = hosted.to_int(params["frozen_time"], "frozen_time")
    return hosted.reply(clock_advance(clock, frozen_time))


def install(app: web.Application) -> None:
    if hosted.once("clock"):
        _install_customer_clock()
        _install_subscription_clock()
        _install_invoice_paid()
    base = "/v1/test_helpers/test_clocks"
    app.router.add_post(base, api_create)
    app.router.add_get(base, api_list)
    app.router.add_get(base + "/{id}", api_retrieve)
    app.router.add_delete(base + "/{id}", api_delete)
    app.router.add_post(base + "/{id}/advance", api_advance)
