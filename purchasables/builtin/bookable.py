"""The bookable purchase types: `session` (1-on-1), `workshop`, `course`, `package`, `bundle`.

One `BookablePlugin` per kind, each owning the purchase type of that name, so
each sees only its own orders. The work is `bookings`' services: the quote
builds and checks a booking plan (`bookings.services.plans` documents the
scheduling model, packages included), the reserve hook holds its seats, the
fulfil hook turns the plan into bookings, and the refund hook cancels them or
marks them partially refunded. While an order's payment is disputed its
bookings are marked disputed (they keep their seats); a lost dispute cancels
them, a won one restores them.

A service with a `credit_price` may be paid with credits too (`Quote.credits`).
The buyer may cancel a booking paid with credits up to `CANCEL_CUTOFF` before
its earliest start (`Quote.cancellable_until`); a purchase with nothing
scheduled yet (a package whose 1-on-1 units are booked later) cannot be
cancelled by its buyer.

The rule: fulfilment books exactly the plan stored in `Quote.data["plan"]`,
which the server built from the database; nothing the client sends after the
quote is trusted.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from bookings.errors import SeatsUnavailableError
from bookings.models import Service
from bookings.selectors import (
    bookings_for_order,
    service_kind_get,
    service_sessions_upcoming,
    services_for_sale,
)
from bookings.services.bookings import (
    bookings_cancel_for_order,
    bookings_clear_disputed,
    bookings_create_for_order,
    bookings_mark_disputed,
    bookings_mark_partially_refunded,
)
from bookings.services.holds import seat_holds_create, seat_holds_release
from bookings.services.plans import PlanNode, booking_plan_build
from purchasables import hookimpl
from purchasables.errors import FulfilmentImpossibleError
from purchasables.types import (
    DeliveryLine,
    DisputeInfo,
    OrderInfo,
    PurchaseRequest,
    PurchaseType,
    Quote,
    RefundInfo,
)

Kind = Service.Kind
# Stripe's limit on one metadata value.
METADATA_VALUE_MAX = 500
# How long before its start a buyer may still cancel a booking paid with credits;
# `TOLLGATE["BOOKING_CANCEL_CUTOFF_HOURS"]` overrides it.
CANCEL_CUTOFF = timedelta(hours=24)


def _cancel_cutoff() -> timedelta:
    hours = settings.TOLLGATE.get("BOOKING_CANCEL_CUTOFF_HOURS")
    return CANCEL_CUTOFF if hours is None else timedelta(hours=int(hours))


def _cancellable_until(plan: PlanNode) -> datetime | None:
    """The cut-off before the plan's earliest start; None when nothing has a time yet."""
    starts = [node.start for node in plan.walk() if node.start is not None]
    return min(starts) - _cancel_cutoff() if starts else None


DESCRIPTIONS = {
    Kind.SESSION: "A 1-on-1 session at a time inside the host's availability "
    "(`scheduling_data.start_datetime`).",
    Kind.WORKSHOP: "A seat in a group session (`scheduling_data.service_session_id`, "
    "or the workshop's only upcoming session).",
    Kind.COURSE: "A seat in every session of a course.",
    Kind.PACKAGE: "Several units of a service; 1-on-1 units may be scheduled later.",
    Kind.BUNDLE: "A mix of services sold together; 1-on-1 units may be scheduled later.",
}


def _when(plan: PlanNode) -> str:
    return f" on {plan.start:%Y-%m-%d %H:%M %Z}" if plan.start else ""


def _service_entry(service: Service) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": service.pk,
        "name": service.name,
        "description": service.description,
        "kind": service.kind,
        "price": service.price,
        "currency": service.currency,
        # The same service in credits; None when it cannot be bought with credits.
        "credit_price": service.credit_price,
    }
    if service.kind == Kind.SESSION:
        entry["duration_minutes"] = service.duration_minutes
        entry["availability"] = [
            {"start": w.start.isoformat(), "end": w.end.isoformat()}
            for w in service.upcoming_availability
        ]
    elif service.kind in (Kind.WORKSHOP, Kind.COURSE):
        entry["sessions"] = [
            {
                "id": s.pk,
                "start": s.start.isoformat(),
                "end": s.end.isoformat(),
                "capacity": s.capacity,
                "free_seats": s.free_seats,
            }
            for s in service_sessions_upcoming(service_id=service.pk)
        ]
    else:
        entry["items"] = [
            {
                "service_id": item.item_service_id,
                "name": item.item_service.name,
                "kind": item.item_service.kind,
                "quantity": item.quantity,
            }
            for item in service.items.all()
        ]
    return entry


class BookablePlugin:
    """The purchase type named after one `Service.Kind`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"BookablePlugin({self.kind!r})"

    @hookimpl
    def tollgate_purchase_types(self) -> list[PurchaseType]:
        return [
            PurchaseType(
                name=self.kind,
                order_type="direct",
                label=Kind(self.kind).label,
                description=DESCRIPTIONS[self.kind],
            )
        ]

    @hookimpl
    def tollgate_service_purchase_type(self, service_id: int) -> str | None:
        return self.kind if service_kind_get(service_id=service_id) == self.kind else None

    @hookimpl
    def tollgate_catalog(self, purchase_type: str) -> dict[str, Any]:
        return {"services": [_service_entry(s) for s in services_for_sale(kind=self.kind)]}

    @hookimpl
    def tollgate_quote(self, request: PurchaseRequest) -> Quote:
        service, plan = booking_plan_build(
            service_id=request.service_id, kind=self.kind, scheduling_data=request.scheduling_data
        )
        metadata = {
            "service_id": str(service.pk),
            "service_type": self.kind,
            "service_name": service.name[:METADATA_VALUE_MAX],
        }
        if self.kind == Kind.WORKSHOP:
            metadata["service_session_id"] = str(plan.session_id)
        return Quote(
            amount=service.price,
            currency=service.currency,
            description=f"{Kind(self.kind).label}: {service.name}{_when(plan)}",
            metadata=metadata,
            data={"service_id": service.pk, "plan": plan.to_dict()},
            credits=service.credit_price,
            cancellable_until=_cancellable_until(plan),
        )

    @hookimpl
    def tollgate_reserve(self, order: OrderInfo) -> None:
        seat_holds_create(
            order_id=order.order_id,
            user_id=order.user_id,
            plan=PlanNode.from_dict(order.data["plan"]),
        )

    @hookimpl
    def tollgate_release(self, order: OrderInfo, reason: str) -> None:
        seat_holds_release(order_id=order.order_id)

    @hookimpl
    def tollgate_fulfil(self, order: OrderInfo) -> dict[str, Any]:
        try:
            made = bookings_create_for_order(
                order_id=order.order_id,
                user_id=order.user_id,
                plan=PlanNode.from_dict(order.data["plan"]),
            )
        except SeatsUnavailableError as exc:
            raise FulfilmentImpossibleError(
                "The seats held for this order ran out before the payment arrived, and "
                f"they were taken meanwhile: {exc.message}",
                **exc.extra,
            ) from exc
        return {"booking_id": made[0].pk, "bookings": len(made)}

    @hookimpl
    def tollgate_delivered(
        self, order: OrderInfo, fulfilment: dict[str, Any] | None
    ) -> list[DeliveryLine]:
        return [
            DeliveryLine(
                f"Booking #{booking.pk}",
                f"{booking.service.name}, "
                + (
                    booking.start.strftime("%a %d %b %Y %H:%M UTC")
                    if booking.start
                    else "to be scheduled"
                )
                + f" ({booking.get_status_display().lower()})",
            )
            for booking in bookings_for_order(order_id=order.order_id).select_related("service")
        ]

    @hookimpl
    def tollgate_refund(self, order: OrderInfo, refund: RefundInfo) -> dict[str, Any]:
        if refund.is_full(order):
            return {"bookings_canceled": bookings_cancel_for_order(order_id=order.order_id)}
        return {
            "bookings_partially_refunded": bookings_mark_partially_refunded(order_id=order.order_id)
        }

    @hookimpl
    def tollgate_dispute(self, order: OrderInfo, dispute: DisputeInfo) -> dict[str, Any]:
        if dispute.state == "open":
            return {"bookings_disputed": bookings_mark_disputed(order_id=order.order_id)}
        if dispute.state == "won":
            return {"bookings_restored": bookings_clear_disputed(order_id=order.order_id)}
        return {"bookings_canceled": bookings_cancel_for_order(order_id=order.order_id)}


PLUGINS = [(f"tollgate.bookings.{kind}", BookablePlugin(kind)) for kind in Kind.values]
