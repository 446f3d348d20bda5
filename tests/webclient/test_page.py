"""The page that boots the web client: served at `/`, public configuration only."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from webclient.views import STRIPE_JS_URL, stripe_js_url


@pytest.mark.parametrize(
    ("api_base", "key", "expected"),
    [
        ("https://api.stripe.com", "pk_test_abc", STRIPE_JS_URL),
        ("https://api.stripe.com/", "pk_live_abc", STRIPE_JS_URL),
        # localstripe, even with a key that looks real: its own Stripe.js stand-in.
        ("http://127.0.0.1:8420", "pk_test_localstripe", "http://127.0.0.1:8420/js.stripe.com/v3/"),
        ("http://localstripe:8420/", "pk_test_abc", "http://localstripe:8420/js.stripe.com/v3/"),
        # Not a publishable key, or not Stripe's API over HTTPS: never Stripe's script.
        ("https://api.stripe.com", "sk_test_abc", "https://api.stripe.com/js.stripe.com/v3/"),
        ("http://api.stripe.com", "pk_test_abc", "http://api.stripe.com/js.stripe.com/v3/"),
        (
            "https://api.stripe.com.evil.test",
            "pk_test_abc",
            "https://api.stripe.com.evil.test/js.stripe.com/v3/",
        ),
    ],
)
def test_stripe_js_comes_from_stripe_only_with_real_keys_and_stripes_api(api_base, key, expected):
    assert stripe_js_url(api_base=api_base, publishable_key=key) == expected


def test_the_page_carries_public_configuration_and_no_secret(settings):
    settings.STRIPE_SECRET_KEY = "sk_test_must_not_leak"
    settings.STRIPE_WEBHOOK_SECRETS = ["whsec_must_not_leak"]
    settings.STRIPE_PUBLISHABLE_KEY = "pk_test_shown"
    settings.STRIPE_API_BASE = "http://127.0.0.1:8420"
    resp = Client().get("/")
    assert resp.status_code == 200
    html = resp.content.decode()
    assert "must_not_leak" not in html
    found = re.search(r'<script id="tollgate-config" type="application/json">(.*?)</script>', html)
    config = json.loads(found.group(1))
    assert config == {
        "apiBase": "/api/v1",
        "publishableKey": "pk_test_shown",
        "stripeJsUrl": "http://127.0.0.1:8420/js.stripe.com/v3/",
        "fakeStripe": True,
    }
    assert '<script type="module" src="/static/web/app.js">' in html
    assert Client().post("/").status_code == 405


def test_the_clients_currency_table_is_billings():
    """money.js formats amounts with the same Stripe currency table billing charges with."""
    from django.conf import settings

    from kernel.money import THREE_DECIMAL, WHOLE_UNITS_SENT_X100, ZERO_DECIMAL

    source = (settings.BASE_DIR / "webclient/static/web/money.js").read_text(encoding="utf-8")

    def js_set(name: str) -> set[str]:
        body = re.search(rf"const {name} = new Set\(\[(.*?)\]\);", source, re.S).group(1)
        return set(re.findall(r'"([a-z]{3})"', body))

    assert js_set("ZERO_DECIMAL") == set(ZERO_DECIMAL)
    assert js_set("THREE_DECIMAL") == set(THREE_DECIMAL)
    assert js_set("WHOLE_UNITS_SENT_X100") == set(WHOLE_UNITS_SENT_X100)
