"""A purchase type from outside the project: `examples/tollgate-gift-cards`.

It is installed into the virtualenv as its own distribution (`make install`)
and reaches Tollgate only through its two entry points, so these tests check
the real start-up path: the app added to INSTALLED_APPS from package metadata,
the plugin loaded by name from `tollgate.purchasables`, the refusals a broken
plugin set gets, and a gift card bought over HTTP against localstripe.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests
import tollgate_gift_cards.plugin
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from tollgate_gift_cards.models import GiftCard
from tollgate_gift_cards.services import GiftCardUnavailableError, gift_card_redeem

from billing.models import Fulfilment, Order, Refund, StripeEvent
from billing.services.events import events_drain
from platform_core.auth import api_token_create
from purchasables import hookimpl
from purchasables.builtin import BUILTIN_PLUGINS
from purchasables.registry import PluginRegistry, UnknownPurchaseTypeError, registry
from purchasables.types import OrderInfo, PurchaseType, RefundInfo
from tests.billing.conftest import WEBHOOK_PATH, wait_for_event
from tests.conftest import PASSWORD
from tests.stripe_events import PRIMARY_SECRET, stripe_client

DISTRIBUTION = "tollgate-gift-cards"
CODE = re.compile(r"^[A-HJ-NP-Z2-9]{4}(-[A-HJ-NP-Z2-9]{4}){3}$")


def type_names(reg: PluginRegistry) -> list[str]:
    return [spec.name for spec in reg.purchase_types()]


# --- installed as a package, loaded through its entry points ------------------------


def test_the_example_is_installed_from_examples_as_its_own_distribution():
    dist = importlib.metadata.distribution(DISTRIBUTION)

    entry_points = {(ep.group, ep.name): ep.value for ep in dist.entry_points}
    assert entry_points == {
        ("tollgate.purchasables", "gift_cards"): "tollgate_gift_cards.plugin",
        ("tollgate.apps", "gift_cards"): "tollgate_gift_cards",
    }
    origin = json.loads(dist.read_text("direct_url.json"))["url"]
    assert origin.endswith("/examples/tollgate-gift-cards"), origin
    # Only the plugin API and Django: a plugin that needs billing is not a plugin.
    assert [r.split(">")[0].split("<")[0] for r in dist.requires or []] == ["Django"]


def test_start_up_registered_it_under_its_entry_point_name():
    plugins = dict(registry.plugins())

    assert plugins["gift_cards"] is tollgate_gift_cards.plugin
    assert "gift_card" in type_names(registry)
    spec = registry.purchase_type("gift_card")
    assert (spec.order_type, spec.label) == ("direct", "Gift card")


def test_its_app_is_installed_and_its_table_exists(db):
    assert "tollgate_gift_cards" in settings.INSTALLED_APPS
    assert apps.is_installed("tollgate_gift_cards")
    assert GiftCard._meta.db_table in connection.introspection.table_names()


def test_a_fresh_registry_without_autoload_has_no_gift_cards():
    reg = PluginRegistry()
    for name, plugin in BUILTIN_PLUGINS:
        reg.register(plugin, name=name)

    assert "gift_card" not in type_names(reg)
    with pytest.raises(UnknownPurchaseTypeError):
        reg.purchase_type("gift_card")

    assert reg.load_entry_points() >= 1
    assert "gift_card" in type_names(reg)
    assert dict(reg.plugins())["gift_cards"] is tollgate_gift_cards.plugin


class RivalGiftCards:
    @hookimpl
    def tollgate_purchase_types(self) -> list[PurchaseType]:
        return [PurchaseType(name="gift_card", order_type="direct", label="Rival gift card")]


def test_a_second_plugin_claiming_gift_card_is_refused_naming_both():
    before = type_names(registry)

    with pytest.raises(ImproperlyConfigured) as info:
        registry.register(RivalGiftCards(), name="rival-gift-cards")

    assert str(info.value) == (
        "Purchase type 'gift_card' is claimed by two plugins: 'gift_cards' and 'rival-gift-cards'."
    )
    assert type_names(registry) == before
    assert dict(registry.plugins())["gift_cards"] is tollgate_gift_cards.plugin


# --- the real start-up, in a fresh interpreter ------------------------------------

START_UP = """
import json
import django
django.setup()
from django.conf import settings
from purchasables.builtin import BUILTIN_PLUGINS
from purchasables.registry import registry
builtin = {name for name, _ in BUILTIN_PLUGINS}
print(json.dumps({
    "gift_cards_app": "tollgate_gift_cards" in settings.INSTALLED_APPS,
    "types": sorted(spec.name for spec in registry.purchase_types()),
    "third_party": sorted(name for name, _ in registry.plugins() if name not in builtin),
}))
"""


def fake_distribution(root: Path, name: str, module_source: str) -> None:
    """An installed distribution with one `tollgate.purchasables` entry point, on `root`."""
    (root / f"{name}.py").write_text(textwrap.dedent(module_source))
    info = root / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[tollgate.purchasables]\n{name} = {name}\n")


def start_up(extra_path: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "platform_core.settings", **env}
    if extra_path is not None:
        full_env["PYTHONPATH"] = str(extra_path)
    return subprocess.run(
        [sys.executable, "-c", START_UP],
        cwd=settings.BASE_DIR,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def refusal(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0, proc.stdout
    return proc.stderr.strip().splitlines()[-1]


def test_start_up_loads_the_example_and_with_autoload_off_leaves_it_out():
    on = start_up()
    assert on.returncode == 0, on.stderr
    loaded = json.loads(on.stdout)
    assert loaded["gift_cards_app"] is True
    assert loaded["third_party"] == ["gift_cards"]
    assert {"credits", "gift_card"} <= set(loaded["types"])

    off = start_up(TOLLGATE_PLUGINS_AUTOLOAD="0")
    assert off.returncode == 0, off.stderr
    assert json.loads(off.stdout) == {
        "gift_cards_app": False,
        "types": [name for name in loaded["types"] if name != "gift_card"],
        "third_party": [],
    }


def test_start_up_refuses_two_installed_plugins_claiming_gift_card(tmp_path):
    fake_distribution(
        tmp_path,
        "rival_gift_cards",
        """
        from purchasables import hookimpl
        from purchasables.types import PurchaseType

        @hookimpl
        def tollgate_purchase_types():
            return [PurchaseType(name="gift_card", order_type="direct", label="Rival")]
        """,
    )

    line = refusal(start_up(tmp_path))

    assert line.startswith("django.core.exceptions.ImproperlyConfigured: Purchase type "), line
    assert "'gift_card' is claimed by two plugins" in line
    assert "'gift_cards'" in line
    assert "'rival_gift_cards'" in line


def test_start_up_refuses_a_hook_implementation_without_a_spec(tmp_path):
    fake_distribution(
        tmp_path,
        "misspelt_cards",
        """
        from purchasables import hookimpl
        from purchasables.types import PurchaseType

        @hookimpl
        def tollgate_purchase_types():
            return [PurchaseType(name="misspelt_card", order_type="direct", label="Misspelt")]

        @hookimpl
        def tollgate_fulfill(order):  # the hook is tollgate_fulfil
            return None
        """,
    )

    line = refusal(start_up(tmp_path))

    assert line.startswith(
        "django.core.exceptions.ImproperlyConfigured: Purchase-type plugin 'misspelt_cards' "
        "implements a hook with no specification in purchasables.hookspecs"
    ), line
    assert "tollgate_fulfill" in line


# --- the hooks, called as billing calls them ---------------------------------------


def gift_order(*, order_id: int, user_id: int, value: int = 2500) -> OrderInfo:
    return OrderInfo(
        order_id=order_id,
        user_id=user_id,
        purchase_type="gift_card",
        order_type="direct",
        amount=value,
        currency="usd",
        metadata={},
        data={"value": value, "recipient_name": "Ada", "message": "Happy birthday"},
    )


def issued(card: GiftCard) -> dict:
    """What fulfilment answers: never the whole code, which is a bearer secret."""
    return {"gift_card_id": card.pk, "code_last4": card.code[-4:], "value": card.face_value}


def refund_of(order: OrderInfo, *, refund_id: int, amount: int, before: int = 0) -> RefundInfo:
    return RefundInfo(
        refund_id=refund_id,
        stripe_refund_id=f"re_test_{refund_id}",
        amount=amount,
        currency=order.currency,
        refunded_total=before + amount,
        reason="requested_by_customer",
    )


def test_fulfil_issues_one_card_per_order(user):
    order = gift_order(order_id=9001, user_id=user.pk)

    first = registry.fulfil(order)
    again = registry.fulfil(order)

    card = GiftCard.objects.get()
    assert first == again == issued(card)
    assert CODE.match(card.code), card.code
    assert (card.purchaser, card.face_value, card.value) == (user, 2500, 2500)
    assert card.status == GiftCard.Status.ACTIVE
    assert (card.recipient_name, card.message) == ("Ada", "Happy birthday")


def test_a_full_refund_voids_an_unredeemed_card(user):
    order = gift_order(order_id=9002, user_id=user.pk)
    registry.fulfil(order)

    summary = registry.refund(order, refund_of(order, refund_id=1, amount=2500))

    card = GiftCard.objects.get()
    assert (card.status, card.value) == ("void", 0)
    assert card.voided_at is not None
    assert summary == {"gift_card_id": card.pk, "reversed": True, "status": "void", "value": 0}
    with pytest.raises(GiftCardUnavailableError, match="void"):
        gift_card_redeem(code=card.code, user_id=user.pk)


def test_partial_refunds_lower_the_value_then_void_and_repeat_harmlessly(user):
    order = gift_order(order_id=9003, user_id=user.pk, value=5000)
    registry.fulfil(order)
    first = refund_of(order, refund_id=1, amount=2000)
    rest = refund_of(order, refund_id=2, amount=3000, before=2000)

    registry.refund(order, first)
    card = GiftCard.objects.get()
    assert (card.status, card.value) == ("active", 3000)

    registry.refund(order, first)  # the same refund again changes nothing
    card.refresh_from_db()
    assert card.value == 3000

    registry.refund(order, rest)
    registry.refund(order, first)  # nor does an old one arriving late
    card.refresh_from_db()
    assert (card.status, card.value) == ("void", 0)


def test_a_refund_after_redemption_leaves_the_card_and_says_so(user, other_user):
    order = gift_order(order_id=9004, user_id=user.pk)
    registry.fulfil(order)
    card = GiftCard.objects.get()
    gift_card_redeem(code=card.code.lower().replace("-", " "), user_id=other_user.pk)

    summary = registry.refund(order, refund_of(order, refund_id=1, amount=2500))

    card.refresh_from_db()
    assert (card.status, card.value, card.redeemed_by) == ("redeemed", 2500, other_user)
    assert summary["reversed"] is False
    assert summary["reason"] == "the gift card was already redeemed"
    with pytest.raises(GiftCardUnavailableError, match="redeemed"):
        gift_card_redeem(code=card.code, user_id=other_user.pk)


def test_a_refund_of_an_order_never_fulfilled_has_nothing_to_reverse(user):
    order = gift_order(order_id=9005, user_id=user.pk)

    summary = registry.refund(order, refund_of(order, refund_id=1, amount=2500))

    assert summary == {"gift_card_id": None, "reversed": False, "reason": "no gift card was issued"}
    assert not GiftCard.objects.exists()


def test_the_catalog_lists_the_allowed_amounts_from_settings(db, anon_api, settings):
    settings.TOLLGATE_GIFT_CARDS = {"MIN_VALUE": 2000, "AMOUNTS": [2000, 4000]}

    resp = anon_api.get("/catalog/")

    assert resp.status_code == 200
    types = {t["name"]: t for t in resp.json()["purchase_types"]}
    gift = types["gift_card"]
    assert (gift["order_type"], gift["label"]) == ("direct", "Gift card")
    assert gift["catalog"]["amounts"] == [2000, 4000]
    assert (gift["catalog"]["min_value"], gift["catalog"]["max_value"]) == (2000, 50_000)
    assert (gift["catalog"]["currency"], gift["catalog"]["step"]) == ("usd", 100)


# --- bought over HTTP against localstripe ------------------------------------------


class Http:
    def __init__(self, base: str, token: str) -> None:
        self.base = base + "/api/v1"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def post(self, path: str, body: dict) -> requests.Response:
        return self.session.post(self.base + path, json=body, timeout=30)

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.base + path, timeout=30)


@pytest.fixture
def http(live_server, user) -> Http:
    raw, _ = api_token_create(username=user.username, password=PASSWORD)
    return Http(live_server.url, raw)


@pytest.fixture
def staff_http(live_server, staff_user) -> Http:
    raw, _ = api_token_create(username=staff_user.username, password=PASSWORD)
    return Http(live_server.url, raw)


@pytest.fixture
def live_stripe(live_server, stripe_server):
    """localstripe, emptied, sending its webhooks to this test's live server."""
    stripe_server.register_webhook("tollgate-tests", live_server.url + WEBHOOK_PATH, PRIMARY_SECRET)
    return stripe_server


BUY_25 = {
    "purchase_type": "gift_card",
    "service_data": {"value": 2500, "recipient_name": "Ada", "message": "Happy birthday"},
    "amount": "25.00",
}


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_gift_card_is_bought_over_http_and_issued_exactly_once(http, live_stripe, user):
    resp = http.post("/payments/create/", {**BUY_25, "payment_method_id": "pm_card_visa"})

    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert (body["status"], body["payment_status"]) == ("paid", "succeeded")
    assert (body["amount"], body["currency"]) == (2500, "usd")
    order = Order.objects.get(pk=body["order_id"])
    assert order.metadata == {
        "order_id": str(order.pk),
        "user_id": str(user.pk),
        "order_type": "direct",
        "purchase_type": "gift_card",
        "service_type": "gift_card",
        "service_name": "Gift card",
        "gift_card_value": "2500",
        "tollgate_deployment": "tollgate",
    }
    intent = stripe_client().v1.payment_intents.retrieve(body["payment_intent_id"])
    assert intent.metadata.to_dict() == order.metadata
    card = GiftCard.objects.get()
    assert (card.order_id, card.purchaser, card.value) == (order.pk, user, 2500)
    assert card.status == GiftCard.Status.ACTIVE
    assert CODE.match(card.code), card.code
    assert Fulfilment.objects.get(order=order).result == issued(card)

    # Stripe's own webhook for the same payment arrives and changes nothing.
    event = wait_for_event("payment_intent.succeeded", body["payment_intent_id"])
    assert events_drain() >= 1
    event.refresh_from_db()
    assert event.status == StripeEvent.Status.PROCESSED
    assert "stale" in event.last_error
    assert GiftCard.objects.count() == 1
    assert Fulfilment.objects.filter(order=order).count() == 1
    assert http.get(f"/payments/orders/{order.pk}/").json()["fulfilled"] is True


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_staff_refunds_over_http_lower_then_void_the_card(http, staff_http, live_stripe, user):
    body = http.post("/payments/create/", {**BUY_25, "payment_method_id": "pm_card_visa"}).json()
    assert body["status"] == "paid", body
    order_id = body["order_id"]
    card = GiftCard.objects.get(order_id=order_id)

    part = staff_http.post(f"/payments/orders/{order_id}/refunds/", {"amount": "10.00"})

    assert part.status_code == 201, part.text
    assert (part.json()["status"], part.json()["applied"]) == ("succeeded", True)
    card.refresh_from_db()
    assert (card.status, card.value, card.face_value) == ("active", 1500, 2500)
    assert Order.objects.get(pk=order_id).status == Order.Status.PARTIALLY_REFUNDED

    rest = staff_http.post(f"/payments/orders/{order_id}/refunds/", {"reason": "unwanted"})

    assert rest.status_code == 201, rest.text
    assert rest.json()["amount"] == 1500
    card.refresh_from_db()
    assert (card.status, card.value) == ("void", 0)
    assert Order.objects.get(pk=order_id).status == Order.Status.REFUNDED
    with pytest.raises(GiftCardUnavailableError):
        gift_card_redeem(code=card.code, user_id=user.pk)
    refunds = stripe_client().v1.refunds.list(params={"limit": 10}).data
    assert sorted(r.amount for r in refunds) == [1000, 1500]
    assert [r["amount"] for r in http.get(f"/payments/orders/{order_id}/").json()["refunds"]] == [
        1000,
        1500,
    ]
    assert GiftCard.objects.count() == 1
    # What the plugin answered is kept on each refund, for staff.
    assert [r.result for r in Refund.objects.filter(order_id=order_id).order_by("id")] == [
        {"gift_card_id": card.pk, "reversed": True, "status": "active", "value": 1500},
        {"gift_card_id": card.pk, "reversed": True, "status": "void", "value": 0},
    ]


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_declined_card_issues_no_gift_card(http, live_stripe, user):
    resp = http.post(
        "/payments/create/", {**BUY_25, "payment_method_id": "pm_card_chargeCustomerFail"}
    )

    assert resp.status_code == 402, resp.text
    error = resp.json()
    assert error["code"] == "card_declined"
    order = Order.objects.get(pk=error["extra"]["order_id"])
    assert order.status == Order.Status.FAILED

    wait_for_event("payment_intent.payment_failed", order.payments.get().stripe_payment_intent_id)
    events_drain()
    order.refresh_from_db()
    assert order.status == Order.Status.FAILED
    assert not Fulfilment.objects.filter(order=order).exists()
    assert not GiftCard.objects.exists()


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            {"service_data": {}},
            "Say what the gift card is worth: `service_data.value`, in minor units "
            "(1000 is 10.00 USD).",
            id="no-value",
        ),
        pytest.param(
            {"service_data": {"value": 100}},
            "A gift card is worth from 5.00 USD to 500.00 USD; 1.00 USD is outside that.",
            id="below-minimum",
        ),
        pytest.param(
            {"service_data": {"value": 60_000}},
            "A gift card is worth from 5.00 USD to 500.00 USD; 600.00 USD is outside that.",
            id="above-maximum",
        ),
        pytest.param(
            {"service_data": {"value": 2550}},
            "A gift card's value goes in steps of 1.00 USD; 25.50 USD is not one.",
            id="not-a-whole-step",
        ),
        pytest.param(
            {"service_data": {"value": 25.5}},
            "`service_data.value` is a whole number of minor units (1000 is 10.00 USD), not 25.5.",
            id="a-fraction",
        ),
        pytest.param(
            {"service_data": {"value": "2500"}},
            "`service_data.value` is a whole number of minor units (1000 is 10.00 USD), "
            "not '2500'.",
            id="a-string",
        ),
        pytest.param(
            {"service_data": {"value": 2500, "colour": "red"}},
            "A gift card's `service_data` takes value, recipient_name, message; not colour.",
            id="unknown-field",
        ),
        pytest.param(
            {"service_data": {"value": 2500, "message": "x" * 501}},
            "`service_data.message` is text of at most 500 characters.",
            id="message-too-long",
        ),
        pytest.param(
            {"scheduling_data": {"start_datetime": "2030-01-01T10:00:00Z"}},
            "A gift card is described by `service_data` alone; leave out scheduling_data.",
            id="scheduled",
        ),
    ],
)
def test_bad_input_is_422_with_a_clear_message_and_nothing_at_stripe(
    api, stripe_server, change, message
):
    resp = api.post(
        "/payments/create/",
        {**BUY_25, "amount": None, **change, "payment_method_id": "pm_card_visa"},
    )

    assert resp.status_code == 422, resp.content
    assert resp.json()["code"] == "invalid_input"
    assert resp.json()["message"] == message
    assert not Order.objects.exists()
    assert not GiftCard.objects.exists()
    assert list(stripe_client().v1.payment_intents.list().auto_paging_iter()) == []
