"""Billing's reads: a user's orders, never anyone else's."""

from __future__ import annotations

import logging

from django.db.models import Exists, OuterRef, QuerySet

from billing.models import Fulfilment, Order
from billing.services.payments import order_info
from kernel.errors import NotFoundError
from purchasables.registry import registry
from purchasables.types import DeliveryLine

log = logging.getLogger(__name__)


def order_get_for_user(*, order_id: int, user_id: int) -> Order:
    """One of the user's orders; 404 for an absent order and for another user's alike."""
    order = Order.objects.filter(pk=order_id, user_id=user_id).first()
    if order is None:
        raise NotFoundError("No such order.", order_id=order_id)
    return order


def orders_for_user(*, user_id: int) -> QuerySet[Order]:
    """The user's orders, newest first, with what the order list shows."""
    fulfilled = Fulfilment.objects.filter(order_id=OuterRef("pk"))
    return (
        Order.objects.filter(user_id=user_id)
        .annotate(is_fulfilled=Exists(fulfilled))
        .prefetch_related("payments", "refunds")
        .order_by("-id")
    )


def order_delivered(*, order: Order) -> list[DeliveryLine]:
    """What the order delivered, as its plugin shows it to the buyer.

    A plugin that fails here costs its lines, never the order's page: the error is logged.
    """
    fulfilment = Fulfilment.objects.filter(order_id=order.pk).values_list("result", flat=True)
    try:
        return registry.delivered(order_info(order), next(iter(fulfilment), None))
    except Exception:
        log.exception(
            "order %s: the %s plugin could not show its delivery", order.pk, order.purchase_type
        )
        return []


def order_get_for_user_shown(*, order_id: int, user_id: int) -> Order:
    """One of the user's orders, with what it delivered (`order.delivered`)."""
    order = order_get_for_user(order_id=order_id, user_id=user_id)
    order.delivered = order_delivered(order=order)
    return order
