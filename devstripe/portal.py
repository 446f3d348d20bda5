"""Stripe's customer portal for the development Stripe.

`POST /v1/billing_portal/sessions` (customer, return_url) answers a session whose
`url` is a page served here: the customer's subscriptions (cancel at period end,
resume) and cards (add one, make one the default, remove one), with a link back
to `return_url`. Each change sends the event Stripe sends for it
(`customer.subscription.updated`, `customer.updated`, `payment_method.attached`,
`payment_method.detached`).

The rule: a portal page acts only on the customer its session names.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from localstripe.errors import UserError
from localstripe.resources import (
    Customer,
    PaymentMethod,
    Product,
    StripeObject,
    Subscription,
    store,
)
from stripe.params.billing_portal import SessionCreateParams

from devstripe import hosted
from devstripe.hosted import esc, invalid

CREATE_PARAMS = set(SessionCreateParams.__annotations__) - {
    "api_key",
    "stripe_version",
    "stripe_account",
    "stripe_context",
    "max_network_retries",
    "idempotency_key",
    "content_type",
    "headers",
}
DEFAULT_CONFIGURATION = "bpc_devstripe_default"


class PortalSession(StripeObject):
    object = "billing_portal.session"
    _id_prefix = "bps_"

    def __init__(self, customer: str, return_url: str | None, locale: str | None, origin: str):
        super().__init__(id=hosted.new_id("bps_"))
        self._secret = hosted.new_id("test_", 40)
        self._notice = ""
        self._error = ""
        self.configuration = DEFAULT_CONFIGURATION
        self.customer = customer
        self.customer_account = None
        self.flow = None
        self.locale = locale
        self.on_behalf_of = None
        self.return_url = return_url
        self.url = f"{origin}/p/session/{self._secret}"


async def api_create(request: web.Request) -> web.Response:
    params = await hosted.read_params(request)
    params.pop("expand", None)
    hosted.unknown_params(params, CREATE_PARAMS)
    customer = params.get("customer")
    if not customer:
        raise invalid("Missing required param: customer.", "customer")
    try:
        Customer._api_retrieve(customer)
    except UserError:
        raise invalid(f"No such customer: '{customer}'", "customer") from None
    configuration = params.get("configuration")
    if configuration and configuration != DEFAULT_CONFIGURATION:
        raise invalid(f"No such configuration: '{configuration}'", "configuration")
    if params.get("flow_data"):
        raise invalid("The development Stripe's portal has no deep-link flows.", "flow_data")
    return_url = params.get("return_url") or None
    if return_url and not str(return_url).startswith(("http://", "https://")):
        raise invalid("Not a valid URL", "return_url")
    session = PortalSession(customer, return_url, params.get("locale"), str(request.url.origin()))
    return hosted.reply(session._export())


# --- the page ---------------------------------------------------------------------------


def _session(request: web.Request) -> PortalSession:
    secret = request.match_info["secret"]
    for key, value in list(store.items()):
        if key.startswith(PortalSession.object + ":") and value._secret == secret:
            return value
    raise web.HTTPNotFound(text="This portal session does not exist or has expired.")


def _date(ts: int | None) -> str:
    return time.strftime("%d %b %Y", time.gmtime(ts)) if ts else ""


def _subscriptions(customer: str) -> list[Subscription]:
    return [
        s
        for s in Subscription._api_list_all(None, customer=customer)._list
        if s.status not in ("incomplete", "incomplete_expired")
    ]


def _cards(customer: str) -> list[PaymentMethod]:
    return PaymentMethod._api_list_all(None, customer=customer, type="card")._list


def _subscription_html(session: PortalSession, sub: Subscription) -> str:
    plan = sub.plan
    name = Product._api_retrieve(plan.product).name if plan.product else plan.id
    price = hosted.money(plan.amount * sub.quantity, plan.currency)
    base = f"/p/session/{session._secret}/subscriptions/{sub.id}"
    if sub.cancel_at_period_end:
        when = f"Cancels on {_date(sub.current_period_end)}"
        action = (
            f"<form method='post' action='{base}/resume'>"
            f"<button type='submit' id='resume-{sub.id}'>Renew plan</button></form>"
        )
    else:
        when = f"Renews on {_date(sub.current_period_end)}"
        action = (
            f"<form method='post' action='{base}/cancel'>"
            f"<button type='submit' class='secondary' id='cancel-{sub.id}'>Cancel plan"
            "</button></form>"
        )
    return (
        f"<div class='card subscription' id='{sub.id}'><strong>{esc(name)}</strong>"
        f"<br>{price} per {esc(plan.interval)} · <span class='status'>{esc(sub.status)}</span>"
        f"<br><span class='muted when'>{when}</span>{action}</div>"
    )


def _card_html(session: PortalSession, method: PaymentMethod, default: str | None) -> str:
    card = method.card
    base = f"/p/session/{session._secret}/payment_methods/{method.id}"
    label = f"{esc(card['brand']).title()} •••• {esc(card['last4'])}"
    expiry = f"Expires {card['exp_month']:02d}/{card['exp_year']}"
    if method.id == default:
        actions = "<span class='notice default'>Default</span>"
    else:
        actions = (
            f"<form method='post' action='{base}/default'><button type='submit' "
            f"class='secondary' id='default-{method.id}'>Make default</button></form>"
            f"<form method='post' action='{base}/remove'><button type='submit' "
            f"class='secondary' id='remove-{method.id}'>Remove</button></form>"
        )
    return (
        f"<div class='card payment-method' id='{method.id}'>{label} "
        f"<span class='muted'>{expiry}</span>{actions}</div>"
    )


def _page(session: PortalSession, status: int = 200) -> web.Response:
    customer = Customer._api_retrieve(session.customer)
    default = (customer.invoice_settings or {}).get("default_payment_method")
    subs = _subscriptions(session.customer)
    cards = _cards(session.customer)
    back = (
        f"<p><a id='return' href='{esc(session.return_url)}'>← Return</a></p>"
        if session.return_url
        else ""
    )
    notice = f"<p class='notice' id='notice'>{esc(session._notice)}</p>" if session._notice else ""
    error = (
        f"<p class='error' role='alert' id='error'>{esc(session._error)}</p>"
        if session._error
        else ""
    )
    session._notice = session._error = ""
    sub_html = "".join(_subscription_html(session, s) for s in subs) or (
        "<p class='muted'>No subscriptions.</p>"
    )
    card_html = "".join(_card_html(session, m, default) for m in cards) or (
        "<p class='muted'>No cards saved.</p>"
    )
    body = f"""{back}<h1>Billing</h1>
<p class="muted">{esc(customer.email or customer.id)}</p>{notice}{error}
<h2>Current plan</h2>{sub_html}
<h2>Payment methods</h2>{card_html}
<form method="post" action="/p/session/{esc(session._secret)}/payment_methods">
<label for="cardnumber">Add a card</label>
<input id="cardnumber" name="cardnumber" inputmode="numeric" placeholder="1234 1234 1234 1234"
 required>
<div class="row"><div><label for="exp">Expiry (MM / YY)</label>
<input id="exp" name="exp" placeholder="MM / YY" required></div>
<div><label for="cvc">CVC</label><input id="cvc" name="cvc" placeholder="CVC" required></div></div>
<button type="submit" id="add-card">Add card</button></form>"""
    return hosted.page("Billing portal", body, status=status)


def _back(session: PortalSession) -> web.Response:
    raise web.HTTPSeeOther(f"/p/session/{session._secret}")


def _own_subscription(session: PortalSession, sub_id: str) -> Subscription:
    try:
        sub = Subscription._api_retrieve(sub_id)
    except UserError:
        raise web.HTTPNotFound() from None
    if sub.customer != session.customer:
        raise web.HTTPNotFound()
    return sub


def _own_card(session: PortalSession, method_id: str) -> PaymentMethod:
    try:
        method = PaymentMethod._api_retrieve(method_id)
    except UserError:
        raise web.HTTPNotFound() from None
    if method.customer != session.customer:
        raise web.HTTPNotFound()
    return method


def subscription_cancel_at_period_end(sub: Subscription, cancel: bool) -> None:
    """Set or clear cancel-at-period-end, and send `customer.subscription.updated`."""
    if sub.cancel_at_period_end == cancel:
        return
    previous: dict[str, Any] = {
        "cancel_at_period_end": sub.cancel_at_period_end,
        "cancel_at": sub.cancel_at,
        "canceled_at": sub.canceled_at,
    }
    sub.cancel_at_period_end = cancel
    sub.cancel_at = sub.current_period_end if cancel else None
    sub.canceled_at = int(time.time()) if cancel else None
    hosted.emit("customer.subscription.updated", sub, previous, pinned=False)


async def page_show(request: web.Request) -> web.Response:
    return _page(_session(request))


async def page_cancel(request: web.Request) -> web.Response:
    session = _session(request)
    sub = _own_subscription(session, request.match_info["sub"])
    subscription_cancel_at_period_end(sub, True)
    session._notice = f"Your plan will be canceled on {_date(sub.current_period_end)}."
    _back(session)


async def page_resume(request: web.Request) -> web.Response:
    session = _session(request)
    sub = _own_subscription(session, request.match_info["sub"])
    subscription_cancel_at_period_end(sub, False)
    session._notice = "Your plan will renew."
    _back(session)


async def page_default(request: web.Request) -> web.Response:
    session = _session(request)
    method = _own_card(session, request.match_info["pm"])
    Customer._api_update(session.customer, invoice_settings={"default_payment_method": method.id})
    session._notice = f"Card ending {method.card['last4']} is now your default."
    _back(session)


async def page_remove(request: web.Request) -> web.Response:
    session = _session(request)
    method = _own_card(session, request.match_info["pm"])
    customer = Customer._api_retrieve(session.customer)
    if (customer.invoice_settings or {}).get("default_payment_method") == method.id:
        session._error = "Make another card the default before removing this one."
        _back(session)
    PaymentMethod._api_detach(method.id)
    hosted.emit("payment_method.detached", method, {"customer": session.customer}, pinned=False)
    session._notice = f"Card ending {method.card['last4']} was removed."
    _back(session)


async def page_add_card(request: web.Request) -> web.Response:
    session = _session(request)
    card = hosted.card_from_form(dict(await request.post()))
    if isinstance(card, str):
        session._error = card
        _back(session)
    method = PaymentMethod(type="card", card=card)
    try:
        PaymentMethod._api_attach(method.id, customer=session.customer)
    except UserError as exc:
        session._error = exc.body["error"].get("message") or "Your card was declined."
        _back(session)
    hosted.emit("payment_method.attached", method, pinned=False)
    customer = Customer._api_retrieve(session.customer)
    if not (customer.invoice_settings or {}).get("default_payment_method"):
        Customer._api_update(
            session.customer, invoice_settings={"default_payment_method": method.id}
        )
    session._notice = f"Card ending {method.card['last4']} was added."
    _back(session)


def _updates_stamp_cancellation() -> None:
    """Teach localstripe's subscription update what Stripe records on a cancel request.

    Setting `cancel_at_period_end` through `POST /v1/subscriptions/{id}` makes Stripe
    stamp `canceled_at` with the request's time (cleared again on resume) and
    `cancel_at` with the period's end; localstripe changed only the flag.
    """
    update = Subscription._update
    if getattr(update, "_stamps_cancellation", False):
        return

    def update_and_stamp(self, *args, cancel_at_period_end=None, **kwargs):
        before = self.cancel_at_period_end
        update(self, *args, cancel_at_period_end=cancel_at_period_end, **kwargs)
        if cancel_at_period_end is None or self.cancel_at_period_end == before:
            return
        cancel = self.cancel_at_period_end
        self.canceled_at = int(time.time()) if cancel else None
        self.cancel_at = self.current_period_end if cancel else None

    update_and_stamp._stamps_cancellation = True  # type: ignore[attr-defined]
    Subscription._update = update_and_stamp


def install(app: web.Application) -> None:
    _updates_stamp_cancellation()
    hosted.install_hosted_auth(app)
    app.router.add_post("/v1/billing_portal/sessions", api_create)
    base = "/p/session/{secret}"
    app.router.add_get(base, page_show)
    app.router.add_post(base + "/subscriptions/{sub}/cancel", page_cancel)
    app.router.add_post(base + "/subscriptions/{sub}/resume", page_resume)
    app.router.add_post(base + "/payment_methods", page_add_card)
    app.router.add_post(base + "/payment_methods/{pm}/default", page_default)
    app.router.add_post(base + "/payment_methods/{pm}/remove", page_remove)
