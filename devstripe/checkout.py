"""Stripe Checkout for the development Stripe: sessions, their hosted page, their events.

`POST /v1/checkout/sessions` (payment and subscription mode), retrieve, list,
`/expire` and `/line_items`, as at the pinned API version; the session's `url`
is a page served here that takes Stripe's test cards (4242… pays, 0002
declines and lets the customer try another card, 3155 asks for 3-D Secure).
A euro payment may also be a SEPA Direct Debit, which completes unpaid and
settles later (`checkout.session.async_payment_succeeded` or `…_failed`).
Paying makes a real localstripe PaymentIntent or subscription, so every other
event of the payment happens as it would; then `checkout.session.completed`,
and `checkout.session.expired` at `expires_at` or when expired through the API.

The rule: a session moves only forward (open → complete or expired), once,
and each move sends its one event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiohttp import web
from localstripe.errors import UserError
from localstripe.resources import (
    Customer,
    List,
    PaymentIntent,
    Plan,
    Product,
    StripeObject,
    store,
)
from stripe.params.checkout import SessionCreateParams

from devstripe import hosted
from devstripe.hosted import invalid

log = logging.getLogger(__name__)

_REQUEST_OPTIONS = {
    "api_key",
    "stripe_version",
    "stripe_account",
    "stripe_context",
    "max_network_retries",
    "idempotency_key",
    "content_type",
    "headers",
}
CREATE_PARAMS = set(SessionCreateParams.__annotations__) - _REQUEST_OPTIONS

# Stripe's bounds on `expires_at`, in seconds after the session's creation.
EXPIRES_MIN = 30 * 60
EXPIRES_MAX = 24 * 60 * 60
EXPIRES_DEFAULT = EXPIRES_MAX
# How often the sweep looks for sessions past their `expires_at`.
SWEEP_SECONDS = 1.0


class CheckoutSession(StripeObject):
    object = "checkout.session"
    _id_prefix = "cs_test_"

    def __init__(self, **fields: Any) -> None:
        super().__init__(id=hosted.new_id("cs_test_", 58))
        self._line_items: list[dict[str, Any]] = fields.pop("_line_items")
        self._payment_intent_data: dict[str, Any] = fields.pop("_payment_intent_data")
        self._subscription_data: dict[str, Any] = fields.pop("_subscription_data")
        self._error = ""  # shown on the page after a decline
        for key, value in fields.items():
            setattr(self, key, value)


# --- the API ---------------------------------------------------------------------------


def _price_for(line: dict[str, Any], index: int, mode: str) -> dict[str, Any]:
    """The Price a line item names or describes, as Stripe's `price` object."""
    param = f"line_items[{index}]"
    if line.get("price"):
        price_id = line["price"]
        try:
            plan = Plan._api_retrieve(price_id)
        except UserError:
            raise invalid(f"No such price: '{price_id}'", f"{param}[price]") from None
        return {
            "id": plan.id,
            "object": "price",
            "active": plan.active,
            "currency": plan.currency,
            "unit_amount": plan.amount,
            "product": plan.product,
            "type": "recurring",
            "recurring": {
                "interval": plan.interval,
                "interval_count": plan.interval_count,
                "usage_type": "licensed",
            },
        }
    data = line.get("price_data")
    if not isinstance(data, dict):
        raise invalid("Each line item needs a `price` or `price_data`.", param)
    currency = str(data.get("currency") or "").lower()
    if not currency:
        raise invalid("Missing required param: currency.", f"{param}[price_data][currency]")
    if "unit_amount" not in data:
        raise invalid("Missing required param: unit_amount.", f"{param}[price_data][unit_amount]")
    amount = hosted.to_int(data["unit_amount"], f"{param}[price_data][unit_amount]")
    if amount < 0:
        raise invalid("unit_amount must be 0 or more.", f"{param}[price_data][unit_amount]")
    product = data.get("product")
    product_data = data.get("product_data")
    if not product and not isinstance(product_data, dict):
        raise invalid(
            "You must specify either `product` or `product_data` when creating a price.",
            f"{param}[price_data]",
        )
    if product:
        Product._api_retrieve(product)
    else:
        if not product_data.get("name"):
            raise invalid(
                "Missing required param: name.", f"{param}[price_data][product_data][name]"
            )
        product = Product(name=str(product_data["name"])).id
    recurring = data.get("recurring")
    if isinstance(recurring, dict):
        interval = recurring.get("interval")
        if interval not in ("day", "week", "month", "year"):
            raise invalid("Invalid interval.", f"{param}[price_data][recurring][interval]")
        count = hosted.to_int(recurring.get("interval_count", 1), "interval_count")
        # A subscription bills through a legacy plan: localstripe has no prices.
        plan = Plan(
            amount=amount,
            currency=currency,
            interval=interval,
            interval_count=count,
            product=product,
        )
        price_id = plan.id
        recurring = {"interval": interval, "interval_count": count, "usage_type": "licensed"}
    else:
        price_id = hosted.new_id("price_")
        recurring = None
    return {
        "id": price_id,
        "object": "price",
        "active": True,
        "currency": currency,
        "unit_amount": amount,
        "product": product,
        "type": "recurring" if recurring else "one_time",
        "recurring": recurring,
    }


def _line_items(raw: Any, mode: str) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise invalid(f"`line_items` is required in `{mode}` mode.", "line_items")
    items = []
    for index, line in enumerate(raw):
        if not isinstance(line, dict):
            raise invalid("Invalid line item.", f"line_items[{index}]")
        price = _price_for(line, index, mode)
        quantity = hosted.to_int(line.get("quantity", 1), f"line_items[{index}][quantity]")
        if quantity < 1:
            raise invalid("Quantity must be at least 1.", f"line_items[{index}][quantity]")
        recurring = price["type"] == "recurring"
        if mode == "payment" and recurring:
            raise invalid(
                "You specified `payment` mode but passed a recurring price. Either switch to "
                "`subscription` mode or use only one-time prices.",
                f"line_items[{index}]",
            )
        product = Product._api_retrieve(price["product"])
        total = price["unit_amount"] * quantity
        items.append(
            {
                "id": hosted.new_id("li_"),
                "object": "item",
                "amount_discount": 0,
                "amount_subtotal": total,
                "amount_tax": 0,
                "amount_total": total,
                "currency": price["currency"],
                "description": product.name,
                "price": price,
                "quantity": quantity,
            }
        )
    if len({item["currency"] for item in items}) > 1:
        raise invalid("All line items must have the same currency.", "line_items")
    if mode == "subscription":
        recurring = [i for i in items if i["price"]["type"] == "recurring"]
        if not recurring:
            raise invalid(
                "You must specify at least one recurring price in `subscription` mode.",
                "line_items",
            )
        if len(items) != 1 or items[0]["quantity"] != 1:
            raise invalid(
                "The development Stripe bills one recurring price, quantity 1, per subscription.",
                "line_items",
            )
    return items


def _metadata(value: Any, param: str) -> dict[str, str]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise invalid("Invalid object", param)
    return {str(k): str(v) for k, v in value.items() if v != ""}


def _sub_params(value: Any, param: str, allowed: set[str]) -> dict[str, Any]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise invalid("Invalid object", param)
    for key in value:
        if key not in allowed:
            raise invalid(f"Received unknown parameter: {param}[{key}]", f"{param}[{key}]")
    return value


def session_create(params: dict[str, Any], origin: str) -> CheckoutSession:
    hosted.unknown_params(params, CREATE_PARAMS)
    mode = params.get("mode")
    if mode not in ("payment", "subscription"):
        if mode == "setup":
            raise invalid("The development Stripe has no `setup` mode Checkout.", "mode")
        raise invalid("Missing required param: mode.", "mode")
    ui_mode = params.get("ui_mode") or "hosted"
    if ui_mode != "hosted":
        raise invalid("The development Stripe serves only hosted Checkout.", "ui_mode")
    items = _line_items(params.get("line_items"), mode)
    customer = params.get("customer") or None
    if customer:
        try:
            Customer._api_retrieve(customer)
        except UserError:
            raise invalid(f"No such customer: '{customer}'", "customer") from None
    if customer and params.get("customer_email"):
        raise invalid("You may only specify one of these parameters: customer, customer_email.")
    now = int(time.time())
    expires_at = now + EXPIRES_DEFAULT
    if params.get("expires_at") not in (None, ""):
        expires_at = hosted.to_int(params["expires_at"], "expires_at")
        if not now + EXPIRES_MIN <= expires_at <= now + EXPIRES_MAX:
            raise invalid(
                "The `expires_at` timestamp must be between 30 minutes and 24 hours from "
                "Checkout Session creation.",
                "expires_at",
            )
    payment_intent_data = _sub_params(
        params.get("payment_intent_data"),
        "payment_intent_data",
        _PI_DATA,
    )
    subscription_data = _sub_params(params.get("subscription_data"), "subscription_data", _SUB_DATA)
    if mode == "payment" and subscription_data:
        raise invalid("`subscription_data` is only for `subscription` mode.", "subscription_data")
    if mode == "subscription" and payment_intent_data:
        raise invalid("`payment_intent_data` is only for `payment` mode.", "payment_intent_data")
    if subscription_data.get("trial_period_days") or subscription_data.get("trial_end"):
        raise invalid("The development Stripe has no trials in Checkout.", "subscription_data")
    for url_param in ("success_url", "cancel_url"):
        url = params.get(url_param)
        if url and not str(url).startswith(("http://", "https://")):
            raise invalid("Not a valid URL", url_param)
    total = sum(item["amount_total"] for item in items)
    session = CheckoutSession(
        _line_items=items,
        _payment_intent_data=payment_intent_data,
        _subscription_data=subscription_data,
        after_expiration=None,
        allow_promotion_codes=None,
        amount_subtotal=total,
        amount_total=total,
        automatic_tax={"enabled": False, "liability": None, "status": None, "provider": None},
        billing_address_collection=params.get("billing_address_collection"),
        cancel_url=params.get("cancel_url"),
        client_reference_id=params.get("client_reference_id") or None,
        client_secret=None,
        consent=None,
        consent_collection=None,
        currency=items[0]["currency"],
        custom_fields=[],
        custom_text={
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        },
        customer=customer,
        customer_creation=(
            params.get("customer_creation") or "if_required"
            if mode == "payment" and not customer
            else None
        ),
        customer_details=None,
        customer_email=params.get("customer_email") or None,
        discounts=[],
        expires_at=expires_at,
        invoice=None,
        invoice_creation=None,
        locale=params.get("locale"),
        metadata=_metadata(params.get("metadata"), "metadata"),
        mode=mode,
        payment_intent=None,
        payment_link=None,
        payment_method_collection="always" if mode == "subscription" else None,
        payment_method_configuration_details=None,
        payment_method_options={},
        payment_method_types=["card"],
        payment_status="unpaid",
        phone_number_collection={"enabled": False},
        recovered_from=None,
        saved_payment_method_options=None,
        setup_intent=None,
        shipping_address_collection=None,
        shipping_cost=None,
        shipping_options=[],
        status="open",
        submit_type=params.get("submit_type"),
        subscription=None,
        success_url=params.get("success_url"),
        total_details={"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        ui_mode="hosted",
        url=None,
    )
    session.url = f"{origin}/c/pay/{session.id}"
    return session


_PI_DATA = {
    "application_fee_amount",
    "capture_method",
    "description",
    "metadata",
    "on_behalf_of",
    "receipt_email",
    "setup_future_usage",
    "shipping",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "transfer_data",
    "transfer_group",
}
_SUB_DATA = {
    "application_fee_percent",
    "billing_cycle_anchor",
    "billing_cycle_anchor_config",
    "billing_mode",
    "default_tax_rates",
    "description",
    "invoice_settings",
    "metadata",
    "on_behalf_of",
    "pending_invoice_item_interval",
    "proration_behavior",
    "transfer_data",
    "trial_end",
    "trial_period_days",
    "trial_settings",
}


def session_get(session_id: str) -> CheckoutSession:
    found = store.get(f"{CheckoutSession.object}:{session_id}")
    if found is None:
        raise invalid(f"No such checkout.session: '{session_id}'", "session", status=404)
    return found


def session_expire(session: CheckoutSession) -> bool:
    """Expire an open session (its unpaid PaymentIntent is canceled); False if not open."""
    if session.status != "open":
        return False
    if session.payment_intent:
        intent = PaymentIntent._api_retrieve(session.payment_intent)
        if intent.status in ("requires_payment_method", "requires_confirmation", "requires_action"):
            intent._canceled = True
            intent.next_action = None
    session.status = "expired"
    hosted.emit("checkout.session.expired", session)
    return True


def _export(session: CheckoutSession, expand: Any = None) -> dict[str, Any]:
    obj = session._export(expand=_expand_list(expand, "line_items"))
    if _wants(expand, "line_items"):
        obj["line_items"] = _items_list(session)
    return obj


def _expand_list(expand: Any, drop: str) -> list[str]:
    if not expand:
        return []
    items = expand if isinstance(expand, list) else [expand]
    return [e for e in items if e != drop]


def _wants(expand: Any, name: str) -> bool:
    return bool(expand) and name in (expand if isinstance(expand, list) else [expand])


def _items_list(session: CheckoutSession) -> dict[str, Any]:
    return {
        "object": "list",
        "data": session._line_items,
        "has_more": False,
        "url": f"/v1/checkout/sessions/{session.id}/line_items",
    }


async def api_create(request: web.Request) -> web.Response:
    params = await hosted.read_params(request)
    expand = params.pop("expand", None)
    session = session_create(params, str(request.url.origin()))
    return hosted.reply(_export(session, expand))


async def api_retrieve(request: web.Request) -> web.Response:
    expand = hosted.query_params(request).get("expand")
    return hosted.reply(_export(session_get(request.match_info["id"]), expand))


async def api_expire(request: web.Request) -> web.Response:
    session = session_get(request.match_info["id"])
    if not session_expire(session):
        raise invalid('Only Checkout Sessions with a status in ["open"] can be expired.', "session")
    return hosted.reply(_export(session))


async def api_line_items(request: web.Request) -> web.Response:
    return hosted.reply(_items_list(session_get(request.match_info["id"])))


async def api_list(request: web.Request) -> web.Response:
    params = hosted.query_params(request)
    sessions = sorted(
        (v for k, v in store.items() if k.startswith(CheckoutSession.object + ":")),
        key=lambda s: (s.created, s.id),
        reverse=True,
    )
    for key in ("payment_intent", "subscription", "customer", "status"):
        if params.get(key):
            sessions = [s for s in sessions if getattr(s, key) == params[key]]
    listing = List(
        "/v1/checkout/sessions",
        limit=params.get("limit"),
        starting_after=params.get("starting_after"),
    )
    listing._list = sessions
    return hosted.reply(listing._export())


# --- expiry -----------------------------------------------------------------------------


def sessions_expire_due(now: float | None = None) -> int:
    """Expire every open session whose `expires_at` has passed; how many."""
    moment = time.time() if now is None else now
    due = [
        v
        for k, v in list(store.items())
        if k.startswith(CheckoutSession.object + ":")
        and v.status == "open"
        and v.expires_at <= moment
    ]
    return sum(1 for session in due if session_expire(session))


async def _sweep(app: web.Application) -> None:
    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        try:
            sessions_expire_due()
        except Exception:  # one bad session must not stop the sweep
            log.exception("checkout expiry sweep failed")


async def _start_sweep(app: web.Application) -> None:
    app["checkout_sweep"] = asyncio.ensure_future(_sweep(app))


async def _stop_sweep(app: web.Application) -> None:
    task = app.get("checkout_sweep")
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def install(app: web.Application) -> None:
    hosted.install_hosted_auth(app)
    hosted.install_card_declines()
    app.router.add_post("/v1/checkout/sessions", api_create)
    app.router.add_get("/v1/checkout/sessions", api_list)
    app.router.add_get("/v1/checkout/sessions/{id}", api_retrieve)
    app.router.add_post("/v1/checkout/sessions/{id}/expire", api_expire)
    app.router.add_get("/v1/checkout/sessions/{id}/line_items", api_line_items)
    from devstripe.checkout_page import install_pages

    install_pages(app)
    app.on_startup.append(_start_sweep)
    app.on_cleanup.append(_stop_sweep)
