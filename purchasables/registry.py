"""The typed registry: the only code that touches `pm.hook`.

It owns the plugin manager, refuses a broken plugin set at start-up (a hook
implementation without a spec, two plugins claiming one purchase type), and
routes each per-type hook to the one plugin that owns the type.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
from collections.abc import Iterator
from typing import Any

import pluggy
from django.core.exceptions import ImproperlyConfigured

from kernel.errors import DomainError, ErrorCode
from purchasables import ENTRY_POINT_GROUP, PROJECT_NAME, hookspecs
from purchasables.types import (
    DeliveryLine,
    DisputeInfo,
    OrderInfo,
    PurchaseRequest,
    PurchaseType,
    Quote,
    RefundInfo,
    SaleMode,
)


class UnknownPurchaseTypeError(DomainError):
    code = ErrorCode.UNKNOWN_PURCHASE_TYPE
    status = 422


class NotSoldThisWayError(DomainError):
    """A purchase type asked for in a way its plugin does not sell it (a plan as a
    one-off order, a credit pack as a subscription)."""

    code = ErrorCode.NOT_SOLD_THIS_WAY
    status = 422


class PluginRegistry:
    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._types: dict[str, tuple[PurchaseType, object]] = {}

    # --- start-up -------------------------------------------------------------
    def register(self, plugin: object, name: str | None = None) -> None:
        """Add a plugin; a plugin start-up refuses is not left behind half-registered."""
        try:
            self._pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise ImproperlyConfigured(
                f"Purchase-type plugin {name or plugin!r} does not match the hook "
                f"specifications in purchasables.hookspecs: {exc}"
            ) from exc
        try:
            self._rebuild()
        except ImproperlyConfigured:
            self._pm.unregister(plugin)
            self._rebuild()
            raise

    def unregister(self, plugin: object) -> None:
        self._pm.unregister(plugin)
        self._rebuild()

    def load_entry_points(self) -> int:
        """Register every plugin of the `tollgate.purchasables` entry-point group."""
        count = 0
        for dist in importlib.metadata.distributions():
            for ep in dist.entry_points:
                if ep.group != ENTRY_POINT_GROUP or self._pm.get_plugin(ep.name) is not None:
                    continue
                self.register(ep.load(), name=ep.name)
                count += 1
        return count

    def _rebuild(self) -> None:
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise ImproperlyConfigured(
                f"Purchase-type plugin {self._pm.get_name(exc.plugin)!r} implements a hook "
                f"with no specification in purchasables.hookspecs: {exc}"
            ) from exc
        types: dict[str, tuple[PurchaseType, object]] = {}
        for impl in self._pm.hook.tollgate_purchase_types.get_hookimpls():
            for spec in impl.function() or []:
                if spec.name in types:
                    other = self._pm.get_name(types[spec.name][1])
                    raise ImproperlyConfigured(
                        f"Purchase type {spec.name!r} is claimed by two plugins: "
                        f"{other!r} and {impl.plugin_name!r}."
                    )
                types[spec.name] = (spec, impl.plugin)
        self._types = types

    @contextlib.contextmanager
    def plugin_registered(self, plugin: object, name: str | None = None) -> Iterator[None]:
        """Register `plugin` for the duration of a block (tests, experiments)."""
        self.register(plugin, name=name)
        try:
            yield
        finally:
            self.unregister(plugin)

    # --- queries --------------------------------------------------------------
    def purchase_types(self) -> list[PurchaseType]:
        return [spec for spec, _ in self._types.values()]

    def purchase_type(self, name: str) -> PurchaseType:
        try:
            return self._types[name][0]
        except KeyError:
            raise UnknownPurchaseTypeError(
                f"No purchase type named {name!r}.",
                purchase_type=name,
                known=sorted(self._types),
            ) from None

    def purchase_type_sold_as(self, name: str, mode: SaleMode) -> PurchaseType:
        """The purchase type `name`, if it may be bought as `mode`; raises otherwise."""
        spec = self.purchase_type(name)
        if mode not in spec.sold_as:
            how = {"order": "as a one-off order", "subscription": "as a subscription"}[mode]
            raise NotSoldThisWayError(
                f"{name!r} is not sold {how}.",
                purchase_type=name,
                sold_as=list(spec.sold_as),
            )
        return spec

    def plugins(self) -> list[tuple[str, object]]:
        return [(self._pm.get_name(p) or "", p) for p in self._pm.get_plugins()]

    # --- per-type hooks, called on the owning plugin only -----------------------
    def _owner_hook(self, hook_name: str, purchase_type: str) -> Any:
        self.purchase_type(purchase_type)  # raises for an unknown type
        owner = self._types[purchase_type][1]
        others = [p for p in self._pm.get_plugins() if p is not owner]
        return self._pm.subset_hook_caller(hook_name, remove_plugins=others)

    def catalog(self, purchase_type: str) -> dict[str, Any]:
        hook = self._owner_hook("tollgate_catalog", purchase_type)
        return hook(purchase_type=purchase_type) or {}

    def quote(self, request: PurchaseRequest) -> Quote:
        hook = self._owner_hook("tollgate_quote", request.purchase_type)
        quote = hook(request=request)
        if not isinstance(quote, Quote):
            raise TypeError(
                f"The plugin for {request.purchase_type!r} returned {quote!r} "
                "from tollgate_quote instead of a Quote."
            )
        return quote

    def reserve(self, order: OrderInfo) -> None:
        self._owner_hook("tollgate_reserve", order.purchase_type)(order=order)

    def release(self, order: OrderInfo, reason: str) -> None:
        self._owner_hook("tollgate_release", order.purchase_type)(order=order, reason=reason)

    def fulfil(self, order: OrderInfo) -> dict[str, Any]:
        hook = self._owner_hook("tollgate_fulfil", order.purchase_type)
        return hook(order=order) or {}

    def refund(self, order: OrderInfo, refund: RefundInfo) -> dict[str, Any]:
        hook = self._owner_hook("tollgate_refund", order.purchase_type)
        return hook(order=order, refund=refund) or {}

    def delivered(self, order: OrderInfo, fulfilment: dict[str, Any] | None) -> list[DeliveryLine]:
        hook = self._owner_hook("tollgate_delivered", order.purchase_type)
        lines = hook(order=order, fulfilment=fulfilment) or []
        if not all(isinstance(line, DeliveryLine) for line in lines):
            raise TypeError(
                f"The plugin for {order.purchase_type!r} returned {lines!r} from "
                "tollgate_delivered instead of a list of DeliveryLine."
            )
        return list(lines)

    def dispute(self, order: OrderInfo, dispute: DisputeInfo) -> dict[str, Any]:
        hook = self._owner_hook("tollgate_dispute", order.purchase_type)
        return hook(order=order, dispute=dispute) or {}

    # --- the credit ledger (one plugin implements it) ----------------------------------
    def credits_take(
        self, *, user_id: int, credits: int, reference: str, memo: str, partial: bool
    ) -> int:
        """Take credits to pay an order; see `hookspecs.tollgate_credits_take`."""
        taken = self._pm.hook.tollgate_credits_take(
            user_id=user_id, credits=credits, reference=reference, memo=memo, partial=partial
        )
        if taken is None:
            raise ImproperlyConfigured("No plugin implements tollgate_credits_take.")
        return int(taken)

    def credits_give_back(
        self,
        *,
        user_id: int,
        spend_reference: str | None,
        credits: int,
        reference: str,
        memo: str,
        order_id: int,
    ) -> int:
        """Give credits back; see `hookspecs.tollgate_credits_give_back`."""
        given = self._pm.hook.tollgate_credits_give_back(
            user_id=user_id,
            spend_reference=spend_reference,
            credits=credits,
            reference=reference,
            memo=memo,
            order_id=order_id,
        )
        if given is None:
            raise ImproperlyConfigured("No plugin implements tollgate_credits_give_back.")
        return int(given)

    # --- questions for every plugin ----------------------------------------------------
    def service_purchase_type(self, service_id: int) -> str | None:
        """The purchase type that sells bookable service `service_id`, if any plugin knows it."""
        return self._pm.hook.tollgate_service_purchase_type(service_id=service_id)


registry = PluginRegistry()
