"""The hook specifications: the whole contract between billing and a purchase type.

A purchase type is a pluggy plugin implementing these hooks with
`@purchasables.hookimpl`. Billing calls the hooks that take a purchase type only
on the one plugin that declared that type in `tollgate_purchase_types`, so a
plugin never sees another plugin's orders. Plugins receive `purchasables.types`
values, never billing's models.

The rule: a hook runs inside the transaction named in its docstring and must
not call Stripe or any other network service there; raise a
`kernel.errors.DomainError` to refuse, and the whole transaction rolls back.
"""

from __future__ import annotations

from typing import Any

import pluggy

from purchasables import PROJECT_NAME
from purchasables.types import OrderInfo, PurchaseRequest, PurchaseType, Quote, RefundInfo

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


@hookspec
def tollgate_purchase_types() -> list[PurchaseType]:
    """Declare the purchase types this plugin owns.

    :return: one `PurchaseType` for each type; names are unique across all
        plugins (start-up refuses two plugins claiming one name).

    Called once at start-up, from `PurchasablesConfig.ready()`, outside any
    transaction. Every plugin's result is collected.
    """


@hookspec(firstresult=True)
def tollgate_service_purchase_type(service_id: int) -> str | None:
    """Name the purchase type that sells the bookable service `service_id`.

    :param service_id: what a client sent as `service_id` without a `purchase_type`.
    :return: one of this plugin's purchase-type names, or None if the service is
        not this plugin's.

    firstresult; asked of every plugin from `POST /api/v1/payments/create/`,
    before the order transaction, read-only.
    """


@hookspec(firstresult=True)
def tollgate_catalog(purchase_type: str) -> dict[str, Any] | None:
    """Describe what a client can buy of `purchase_type`, for `GET /api/v1/catalog/`.

    :param purchase_type: one of the names this plugin declared.
    :return: a JSON-serialisable dict (packs, services, prices in minor units).

    firstresult; called only on the owning plugin, per catalog request, in a
    read-only context.
    """


@hookspec(firstresult=True)
def tollgate_quote(request: PurchaseRequest) -> Quote:
    """Validate a purchase request and price it on the server.

    :param request: what the client asked for; `request.purchase_type` is one
        of this plugin's types.
    :return: the `Quote`. Raise a `DomainError` (422 for bad input, 409 for a
        conflict such as no seats left) to refuse the purchase.

    firstresult; called only on the owning plugin from
    `POST /api/v1/payments/create/`, inside the transaction that creates the
    order, before anything is sent to Stripe. Rows written here (a seat hold)
    commit with the order or not at all.
    """


@hookspec
def tollgate_reserve(order: OrderInfo) -> None:
    """Hold what the order will need (seats) until it is paid, released or expires.

    :param order: the order just created, with its id.

    Called only on the owning plugin, from `POST /api/v1/payments/create/`,
    inside the transaction that creates the order, after `tollgate_quote` and
    before anything is sent to Stripe. Raise a `DomainError` (409 when nothing
    is left) and the order is never created. A plugin with nothing to hold need
    not implement it.

    Called again, for the same order, from `POST /api/v1/payments/orders/{id}/pay/`
    when the customer pays an unpaid order again, inside the transaction that
    starts the new attempt: keep what is still held (never extend it), or take
    again what was released or ran out, under the same checks as a new order;
    raise to refuse the attempt (the order stays as it was). Must be idempotent.
    """


@hookspec
def tollgate_release(order: OrderInfo, reason: str) -> None:
    """Give back what `tollgate_reserve` held: the order will not be paid as it stands.

    :param order: the order.
    :param reason: why: `failed`, `canceled` or `expired`.

    Called only on the owning plugin, inside the transaction that moves the
    order to `failed` or `canceled` (by the event worker, the cancel request or
    the expiry sweep). A failed order can still be paid later; fulfilment must
    then take what is free. Must be idempotent.
    """


@hookspec(firstresult=True)
def tollgate_fulfil(order: OrderInfo) -> dict[str, Any] | None:
    """Deliver what was bought: write ledger entries, create bookings.

    :param order: the paid order.
    :return: an optional JSON-serialisable summary, stored on the fulfilment.

    firstresult; called only on the owning plugin, exactly once per order, by
    the event worker (or the order-create request when Stripe confirms the
    payment synchronously), inside the transaction that moves the order to
    `paid` and inserts its unique fulfilment row. Raising rolls all of it back
    and the event is retried, except `purchasables.errors.FulfilmentImpossibleError`
    (the seat was taken after the hold expired): then the order stays paid,
    records the reason, and billing refunds it in full.
    """


@hookspec(firstresult=True)
def tollgate_refund(order: OrderInfo, refund: RefundInfo) -> dict[str, Any] | None:
    """Reverse the effect of a refund: debit credits, cancel bookings.

    :param order: the refunded order.
    :param refund: this refund; `refund.is_full(order)` tells a full refund
        (the refunded total reached the order's amount) from a partial one.
    :return: an optional JSON-serialisable summary, stored on the refund.

    firstresult; called only on the owning plugin, exactly once per Stripe
    refund, by the event worker or the staff refund request, inside the
    transaction that marks the refund applied. Also called for an order whose
    fulfilment was impossible, which has nothing to reverse.
    """
