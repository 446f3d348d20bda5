"""The pinned API version on top of localstripe's 2017 one: requests in, objects out.

localstripe speaks the Stripe API of 2017. This module lets a client speak the pinned
version to it, both ways:

- requests: parameters the pinned version has and localstripe lacks are turned into
  what localstripe understands (`allowed_payment_method_types` and
  `automatic_payment_methods` into `payment_method_types=["card"]`, subscription
  items' `price` into `plan`, a price being the plan of the same id), or kept here and
  echoed back on the object (`description`, `statement_descriptor`, `receipt_email`,
  a refund's `reason`, a subscription's `default_payment_method` and
  `payment_behavior`);
- objects, in API answers and in events: shaped as the pinned version writes them (a
  PaymentIntent's `amount_received` and `latest_charge` as an id; a charge without
  embedded `refunds`; an invoice's subscription under `parent`, its payments as
  `InvoicePayment` objects, no `paid`, `charge` or `payment_intent`; a subscription's
  period on its items), and events say the pinned `api_version`.

The rule: only this side changes. The product sends and reads what Stripe does.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from devstripe import schema

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Obj = dict[str, Any]

# Parameters localstripe refuses, kept here and echoed on the object, by object type.
KEPT: dict[str, frozenset[str]] = {
    "payment_intent": frozenset(
        {
            "description",
            "statement_descriptor",
            "statement_descriptor_suffix",
            "receipt_email",
            "automatic_payment_methods",
            "allowed_payment_method_types",
            "excluded_payment_method_types",
            "setup_future_usage",
            "confirmation_method",
            "return_url",
        }
    ),
    "setup_intent": frozenset(
        {
            "description",
            "automatic_payment_methods",
            "allowed_payment_method_types",
            "excluded_payment_method_types",
            "return_url",
        }
    ),
    "refund": frozenset({"reason", "description"}),
    "subscription": frozenset({"default_payment_method", "payment_behavior", "description"}),
}
# Kept for the request only: they describe how to confirm, not the object.
NOT_ECHOED = frozenset({"return_url", "allowed_payment_method_types"})

# Fields this module expands itself (localstripe has no such field).
EXPANDED_HERE = frozenset({"payments"})

# The object type each translated endpoint works on.
ENDPOINTS: dict[tuple[str, str], str] = {
    ("POST", "/v1/payment_intents"): "payment_intent",
    ("POST", "/v1/payment_intents/{intent}"): "payment_intent",
    ("POST", "/v1/payment_intents/{intent}/confirm"): "payment_intent",
    ("POST", "/v1/setup_intents"): "setup_intent",
    ("POST", "/v1/setup_intents/{intent}"): "setup_intent",
    ("POST", "/v1/setup_intents/{intent}/confirm"): "setup_intent",
    ("POST", "/v1/refunds"): "refund",
    ("POST", "/v1/subscriptions"): "subscription",
    ("POST", "/v1/subscriptions/{subscription_exposed_id}"): "subscription",
}


class Extras:
    """What localstripe cannot hold, by object id: echoed on every answer and event."""

    def __init__(self) -> None:
        self.by_id: dict[str, dict[str, Any]] = {}

    def keep(self, obj_id: str, values: dict[str, Any]) -> None:
        echoed = {k: v for k, v in values.items() if k not in NOT_ECHOED}
        if echoed:
            self.by_id.setdefault(obj_id, {}).update(echoed)


EXTRAS = Extras()


# --- requests ------------------------------------------------------------------------


def _pairs_translated(
    kind: str, pairs: list[tuple[str, str]]
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """localstripe's form pairs for a pinned-version request, and what is kept here."""
    kept_names = KEPT.get(kind, frozenset())
    out: list[tuple[str, str]] = []
    kept: list[tuple[str, str]] = []
    for key, value in pairs:
        head = key.split("[", 1)[0]
        if head in kept_names:
            kept.append((key, value))
        elif kind == "subscription" and key.startswith("items[") and key.endswith("[price]"):
            out.append((key[: -len("[price]")] + "[plan]", value))
        else:
            out.append((key, value))
    decoded = schema.decode(kept)
    if kind in ("payment_intent", "setup_intent") and (
        "allowed_payment_method_types" in decoded or "automatic_payment_methods" in decoded
    ):
        # localstripe takes cards only.
        out.append(("payment_method_types[0]", "card"))
    return out, {k: _plain(v) for k, v in decoded.items()}


def _plain(value: schema.Tree) -> Any:
    """A decoded form value as JSON: digit-keyed hashes become lists, booleans booleans."""
    if isinstance(value, dict):
        if value and all(k.isdigit() for k in value):
            return [_plain(value[k]) for k in sorted(value, key=int)]
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return {"true": True, "false": False}.get(value, value)


def _with_body(request: web.Request, pairs: list[tuple[str, str]]) -> web.Request:
    """The request with this form body. aiohttp reads a body once and keeps its bytes and
    parsed form (and refuses to clone a request after that): the translated ones replace
    them, so localstripe's handlers read these."""
    request._read_bytes = urlencode(pairs).encode()
    request._post = None
    return request


# --- objects -------------------------------------------------------------------------


def _id(value: Any) -> Any:
    return value.get("id") if isinstance(value, dict) else value


def _payment_intent(obj: Obj, expand: set[str]) -> None:
    charge = obj.get("latest_charge")
    if obj.get("amount_received") is None:
        if isinstance(charge, dict):
            captured = charge.get("amount_captured")
            if captured is None:
                captured = charge.get("amount", 0) if charge.get("captured") else 0
            obj["amount_received"] = captured if charge.get("status") == "succeeded" else 0
        else:
            obj["amount_received"] = obj.get("amount", 0) if obj.get("status") == "succeeded" else 0
    if "latest_charge" not in expand:
        obj["latest_charge"] = _id(charge)
    obj.pop("charges", None)  # gone since 2022-11-15
    obj.setdefault("automatic_payment_methods", None)


def _charge(obj: Obj, expand: set[str]) -> None:
    if "refunds" not in expand:
        obj.pop("refunds", None)
    if obj.get("amount_captured") is None:
        obj["amount_captured"] = obj.get("amount", 0) if obj.get("captured") else 0


def _price_of(plan: Obj) -> Obj:
    return {
        "id": plan.get("id"),
        "object": "price",
        "active": plan.get("active", True),
        "currency": plan.get("currency"),
        "unit_amount": plan.get("amount"),
        "product": _id(plan.get("product")),
        "recurring": {
            "interval": plan.get("interval"),
            "interval_count": plan.get("interval_count", 1),
            "usage_type": plan.get("usage_type", "licensed"),
        },
        "type": "recurring",
        "metadata": plan.get("metadata") or {},
        "livemode": False,
        "created": plan.get("created"),
    }


def _subscription(obj: Obj, _expand: set[str]) -> None:
    start = obj.pop("current_period_start", None)
    end = obj.pop("current_period_end", None)
    obj.pop("plan", None)  # the plan (a price now) is on each item
    for item in (obj.get("items") or {}).get("data") or []:
        item.setdefault("current_period_start", start)
        item.setdefault("current_period_end", end)
        plan = item.get("plan")
        if isinstance(plan, dict) and not isinstance(item.get("price"), dict):
            item["price"] = _price_of(plan)
    obj.setdefault("default_payment_method", None)


def _invoice_payments(obj: Obj) -> list[Obj]:
    """An invoice's payments as the pinned version lists them (one per charge here)."""
    intent = _id(obj.get("payment_intent"))
    charge = _id(obj.get("charge"))
    if not intent and not charge:
        return []
    status = obj.get("status")
    paid = status == "paid"
    payment: Obj = (
        {"type": "payment_intent", "payment_intent": intent}
        if intent
        else {"type": "charge", "charge": charge}
    )
    return [
        {
            "id": "inpay_" + str(obj["id"]).removeprefix("in_"),
            "object": "invoice_payment",
            "invoice": obj["id"],
            "amount_paid": obj.get("amount_paid") if paid else None,
            "amount_requested": obj.get("amount_due"),
            "currency": obj.get("currency"),
            "created": obj.get("created"),
            "is_default": True,
            "livemode": False,
            "payment": payment,
            "status": "paid" if paid else ("canceled" if status == "void" else "open"),
            "status_transitions": {
                "canceled_at": None,
                "paid_at": obj.get("created") if paid else None,
            },
        }
    ]


def _invoice(obj: Obj, expand: set[str]) -> None:
    if "payments" in expand:
        data = _invoice_payments(obj)
        obj["payments"] = {
            "object": "list",
            "data": data,
            "has_more": False,
            "total_count": len(data),
            "url": f"/v1/invoices/{obj['id']}/payments",
        }
    subscription = obj.pop("subscription", None)
    if subscription and not obj.get("parent"):
        obj["parent"] = {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"subscription": _id(subscription), "metadata": None},
        }
    obj.setdefault("parent", None)
    for gone in ("paid", "charge", "payment_intent"):
        obj.pop(gone, None)


SHAPERS: dict[str, Callable[[Obj, set[str]], None]] = {
    "payment_intent": _payment_intent,
    "charge": _charge,
    "subscription": _subscription,
    "invoice": _invoice,
}


def shape(value: Any, expand: frozenset[str] = frozenset()) -> Any:
    """Every Stripe object inside `value`, as the pinned version writes it. `expand` names
    the fields the request expanded (kept as objects)."""
    if isinstance(value, list):
        return [shape(v, expand) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: shape(v, expand if k == "data" else _under(k, expand)) for k, v in value.items()}
    kind = out.get("object")
    if isinstance(kind, str):
        out.update(EXTRAS.by_id.get(str(out.get("id")), {}))
        shaper = SHAPERS.get(kind)
        if shaper is not None:
            shaper(out, {p.split(".", 1)[0] for p in expand})
    return out


def _under(key: str, expand: frozenset[str]) -> frozenset[str]:
    return frozenset(p.split(".", 1)[1] for p in expand if p.startswith(key + "."))


def _expand_of(params: dict[str, schema.Tree]) -> frozenset[str]:
    value = params.get("expand")
    if isinstance(value, dict):
        return frozenset(str(v) for v in value.values())
    return frozenset()


# --- routes localstripe lacks ----------------------------------------------------------


def _store_get(kind: str, obj_id: str) -> Any:
    from localstripe.resources import store

    return store.get(f"{kind}:{obj_id}")


def _not_found(what: str) -> web.Response:
    return web.json_response(
        {"error": {"type": "invalid_request_error", "message": f"No such {what}"}}, status=404
    )


def _list(url: str, data: list[Obj]) -> web.Response:
    return web.json_response({"object": "list", "data": data, "has_more": False, "url": url})


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def payment_intents_list(params: dict[str, schema.Tree]) -> web.Response:
    """`GET /v1/payment_intents` with the filters localstripe lacks (`customer`,
    `created`), newest first, paged by `limit` and `starting_after` as Stripe pages."""
    from localstripe.resources import store

    created = params.get("created")
    bounds = created if isinstance(created, dict) else {"eq": created} if created else {}
    tests = {
        "gt": lambda c, b: c > b,
        "gte": lambda c, b: c >= b,
        "lt": lambda c, b: c < b,
        "lte": lambda c, b: c <= b,
        "eq": lambda c, b: c == b,
    }
    customer = params.get("customer")
    found = [
        obj
        for key, obj in store.items()
        if key.startswith("payment_intent:")
        and (customer is None or obj.customer == customer)
        and all(
            (b := _int(bound)) is not None and tests[op](obj.created, b)
            for op, bound in bounds.items()
            if op in tests
        )
    ]
    found.sort(key=lambda o: (o.created, o.id), reverse=True)
    after = params.get("starting_after")
    if isinstance(after, str):
        ids = [o.id for o in found]
        found = found[ids.index(after) + 1 :] if after in ids else []
    limit = max(1, min(_int(params.get("limit")) or 10, 100))
    page = found[:limit]
    return web.json_response(
        {
            "object": "list",
            "data": [shape(o._export()) for o in page],
            "has_more": len(found) > limit,
            "url": "/v1/payment_intents",
        }
    )


async def invoice_payments_list(request: web.Request) -> web.Response:
    invoice_id = request.query.get("invoice", "")
    invoices = []
    if invoice_id:
        found = _store_get("invoice", invoice_id)
        invoices = [found] if found is not None else []
    else:
        from localstripe.resources import store

        invoices = [v for k, v in store.items() if k.startswith("invoice:")]
    data = [p for inv in invoices for p in _invoice_payments(inv._export())]
    return _list("/v1/invoice_payments", data)


async def invoice_payment_retrieve(request: web.Request) -> web.Response:
    payment_id = request.match_info["id"]
    invoice = _store_get("invoice", "in_" + payment_id.removeprefix("inpay_"))
    payments = _invoice_payments(invoice._export()) if invoice is not None else []
    if not payments:
        return _not_found(f"invoice payment: '{payment_id}'")
    return web.json_response(payments[0])


async def price_retrieve(request: web.Request) -> web.Response:
    plan = _store_get("plan", request.match_info["id"])
    if plan is None:
        return _not_found(f"price: '{request.match_info['id']}'")
    return web.json_response(_price_of(plan._export()))


async def prices_list(_request: web.Request) -> web.Response:
    from localstripe.resources import store

    plans = [v._export() for k, v in store.items() if k.startswith("plan:")]
    return _list("/v1/prices", [_price_of(p) for p in plans])


async def price_create(request: web.Request) -> web.Response:
    """A recurring price, made as the legacy plan localstripe bills (same id)."""
    from localstripe.resources import Plan

    form = _plain(schema.decode(list((await request.post()).items())))
    recurring = form.get("recurring") or {}
    product = form.get("product") or form.get("product_data")
    plan = Plan._api_create(
        amount=form.get("unit_amount"),
        currency=form.get("currency"),
        interval=recurring.get("interval"),
        interval_count=recurring.get("interval_count", 1),
        product=product,
        metadata=form.get("metadata"),
    )
    return web.json_response(_price_of(plan._export()))


# --- installing ----------------------------------------------------------------------


def _shape_events(version: str) -> None:
    """Events, listed or sent to webhooks, in the pinned shapes and version."""
    from localstripe.resources import Event

    if getattr(Event, "_devstripe_shaped", False):
        return
    export = Event._export

    def shaped_export(self: Any, expand: Any = None) -> Obj:
        out = shape(export(self, expand=expand))
        out["api_version"] = version
        return out

    Event._export = shaped_export
    Event._devstripe_shaped = True


def install(app: web.Application) -> None:
    import stripe

    _shape_events(stripe.api_version)

    @web.middleware
    async def pinned_shapes(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "DELETE" and request.path == "/_config/data":
            EXTRAS.by_id.clear()
        if not request.path.startswith("/v1/"):
            return await handler(request)
        route = schema.route_for(request.method, request.path)
        kind = ENDPOINTS.get((route.method, route.template)) if route else None
        kept: dict[str, Any] = {}
        if kind is not None and request.body_exists:
            pairs = [(k, v) for k, v in (await request.post()).items() if isinstance(v, str)]
            translated, kept = _pairs_translated(kind, pairs)
            if kept or translated != pairs:
                request = _with_body(request, translated)
        params = schema.decode(request.query.items())
        if request.method == "GET" and request.path == "/v1/payment_intents":
            return payment_intents_list(params)
        if request.method == "GET" and any(
            k.startswith("expand[") and v in EXPANDED_HERE for k, v in request.query.items()
        ):
            # localstripe refuses to expand what it does not have; this module does it.
            query = [
                (k, v)
                for k, v in request.query.items()
                if not (k.startswith("expand[") and v in EXPANDED_HERE)
            ]
            request = request.clone(rel_url=request.rel_url.with_query(query))
        response = await handler(request)
        if not isinstance(response, web.Response) or response.content_type != "application/json":
            return response
        if response.status >= 400 or response.body is None:
            return response
        body = json.loads(response.body)  # type: ignore[arg-type]
        if kept and isinstance(body, dict) and body.get("id"):
            EXTRAS.keep(str(body["id"]), kept)
        if request.method == "POST":
            params = {**params, **schema.decode((await request.post()).items())}  # type: ignore[arg-type]
        return web.json_response(shape(body, _expand_of(params)), status=response.status)

    app.middlewares.append(pinned_shapes)
    app.router.add_get("/v1/invoice_payments", invoice_payments_list)
    app.router.add_get("/v1/invoice_payments/{id}", invoice_payment_retrieve)
    app.router.add_get("/v1/prices", prices_list)
    app.router.add_post("/v1/prices", price_create)
    app.router.add_get("/v1/prices/{id}", price_retrieve)
