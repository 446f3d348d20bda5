"""The page that boots the web client, with the public configuration it needs.

The rule: only public values reach the page (the publishable key and the
Stripe.js address); the secret key and webhook secrets never do.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

STRIPE_JS_URL = "https://js.stripe.com/v3/"
STRIPE_API_HOST = "api.stripe.com"
REAL_KEY_PREFIXES = ("pk_test_", "pk_live_")


def stripe_js_url(*, api_base: str, publishable_key: str) -> str:
    """Where the browser loads Stripe.js from.

    Stripe's own script only when the key is a real publishable key and the API
    is Stripe's; otherwise the stand-in that localstripe serves at
    `{STRIPE_API_BASE}/js.stripe.com/v3/`, which talks to that localstripe.
    """
    base = urlsplit(api_base)
    talks_to_stripe = base.scheme == "https" and base.hostname == STRIPE_API_HOST
    if talks_to_stripe and publishable_key.startswith(REAL_KEY_PREFIXES):
        return STRIPE_JS_URL
    return api_base.rstrip("/") + "/js.stripe.com/v3/"


def web_client_config() -> dict[str, str | bool]:
    """What the client reads from the page: public values only."""
    js_url = stripe_js_url(
        api_base=settings.STRIPE_API_BASE, publishable_key=settings.STRIPE_PUBLISHABLE_KEY
    )
    return {
        "apiBase": "/api/v1",
        "publishableKey": settings.STRIPE_PUBLISHABLE_KEY,
        "stripeJsUrl": js_url,
        "fakeStripe": js_url != STRIPE_JS_URL,
    }


@require_GET
def web_client(request: HttpRequest) -> HttpResponse:
    return render(request, "web/index.html", {"config": web_client_config()})
