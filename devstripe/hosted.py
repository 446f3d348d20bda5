"""What the development Stripe's hosted pages (Checkout, the customer portal) share.

Stripe serves those pages to a browser that holds no API key; localstripe asks
every request for one. The rule: only paths under `HOSTED_PREFIXES` skip that
check, and they act only on the one session named by its unguessable id.
Events made here carry the pinned API version, not localstripe's 2017 one.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import stripe
from aiohttp import web
from localstripe import server
from localstripe.errors import UserError
from localstripe.resources import Event, random_id
from localstripe.webhooks import schedule_webhook

API_VERSION = stripe.api_version

# Browser-facing paths: Checkout's pay page and the portal's session page.
HOSTED_PREFIXES: tuple[str, ...] = ("/c/pay/", "/p/session/")

# Stripe's test cards that pay at attach but are declined when charged; localstripe
# declines them only when attached to a customer.
DECLINED_WHEN_CHARGED = frozenset(
    {
        "4000000000000002",  # generic decline
        "4000000000009995",  # insufficient funds
        "4000000000009987",  # lost card
        "4000000000009979",  # stolen card
        "4000000000000069",  # expired card
        "4000000000000127",  # incorrect CVC
        "4000000000000119",  # processing error
    }
)

_installed: set[str] = set()


def once(name: str) -> bool:
    """True the first time `name` is asked for: a patch of localstripe is applied once."""
    if name in _installed:
        return False
    _installed.add(name)
    return True


def install_hosted_auth(app: web.Application) -> None:
    """Let the browser reach the hosted pages without an API key."""
    if not once("hosted-auth"):
        return

    @web.middleware
    async def auth(request: web.Request, handler: Callable[..., Awaitable[Any]]):
        if request.path.startswith(HOSTED_PREFIXES):
            return await handler(request)
        return await server.auth_middleware(request, handler)

    index = list(app.middlewares).index(server.auth_middleware)
    app.middlewares[index] = auth


def install_card_declines() -> None:
    """Stripe's decline test cards decline when charged, as at Stripe."""
    if not once("card-declines"):
        return
    from localstripe.resources import PaymentMethod

    original = PaymentMethod._charging_is_declined

    def declined(self) -> bool:
        if getattr(self, "type", "card") == "card" and self._card_number in DECLINED_WHEN_CHARGED:
            return True
        return original(self)

    PaymentMethod._charging_is_declined = declined


def emit(
    event_type: str, obj: Any, previous: dict[str, Any] | None = None, *, pinned: bool = True
) -> Event:
    """An Event, delivered and signed as localstripe's own. `pinned`: the object is in the
    pinned version's shape (this package's own objects); otherwise it is one of
    localstripe's, and the event keeps localstripe's version."""
    event = Event(event_type, obj)
    if pinned:
        event.api_version = API_VERSION
    if previous is not None:
        event.data["previous_attributes"] = previous
    schedule_webhook(event)
    return event


def new_id(prefix: str, n: int = 24) -> str:
    return prefix + random_id(n)


async def read_params(request: web.Request) -> dict[str, Any]:
    """The request's form (or JSON) parameters as nested dicts and lists, as Stripe reads them."""
    data = await server.get_post_data(request) or {}
    return dict(data)


def query_params(request: web.Request) -> dict[str, Any]:
    return server.unflatten_data(request.query) or {}


def reply(obj: Any, status: int = 200) -> web.Response:
    return server.json_response(obj, status=status)


def invalid(message: str, param: str | None = None, status: int = 400) -> UserError:
    """Stripe's `invalid_request_error`, naming the parameter."""
    contents = {"type": "invalid_request_error"}
    if param:
        contents["param"] = param
    return UserError(status, message, contents)


def unknown_params(params: dict[str, Any], known: set[str]) -> None:
    for key in params:
        if key not in known and key != "expand":
            raise invalid(f"Received unknown parameter: {key}", key)


def to_int(value: Any, param: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    raise invalid(f"Invalid integer: {value}", param)


def money(amount: int, currency: str) -> str:
    zero_decimal = currency.lower() in {"jpy", "krw", "vnd", "clp", "xof", "xaf"}
    if zero_decimal:
        return f"{amount:,} {currency.upper()}"
    return f"{amount // 100:,}.{amount % 100:02d} {currency.upper()}"


def page(title: str, body: str, status: int = 200) -> web.Response:
    """A hosted page: plain HTML, no script, one stylesheet inline."""
    text = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f6f9fc; color: #1a1f36; margin: 0; }}
main {{ max-width: 460px; margin: 3rem auto; background: #fff; padding: 2rem;
        border-radius: 8px; box-shadow: 0 2px 8px rgba(0,0,0,.08); }}
h1 {{ font-size: 1.3rem; }} .muted {{ color: #697386; font-size: .9rem; }}
label {{ display: block; margin: .8rem 0 .2rem; font-size: .9rem; }}
input {{ width: 100%; box-sizing: border-box; padding: .55rem; font-size: 1rem;
         border: 1px solid #cfd7df; border-radius: 4px; }}
.row {{ display: flex; gap: .8rem; }} .row > div {{ flex: 1; }}
button {{ margin-top: 1.2rem; width: 100%; padding: .7rem; font-size: 1rem; border: 0;
          border-radius: 4px; background: #635bff; color: #fff; cursor: pointer; }}
button.secondary {{ background: #e3e8ee; color: #1a1f36; }}
.error {{ background: #fde8e8; color: #8a1c1c; padding: .7rem; border-radius: 4px; }}
.notice {{ background: #e6f4ea; color: #1e5631; padding: .7rem; border-radius: 4px; }}
table {{ width: 100%; border-collapse: collapse; }} td {{ padding: .3rem 0; }}
td.amount {{ text-align: right; }} .card {{ border: 1px solid #e3e8ee; border-radius: 6px;
          padding: .8rem; margin: .6rem 0; }}
.test {{ background: #fff4d6; color: #7a5a00; font-size: .8rem; padding: .2rem .5rem;
         border-radius: 3px; }}
</style></head>
<body><main><p><span class="test">TEST MODE · development Stripe</span></p>
{body}
</main></body></html>"""
    return web.Response(text=text, content_type="text/html", status=status)


def esc(value: Any) -> str:
    return html.escape(str(value if value is not None else ""))


def card_from_form(form: dict[str, Any]) -> dict[str, Any] | str:
    """The card's fields for a PaymentMethod, or what is wrong with them."""
    number = "".join(ch for ch in str(form.get("cardnumber", "")) if ch.isdigit())
    if len(number) != 16:
        return "Your card number is incomplete."
    digits = [int(d) for d in number]
    checksum = sum(digits[-1::-2]) + sum(sum(divmod(2 * d, 10)) for d in digits[-2::-2])
    if checksum % 10:
        return "Your card number is invalid."
    exp = "".join(ch for ch in str(form.get("exp", "")) if ch.isdigit())
    if len(exp) not in (4, 6):
        return "Your card's expiration date is incomplete."
    month, year = int(exp[:2]), int(exp[2:])
    year = year + 2000 if year < 100 else year
    now = time.gmtime()
    if not 1 <= month <= 12 or (year, month) < (now.tm_year, now.tm_mon):
        return "Your card's expiration date is in the past."
    cvc = "".join(ch for ch in str(form.get("cvc", "")) if ch.isdigit())
    if len(cvc) != 3:
        return "Your card's security code is incomplete."
    return {"number": number, "exp_month": month, "exp_year": year, "cvc": cvc}
