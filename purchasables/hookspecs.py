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
from purchasables.types import (
    DeliveryLine,
    DisputeInfo,
    OrderInfo,
    PurchaseRequest,
    PurchaseType,
    Quote,
    RefundInfo,
)

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

    :param order: the paid order. For a subscription purchase type, each order
        is one paid Stripe invoice and `order.invoice` (an `InvoiceInfo`) says
        what was paid and for what: `billing_reason` (`subscription_create`,
        `subscription_cycle`, or `""` from API versions that do not state it),
        `amount_paid` and `currency` (at least the plan's price, in its
        currency; `order.amount` is the same amount), and the billed
        `period_start`/`period_end` (Unix times, None if Stripe sent none).
        Billing calls this hook only for such whole cycles: prorations
        (`subscription_update`), manual, threshold and other invoices, and
        short or foreign-currency payments make no order and are left to
        staff. `order.invoice` is None for every other order.
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

    firstresult; called only on the owning plugin, exactly once per refund (a
    Stripe refund, or a refund in credits: `refund.credits` set, no
    `stripe_refund_id`), by the event worker, the staff refund request or the
    buyer's cancellation of an order paid with credits, inside the transaction
    that marks the refund applied (and gives the credits). Also called for an
    order whose fulfilment was impossible, which has nothing to reverse.
    """


@hookspec(firstresult=True)
def tollgate_dispute(order: OrderInfo, dispute: DisputeInfo) -> dict[str, Any] | None:
    """Freeze what the order delivered while its payment is disputed; release it after.

    :param order: the order whose payment the customer disputes with their bank.
    :param dispute: the dispute; `dispute.state` says what to do:
        `open`: freeze what the order delivered so it cannot be used meanwhile
        (credits made unspendable, bookings marked disputed), in proportion to
        `dispute.at_stake`; `won`: release the freeze; `lost`: end the freeze,
        because the reversal follows: `tollgate_refund` is then called in the
        same transaction with a `RefundInfo` whose `stripe_dispute_id` is set,
        exactly as for a refund of `dispute.at_stake`.
    :return: an optional JSON-serialisable summary, stored on the dispute.

    firstresult; called only on the owning plugin, by the event worker, inside
    the transaction that records the dispute's new state under the order's row
    lock: `open` at most once per dispute, then at most one of `won` or `lost`,
    and only if `open` was called (a dispute first reported closed was never
    frozen; a lost one is still reversed through `tollgate_refund`). Not called
    when nothing of the order is left at stake (refunded in full already).
    A plugin that does not implement it freezes nothing; a lost dispute still
    reaches its `tollgate_refund`.
    """


@hookspec(firstresult=True)
def tollgate_delivered(order: OrderInfo, fulfilment: dict[str, Any] | None) -> list[DeliveryLine]:
    """Show the buyer what their order delivered: a gift card's code, a booking, credits.

    :param order: one of the buyer's orders, in any status.
    :param fulfilment: what `tollgate_fulfil` returned for it, or None while it
        is not fulfilled.
    :return: the lines to show, in order (empty for nothing). They appear as
        `delivered` in `GET /api/v1/payments/orders/{id}/` and on the web
        client's order page; only the order's owner (and staff) see them, so a
        line may carry what only the buyer should read (a gift card's code).

    firstresult; called only on the owning plugin, when one order is read, outside
    any transaction. Read only and cheap: it must not write or call the network.
    A plugin with nothing to show need not implement it.
    """


# --- the credit ledger, for paying with credits ------------------------------------------
# Billing never touches the ledger itself: one plugin (the built-in credits plugin)
# implements these two hooks. They are not per purchase type.


@hookspec(firstresult=True)
def tollgate_credits_take(
    user_id: int, credits: int, reference: str, memo: str, partial: bool
) -> int | None:
    """Take credits from the buyer's ledger to pay an order.

    :param user_id: the buyer.
    :param credits: how many to take (> 0).
    :param reference: names the take, unique per order (`order-<id>`); a repeat
        of the same reference takes nothing more and answers what the first took.
    :param memo: the ledger entry's memo, for the buyer.
    :param partial: False: all of `credits` or nothing, and refuse with a
        409 `insufficient_credits` `DomainError` whose `extra` says how many are
        `missing`; True: as many as the buyer may spend, at most `credits`
        (answers 0 when none).
    :return: the credits taken.

    firstresult; called from `POST /api/v1/payments/create/` with
    `payment_type: "credits"` or `apply_credits`, inside the transaction that
    creates the order: the take commits with the order or not at all. Spending
    never takes a balance below zero, under any concurrency.
    """


@hookspec(firstresult=True)
def tollgate_credits_give_back(
    user_id: int,
    spend_reference: str | None,
    credits: int,
    reference: str,
    memo: str,
    order_id: int,
) -> int | None:
    """Give credits back to the buyer, once per `reference`.

    :param user_id: the buyer.
    :param spend_reference: the `reference` of the `tollgate_credits_take` whose
        credits come back (to where they came from), never more than it took;
        None for card money refunded as credits: new paid credits, tied to the
        order.
    :param credits: how many (> 0).
    :param reference: names this give-back (`order-<id>-back`, `refund-<id>`);
        a repeat gives nothing more.
    :param memo: the ledger entry's memo.
    :param order_id: the order they are given back for.
    :return: the credits given (a repeat answers what the first gave).

    firstresult; called by billing inside the transaction that cancels an
    unpaid order holding credits, or that applies a refund in credits, under
    the order's row lock.
    """
