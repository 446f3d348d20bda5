"""The plugin registry: start-up refusals and routing each hook to the type's owner.

Each test builds its own `PluginRegistry()`; the global one is touched only
through `registry.plugin_registered(...)`, which undoes itself.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from purchasables import hookimpl
from purchasables.builtin import BUILTIN_PLUGINS
from purchasables.registry import PluginRegistry, UnknownPurchaseTypeError, registry
from purchasables.types import OrderInfo, PurchaseRequest, PurchaseType, Quote


class WidgetPlugin:
    """A throwaway purchase type that records every hook call it receives.

    A class instance rather than a `SimpleNamespace`: pluggy keeps plugins in a
    set, and a `SimpleNamespace` is unhashable.
    """

    def __init__(self, type_name: str, calls: list | None = None, price: int = 1234) -> None:
        self.type_name = type_name
        self.calls = calls if calls is not None else []
        self.price = price

    @hookimpl
    def tollgate_purchase_types(self) -> list[PurchaseType]:
        return [PurchaseType(name=self.type_name, order_type="direct", label=self.type_name)]

    @hookimpl
    def tollgate_catalog(self, purchase_type: str) -> dict:
        self.calls.append(("catalog", self.type_name, purchase_type))
        return {"owner": self.type_name}

    @hookimpl
    def tollgate_quote(self, request: PurchaseRequest) -> Quote:
        self.calls.append(("quote", self.type_name, request.purchase_type))
        return Quote(amount=self.price, currency="usd", description=self.type_name)

    @hookimpl
    def tollgate_fulfil(self, order: OrderInfo) -> dict:
        self.calls.append(("fulfil", self.type_name, order.purchase_type))
        return {"fulfilled_by": self.type_name}


class TypeOnlyPlugin:
    """Declares a type but implements none of the per-type hooks."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    @hookimpl
    def tollgate_purchase_types(self) -> list[PurchaseType]:
        return [PurchaseType(name=self.type_name, order_type="direct", label=self.type_name)]


class BadQuotePlugin(TypeOnlyPlugin):
    @hookimpl
    def tollgate_quote(self, request: PurchaseRequest):
        return {"amount": 100, "currency": "usd"}


class UnspeccedHookPlugin(TypeOnlyPlugin):
    @hookimpl
    def tollgate_not_a_hook(self) -> None:
        return None


def purchase(purchase_type: str) -> PurchaseRequest:
    return PurchaseRequest(user_id=1, purchase_type=purchase_type)


def paid(purchase_type: str) -> OrderInfo:
    return OrderInfo(
        order_id=1,
        user_id=1,
        purchase_type=purchase_type,
        order_type="direct",
        amount=1234,
        currency="usd",
        metadata={},
        data={},
    )


def type_names(reg: PluginRegistry) -> list[str]:
    return [spec.name for spec in reg.purchase_types()]


def test_a_plugins_type_is_listed_and_its_hooks_answer():
    reg = PluginRegistry()
    widget = WidgetPlugin("test-widget", price=4200)
    reg.register(widget, name="test-widgets")

    assert type_names(reg) == ["test-widget"]
    assert reg.purchase_type("test-widget").order_type == "direct"
    assert reg.quote(purchase("test-widget")) == Quote(
        amount=4200, currency="usd", description="test-widget"
    )
    assert reg.catalog("test-widget") == {"owner": "test-widget"}
    assert reg.fulfil(paid("test-widget")) == {"fulfilled_by": "test-widget"}
    assert widget.calls == [
        ("quote", "test-widget", "test-widget"),
        ("catalog", "test-widget", "test-widget"),
        ("fulfil", "test-widget", "test-widget"),
    ]


@pytest.mark.parametrize("a_first", [True, False], ids=["a-registered-first", "b-first"])
def test_each_hook_reaches_only_the_owner_of_the_type(a_first):
    # firstresult hooks run newest plugin first, so both registration orders are
    # needed to tell routing apart from luck.
    calls: list = []
    a, b = WidgetPlugin("type-a", calls, price=100), WidgetPlugin("type-b", calls, price=200)
    reg = PluginRegistry()
    for plugin, name in [(a, "plugin-a"), (b, "plugin-b")][:: 1 if a_first else -1]:
        reg.register(plugin, name=name)

    assert reg.quote(purchase("type-a")).amount == 100
    assert calls == [("quote", "type-a", "type-a")]
    calls.clear()
    assert reg.quote(purchase("type-b")).amount == 200
    assert calls == [("quote", "type-b", "type-b")]
    calls.clear()

    assert reg.catalog("type-a") == {"owner": "type-a"}
    assert reg.fulfil(paid("type-b")) == {"fulfilled_by": "type-b"}
    assert calls == [("catalog", "type-a", "type-a"), ("fulfil", "type-b", "type-b")]


def test_an_owner_without_the_hook_never_falls_through_to_another_plugin():
    calls: list = []
    reg = PluginRegistry()
    reg.register(WidgetPlugin("type-b", calls), name="plugin-b")
    reg.register(TypeOnlyPlugin("type-a"), name="plugin-a")

    assert reg.catalog("type-a") == {}
    assert reg.fulfil(paid("type-a")) == {}
    with pytest.raises(TypeError):
        reg.quote(purchase("type-a"))  # no quote at all is not a Quote
    assert calls == []


def test_two_plugins_claiming_one_type_are_refused_naming_both():
    reg = PluginRegistry()
    reg.register(WidgetPlugin("test-widget"), name="first-widgets")

    with pytest.raises(ImproperlyConfigured) as info:
        reg.register(WidgetPlugin("test-widget"), name="second-widgets")

    message = str(info.value)
    assert "test-widget" in message
    assert "first-widgets" in message
    assert "second-widgets" in message


def test_a_plugin_cannot_take_a_built_in_type():
    reg = PluginRegistry()
    for name, plugin in BUILTIN_PLUGINS:
        reg.register(plugin, name=name)

    with pytest.raises(ImproperlyConfigured) as info:
        reg.register(WidgetPlugin("credits"), name="credits-thief")

    assert "'tollgate.credits'" in str(info.value)
    assert "'credits-thief'" in str(info.value)


def test_a_hook_implementation_without_a_spec_is_refused():
    reg = PluginRegistry()

    with pytest.raises(ImproperlyConfigured) as info:
        reg.register(UnspeccedHookPlugin("test-widget"), name="typo-widgets")

    assert "typo-widgets" in str(info.value)
    assert "tollgate_not_a_hook" in str(info.value)


@pytest.mark.parametrize(
    "refused",
    [
        pytest.param(lambda: WidgetPlugin("test-widget"), id="duplicate-type"),
        pytest.param(lambda: UnspeccedHookPlugin("other-widget"), id="unspecced-hook"),
    ],
)
def test_a_refused_plugin_is_not_left_registered(refused):
    reg = PluginRegistry()
    reg.register(WidgetPlugin("test-widget"), name="good-widgets")
    with pytest.raises(ImproperlyConfigured):
        reg.register(refused(), name="refused-widgets")

    reg.register(WidgetPlugin("later-widget"), name="later-widgets")

    assert sorted(type_names(reg)) == ["later-widget", "test-widget"]
    assert "refused-widgets" not in [name for name, _ in reg.plugins()]


@pytest.mark.parametrize("call", ["purchase_type", "quote", "catalog", "fulfil"])
def test_an_unknown_purchase_type_is_refused(call):
    reg = PluginRegistry()
    reg.register(WidgetPlugin("test-widget"), name="test-widgets")
    argument = {"quote": purchase("nope"), "fulfil": paid("nope")}.get(call, "nope")

    with pytest.raises(UnknownPurchaseTypeError) as info:
        getattr(reg, call)(argument)

    assert info.value.status == 422
    assert info.value.code == "unknown_purchase_type"
    assert info.value.extra["known"] == ["test-widget"]


def test_a_quote_that_is_not_a_quote_is_a_type_error():
    reg = PluginRegistry()
    reg.register(BadQuotePlugin("test-widget"), name="bad-widgets")

    with pytest.raises(TypeError, match="test-widget"):
        reg.quote(purchase("test-widget"))


def test_unregister_removes_the_type():
    reg = PluginRegistry()
    widget = WidgetPlugin("test-widget")
    reg.register(widget, name="test-widgets")
    reg.unregister(widget)

    assert type_names(reg) == []
    with pytest.raises(UnknownPurchaseTypeError):
        reg.quote(purchase("test-widget"))


# --- the global registry, as Django started it -----------------------------------


def test_credits_is_registered_at_start_up():
    assert "credits" in type_names(registry)
    assert registry.purchase_type("credits").order_type == "credit"
    assert "tollgate.credits" in [name for name, _ in registry.plugins()]


def test_plugin_registered_adds_the_type_for_the_block_only():
    widget = WidgetPlugin("test-widget")
    before = type_names(registry)

    with registry.plugin_registered(widget, name="test-widgets"):
        assert set(type_names(registry)) == {*before, "test-widget"}
        assert registry.quote(purchase("test-widget")).description == "test-widget"
        assert widget.calls == [("quote", "test-widget", "test-widget")]

    assert type_names(registry) == before
    with pytest.raises(UnknownPurchaseTypeError):
        registry.purchase_type("test-widget")


def test_plugin_registered_cleans_up_when_the_block_raises():
    before = type_names(registry)

    with pytest.raises(RuntimeError), registry.plugin_registered(WidgetPlugin("test-widget")):
        raise RuntimeError("boom")

    assert type_names(registry) == before


# --- entry points ----------------------------------------------------------------


def test_loading_entry_points_does_not_duplicate_built_ins():
    reg = PluginRegistry()
    for name, plugin in BUILTIN_PLUGINS:
        reg.register(plugin, name=name)

    loaded = reg.load_entry_points()
    names = type_names(reg)

    assert isinstance(loaded, int)
    assert loaded >= 0
    assert names.count("credits") == 1
    assert len(names) == len(set(names))
    # A second load finds every entry point already registered.
    assert reg.load_entry_points() == 0
    assert type_names(reg) == names


def test_how_a_purchase_type_is_sold_follows_its_order_type_unless_it_says():
    assert PurchaseType(name="a", order_type="subscription", label="A").sold_as == ("subscription",)
    assert PurchaseType(name="b", order_type="credit", label="B").sold_as == ("order",)
    both = PurchaseType(
        name="c", order_type="direct", label="C", sold_as=("order", "subscription", "order")
    )
    assert both.sold_as == ("order", "subscription")
    with pytest.raises(ValueError, match="sold_as"):
        PurchaseType(name="d", order_type="direct", label="D", sold_as=("orders",))
