"""Orders: create, read, cancel, refund. Thin: parse, call one service, render."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from ninja import Field, Header, Router, Schema, Status
from ninja.pagination import LimitOffsetPagination, paginate

from billing.models import UNPAID_STATUSES
from billing.schemas import (
    OrderCreateIn,
    OrderCreateOut,
    OrderOut,
    OrderPayIn,
    RefundCreateIn,
    RefundOut,
)
from billing.selectors import order_get_for_user_shown, orders_for_user
from billing.services.credit_refunds import refund_as_credits, refund_order
from billing.services.orders import order_cancel, order_create, order_pay
from kernel.errors import InvalidInputError, PermissionDeniedError
from kernel.money import format_minor
from kernel.schemas import ErrorOut
from purchasables.registry import registry
from purchasables.types import PurchaseRequest

router = Router(tags=["orders"])

ORDERS_MAX_LIMIT = 100


class OrderPagination(LimitOffsetPagination):
    """Limit and offset, bounded: an offset past PostgreSQL's bigint was a 500."""

    class Input(Schema):
        limit: int = Field(ORDERS_MAX_LIMIT, ge=1, le=2**31 - 1)
        offset: int = Field(0, ge=0, le=2**31 - 1)


def _purchase_type_of(payload: OrderCreateIn) -> str:
    if payload.purchase_type:
        return payload.purchase_type
    if payload.service_id is not None:
        # A direct purchase may name only the service; its plugin knows its type.
        found = registry.service_purchase_type(payload.service_id)
        if found:
            return found
        raise InvalidInputError(
            f"No bookable service with id {payload.service_id}.", field="service_id"
        )
    if payload.is_credit_purchase:
        # The shortcut for buying credits: which purchase type that means.
        return settings.TOLLGATE["CREDIT_PURCHASE_TYPE"]
    raise InvalidInputError(
        "Say what to buy: `is_credit_purchase` with `credit_amount` or `pack_id`, "
        "a `service_id`, or a `purchase_type`.",
        field="purchase_type",
    )


@router.post(
    "/create/",
    response={
        200: OrderCreateOut,
        201: OrderCreateOut,
        402: ErrorOut,
        404: ErrorOut,
        409: ErrorOut,
        422: ErrorOut,
        429: ErrorOut,
        501: ErrorOut,
        502: ErrorOut,
    },
)
def payments_create(
    request: HttpRequest,
    payload: OrderCreateIn,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=255),
):
    """Create an order and its payment.

    429 with `Retry-After` past the per-user rate (`TOLLGATE["RATE_LIMITS"]
    ["payments_create"]`, applied by `platform_core.api`), before any work is done.
    """
    purchase = PurchaseRequest(
        user_id=request.user.pk,
        purchase_type=_purchase_type_of(payload),
        credit_amount=payload.credit_amount,
        pack_id=payload.pack_id,
        service_id=payload.service_id,
        scheduling_data=payload.scheduling_data or {},
        service_data=payload.service_data or {},
    )
    result = order_create(
        purchase=purchase,
        amount=payload.amount,
        payment_method_id=payload.payment_method_id,
        save_payment_method=payload.save_payment_method,
        idempotency_key=idempotency_key,
        payment_type=payload.payment_type,
        success_url=payload.success_url,
        cancel_url=payload.cancel_url,
        apply_credits=payload.apply_credits,
    )
    order, payment = result.order, result.payment
    if not result.replayed and order.status in UNPAID_STATUSES:
        # A new order that no payment has reached holds only the payment just made
        # and no refund: the answer need not read them back.
        order.known_payments = [payment] if payment else []
        order.known_refunds = []
    body = OrderCreateOut(
        order_id=order.pk,
        status=order.status,
        payment_status=payment.status if payment else None,
        amount=order.amount,
        amount_display=format_minor(order.amount, order.currency),
        currency=order.currency,
        payment_type=order.payment_type,
        checkout_url=order.checkout_url or None,
        payment_intent_id=payment.stripe_payment_intent_id if payment else None,
        client_secret=payment.client_secret if payment else None,
        publishable_key=settings.STRIPE_PUBLISHABLE_KEY,
        order=order,
    )
    return Status(200 if result.replayed else 201, body)


@router.get("/orders/", response={200: list[OrderOut], 422: ErrorOut})
@paginate(OrderPagination, max_limit=ORDERS_MAX_LIMIT)
def payments_orders_list(request: HttpRequest):
    return orders_for_user(user_id=request.user.pk)


@router.get("/orders/{int:order_id}/", response={200: OrderOut, 404: ErrorOut})
def payments_order_detail(request: HttpRequest, order_id: int):
    return order_get_for_user_shown(order_id=order_id, user_id=request.user.pk)


@router.post(
    "/orders/{int:order_id}/cancel/", response={200: OrderOut, 404: ErrorOut, 409: ErrorOut}
)
def payments_order_cancel(request: HttpRequest, order_id: int):
    """Cancel my unpaid order (credits it took come back), or my order paid with credits
    before its `cancellable_until` (refunded in credits; a booking is cancelled)."""
    return order_cancel(order_id=order_id, user_id=request.user.pk)


@router.post(
    "/orders/{int:order_id}/pay/",
    response={
        200: OrderCreateOut,
        402: ErrorOut,
        404: ErrorOut,
        409: ErrorOut,
        422: ErrorOut,
        429: ErrorOut,
        502: ErrorOut,
    },
)
def payments_order_pay(request: HttpRequest, order_id: int, payload: OrderPayIn):
    """Pay my unpaid order (`pending`, `requires_action` or `failed`) again with a card.

    The answer is the create's: when `status` is `requires_action`, take the card
    holder through 3-D Secure with `client_secret`. 402 for a declined card (the
    order is `failed` and can be paid again), 409 when the order cannot be paid
    (paid, cancelled, being processed) or its seats are gone, 404 for an order that
    is not mine. Counts against the `payments_create` rate limit.
    """
    result = order_pay(
        order_id=order_id, user_id=request.user.pk, payment_method_id=payload.payment_method_id
    )
    order, payment = result.order, result.payment
    return Status(
        200,
        OrderCreateOut(
            order_id=order.pk,
            status=order.status,
            payment_status=payment.status,
            amount=order.amount,
            amount_display=format_minor(order.amount, order.currency),
            currency=order.currency,
            payment_type=order.payment_type,
            checkout_url=None,
            payment_intent_id=payment.stripe_payment_intent_id,
            client_secret=payment.client_secret,
            publishable_key=settings.STRIPE_PUBLISHABLE_KEY,
            order=order,
        ),
    )


@router.post(
    "/orders/{int:order_id}/refunds/",
    response={
        201: RefundOut,
        403: ErrorOut,
        404: ErrorOut,
        409: ErrorOut,
        422: ErrorOut,
        502: ErrorOut,
    },
)
def payments_order_refund(request: HttpRequest, order_id: int, payload: RefundCreateIn):
    """Staff with the refund permission (the "finance" group): refund all (no `amount`)
    or part of a paid order: to the card at Stripe, the credits part of an order paid
    with credits back to the buyer's credits, or (`to_credits`) the card payment as
    credits."""
    if not (request.user.is_staff and request.user.has_perm("billing.add_refund")):
        raise PermissionDeniedError("Refunds are for finance staff only.")
    if payload.to_credits:
        if payload.credits is not None:
            raise InvalidInputError(
                "`to_credits` refunds the card payment; leave out `credits`.", field="credits"
            )
        refund = refund_as_credits(
            order_id=order_id,
            amount=payload.amount,
            reason=payload.reason,
            initiated_by_id=request.user.pk,
        )
        return Status(201, refund)
    refund = refund_order(
        order_id=order_id,
        amount=payload.amount,
        credits=payload.credits,
        reason=payload.reason,
        initiated_by_id=request.user.pk,
    )
    return Status(201, refund)
