"""Billing's reads: a user's orders, never anyone else's."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, QuerySet

from billing.models import Fulfilment, Order
from kernel.errors import NotFoundError


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
