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
from purchasables.types import PaidOrder, PurchaseRequest, PurchaseType, Quote

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


@hookspec(firstresult=True)
def tollgate_fulfil(order: PaidOrder) -> dict[str, Any] | None:
    """Deliver what was bought: write ledger entries, create bookings.

    :param order: the paid order.
    :return: an optional JSON-serialisable summary, stored on the fulfilment.

    firstresult; called only on the owning plugin, exactly once per order, by
    the event worker (or the order-create request when Stripe confirms the
    payment synchronously), inside the transaction that moves the order to
    `paid` and inserts its unique fulfilment row. Raising rolls all of it back
    and the event is retried.
    """
