"""Checkout's hosted payment page for the development Stripe: what the customer sees.

The page at a session's `url` takes Stripe's test cards and pays the way Stripe
does: a payment-mode session confirms one PaymentIntent (made on the first
attempt and reused after a decline), a subscription-mode session attaches the
card to the customer, makes it the default and subscribes; 3-D Secure asks the
customer to complete or fail it; success sends `checkout.session.completed`
and redirects to `success_url`.

The rule: the page acts only on the open session its id names; a completed
session only sends the customer back, an expired one says so.
"""

from __future__ import annotations

import asyncio
from typing import NoReturn

from aiohttp import web
from localstripe.errors import UserError
from localstripe.resources import Customer, Invoice, PaymentIntent, PaymentMethod, Subscription

from devstripe import hosted
from devstripe.checkout import CheckoutSession, session_get
from devstripe.hosted import esc

# How long a delayed payment (SEPA Direct Debit) is watched for its outcome.
DELAYED_POLL_SECONDS = 0.2
DELAYED_POLLS = 300
_watchers: set[asyncio.Future] = set()


def _redirect(url: str, session: CheckoutSession) -> NoReturn:
    raise web.HTTPSeeOther(url.replace("{CHECKOUT_SESSION_ID}", session.id))


def _summary(session: CheckoutSession) -> str:
    rows = "".join(
        f"<tr><td>{esc(i['description'])}"
        + (f" × {i['quantity']}" if i["quantity"] > 1 else "")
        + (
            f" <span class='muted'>every {esc(i['price']['recurring']['interval'])}</span>"
            if i["price"]["recurring"]
            else ""
        )
        + f"</td><td class='amount'>{hosted.money(i['amount_total'], i['currency'])}</td></tr>"
        for i in session._line_items
    )
    total = hosted.money(session.amount_total, session.currency)
    return (
        f"<table>{rows}<tr><td><strong>Total due today</strong></td>"
        f"<td class='amount'><strong id='total'>{total}</strong></td></tr></table>"
    )


def _pay_page(session: CheckoutSession, status: int = 200) -> web.Response:
    if session.status == "complete":
        if session.success_url:
            _redirect(session.success_url, session)
        return hosted.page(
            "Paid", "<h1>Thanks for your payment</h1><p>You may close this page.</p>"
        )
    if session.status == "expired":
        return hosted.page(
            "Expired",
            "<h1>This checkout session has expired</h1>"
            "<p class='error' id='expired'>Return to the merchant's site to start again.</p>",
            status=410,
        )
    error = (
        f"<p class='error' role='alert' id='error'>{esc(session._error)}</p>"
        if session._error
        else ""
    )
    back = (
        f"<p><a id='back' href='{esc(session.cancel_url)}'>← Back</a></p>"
        if session.cancel_url
        else ""
    )
    email = session.customer_email or ""
    action = "Subscribe" if session.mode == "subscription" else "Pay"
    body = f"""{back}<h1>{action}</h1>{_summary(session)}
{error}
<form method="post" action="/c/pay/{esc(session.id)}">
<label for="email">Email</label><input id="email" name="email" type="email" value="{esc(email)}">
<label for="cardnumber">Card number</label>
<input id="cardnumber" name="cardnumber" inputmode="numeric" autocomplete="cc-number"
       placeholder="1234 1234 1234 1234" required>
<div class="row"><div><label for="exp">Expiry (MM / YY)</label>
<input id="exp" name="exp" placeholder="MM / YY" autocomplete="cc-exp" required></div>
<div><label for="cvc">CVC</label><input id="cvc" name="cvc" inputmode="numeric" placeholder="CVC"
 autocomplete="cc-csc" required></div></div>
<label for="name">Cardholder name</label><input id="name" name="name" autocomplete="cc-name">
<button type="submit" id="submit">{action}</button>
</form>
<p class="muted">Test cards: 4242 4242 4242 4242 pays; 4000 0000 0000 0002 is declined;
4000 0025 0000 3155 asks for 3-D Secure. Any future expiry and any CVC.</p>{_sepa_form(session)}"""
    return hosted.page(f"{action} · {session.id}", body, status=status)


def _sepa_form(session: CheckoutSession) -> str:
    """SEPA Direct Debit, offered as Stripe offers it: one-time payments in euros."""
    if session.mode != "payment" or session.currency != "eur":
        return ""
    return f"""<h2>Or pay by SEPA Direct Debit</h2>
<form method="post" action="/c/pay/{esc(session.id)}/sepa">
<label for="iban">IBAN</label><input id="iban" name="iban" placeholder="DE89 3704 0044 0532 0130 00"
 required>
<label for="sepa-name">Account holder</label><input id="sepa-name" name="name" required>
<button type="submit" id="submit-sepa">Pay by SEPA Direct Debit</button>
</form>
<p class="muted">Test IBANs: DE89370400440532013000 is debited; DE62370400440532013001 fails
after the session completes.</p>"""


def _three_ds_page(session: CheckoutSession) -> web.Response:
    amount = hosted.money(session.amount_total, session.currency)
    body = f"""<h1>3-D Secure authentication</h1>
<p>Your bank asks you to confirm this payment of {amount}.</p>
<form method="post" action="/c/pay/{esc(session.id)}/3ds">
<button type="submit" name="result" value="complete" id="complete">
Complete authentication</button>
<button type="submit" name="result" value="fail" id="fail" class="secondary">
Fail authentication</button>
</form>"""
    return hosted.page("3-D Secure", body)


def _declined(session: CheckoutSession, message: str) -> web.Response:
    session._error = message
    return _pay_page(session, status=402)


def _complete(session: CheckoutSession, payment_status: str = "paid") -> web.Response:
    session.status = "complete"
    session.payment_status = payment_status
    session._error = ""
    hosted.emit("checkout.session.completed", session)
    if session.success_url:
        _redirect(session.success_url, session)
    return _pay_page(session)


def _pay_once(session: CheckoutSession, method: PaymentMethod) -> web.Response:
    """Charge the card (or debit the account) for a payment-mode session; the session's
    PaymentIntent is reused across attempts, as at Stripe."""
    if session.payment_intent is None:
        data = session._payment_intent_data
        intent = PaymentIntent(
            amount=session.amount_total,
            currency=session.currency,
            customer=session.customer,
            metadata=dict(data.get("metadata") or {}),
            capture_method=data.get("capture_method"),
        )
        session.payment_intent = intent.id
    else:
        intent = PaymentIntent._api_retrieve(session.payment_intent)
        intent.latest_charge = None  # a declined attempt: try again with the new card
    intent.payment_method = method.id
    try:
        intent._confirm(on_failure_now=intent._report_failure)
    except UserError as exc:
        return _declined(session, exc.body["error"].get("message") or "Your card was declined.")
    return _after_confirm(session, intent)


def _after_confirm(session: CheckoutSession, intent: PaymentIntent) -> web.Response:
    if intent.status == "requires_action":
        return _three_ds_page(session)
    delayed = PaymentMethod._api_retrieve(intent.payment_method).type == "sepa_debit"
    if delayed and intent.status in ("succeeded", "processing"):
        # A delayed method: the session completes now, and is paid (or not) later.
        watcher = asyncio.ensure_future(_delayed_outcome(session, intent))
        _watchers.add(watcher)
        watcher.add_done_callback(_watchers.discard)
        return _complete(session, payment_status="unpaid")
    if intent.status in ("succeeded", "requires_capture"):
        return _complete(session)
    return _declined(session, "Your card was declined. Try another card.")


async def _delayed_outcome(session: CheckoutSession, intent: PaymentIntent) -> None:
    """Send `checkout.session.async_payment_succeeded` or `…_failed` once the delayed
    payment settles (localstripe settles a debit about half a second later)."""
    for _ in range(DELAYED_POLLS):
        await asyncio.sleep(DELAYED_POLL_SECONDS)
        settled = intent.latest_charge and intent.latest_charge.balance_transaction
        if intent.status == "succeeded" and settled:
            session.payment_status = "paid"
            hosted.emit("checkout.session.async_payment_succeeded", session)
            return
        if intent.status in ("requires_payment_method", "canceled"):
            hosted.emit("checkout.session.async_payment_failed", session)
            return


def _subscribe(session: CheckoutSession, method: PaymentMethod, email: str) -> web.Response:
    """Start the subscription on the card: attach it, make it the default, subscribe.

    A card its bank declines is refused before any subscription is made, as Checkout
    does: a declined attempt leaves no incomplete subscription behind to retry beside.
    """
    if method._charging_is_declined():
        return _declined(session, "Your card was declined. Try another card.")
    if session.customer is None:
        customer = Customer(email=email or None)
        session.customer = customer.id
    try:
        PaymentMethod._api_attach(method.id, customer=session.customer)
    except UserError as exc:
        return _declined(session, exc.body["error"].get("message") or "Your card was declined.")
    Customer._api_update(session.customer, invoice_settings={"default_payment_method": method.id})
    item = session._line_items[0]
    data = session._subscription_data
    try:
        subscription = Subscription._api_create(
            customer=session.customer,
            items=[{"plan": item["price"]["id"], "quantity": item["quantity"]}],
            metadata=dict(data.get("metadata") or {}),
            payment_behavior="error_if_incomplete",
        )
    except UserError as exc:
        return _declined(session, exc.body["error"].get("message") or "Your card was declined.")
    session.subscription = subscription.id
    session.invoice = subscription.latest_invoice
    if subscription.status == "active":
        return _complete(session)
    intent = _subscription_intent(subscription)
    if intent is not None and intent.status == "requires_action":
        return _three_ds_page(session)
    return _declined(session, "Your card was declined. Try another card.")


def _subscription_intent(subscription: Subscription) -> PaymentIntent | None:
    if not subscription.latest_invoice:
        return None
    invoice = Invoice._api_retrieve(subscription.latest_invoice)
    return PaymentIntent._api_retrieve(invoice.payment_intent) if invoice.payment_intent else None


async def page_show(request: web.Request) -> web.Response:
    return _pay_page(_page_session(request))


def _page_session(request: web.Request) -> CheckoutSession:
    try:
        return session_get(request.match_info["id"])
    except UserError:
        raise web.HTTPNotFound(text="No such checkout session.") from None


async def page_pay(request: web.Request) -> web.Response:
    session = _page_session(request)
    if session.status != "open":
        return _pay_page(session)
    form = dict(await request.post())
    card = hosted.card_from_form(form)
    if isinstance(card, str):
        session._error = card
        return _pay_page(session, status=400)
    method = PaymentMethod(
        type="card",
        card=card,
        billing_details={"email": form.get("email") or None, "name": form.get("name") or None},
    )
    email = str(form.get("email") or "")
    session.customer_details = {
        "address": None,
        "email": email or session.customer_email,
        "name": form.get("name") or None,
        "phone": None,
        "tax_exempt": "none",
        "tax_ids": [],
    }
    if session.mode == "subscription":
        return _subscribe(session, method, email)
    return _pay_once(session, method)


async def page_three_ds(request: web.Request) -> web.Response:
    session = _page_session(request)
    if session.status != "open":
        return _pay_page(session)
    form = await request.post()
    success = form.get("result") == "complete"
    if session.mode == "subscription":
        subscription = Subscription._api_retrieve(session.subscription)
        intent = _subscription_intent(subscription)
    else:
        intent = PaymentIntent._api_retrieve(session.payment_intent)
    if intent is None or intent.status != "requires_action":
        return _pay_page(session)
    PaymentIntent._api_authenticate(intent.id, client_secret=intent.client_secret, success=success)
    if success:
        if session.mode == "subscription":
            session.invoice = subscription.latest_invoice
        return _after_confirm(session, intent)
    if session.mode == "subscription":
        session.subscription = None
        session.invoice = None
    return _declined(
        session,
        "We are unable to authenticate your payment method. Please choose a different "
        "payment method and try again.",
    )


async def page_sepa(request: web.Request) -> web.Response:
    session = _page_session(request)
    if session.status != "open" or not _sepa_form(session):
        return _pay_page(session)
    form = dict(await request.post())
    iban = "".join(str(form.get("iban", "")).split()).upper()
    if not 14 <= len(iban) <= 34 or not iban[:2].isalpha():
        session._error = "Your IBAN is incomplete."
        return _pay_page(session, status=400)
    method = PaymentMethod(
        type="sepa_debit",
        sepa_debit={"iban": iban},
        billing_details={"name": form.get("name") or None},
    )
    return _pay_once(session, method)


def install_pages(app: web.Application) -> None:
    app.router.add_get("/c/pay/{id}", page_show)
    app.router.add_post("/c/pay/{id}", page_pay)
    app.router.add_post("/c/pay/{id}/3ds", page_three_ds)
    app.router.add_post("/c/pay/{id}/sepa", page_sepa)
