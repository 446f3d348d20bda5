"""Request and response bodies of the bookings API.

The rule: output schemas list their fields (never `"__all__"`); input schemas
forbid unknown fields. Prices are integers in the currency's minor unit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ninja import Field, Schema

from bookings.models import Booking, Service


class PackageItemOut(Schema):
    service_id: int = Field(alias="item_service_id")
    name: str = Field(alias="item_service.name")
    kind: str = Field(alias="item_service.kind")
    quantity: int


class AvailabilityWindowOut(Schema):
    start: datetime
    end: datetime


class ServiceOut(Schema):
    id: int
    name: str
    description: str
    kind: str
    price: int = Field(description="In the currency's minor unit.")
    currency: str
    credit_price: int | None = Field(
        description="The same service in credits; null when it cannot be bought with credits."
    )
    duration_minutes: int | None = Field(description="1-on-1 sessions: the length of a slot.")
    items: list[PackageItemOut] = Field(description="Packages and bundles: what they contain.")
    availability: list[AvailabilityWindowOut] = Field(
        description="1-on-1 sessions: when a slot may be booked (upcoming windows)."
    )

    @staticmethod
    def resolve_items(service: Service) -> list:
        return list(service.items.all()) if service.is_collection else []

    @staticmethod
    def resolve_availability(service: Service) -> list:
        return list(getattr(service, "upcoming_availability", []))


class ServiceSessionOut(Schema):
    id: int
    service_id: int
    start: datetime
    end: datetime
    capacity: int
    free_seats: int = Field(description="Capacity less confirmed bookings and live holds.")


class FreeSlotOut(Schema):
    start: datetime
    end: datetime


class BookingChildOut(Schema):
    id: int
    service_id: int
    service_name: str = Field(alias="service.name")
    service_kind: str = Field(alias="service.kind")
    session_id: int | None
    parent_id: int | None
    status: str
    start: datetime | None
    end: datetime | None
    scheduling_data: dict[str, Any]
    order_id: int
    disputed_at: datetime | None = Field(
        description="Set while the payment for it is disputed: it keeps its seat but "
        "cannot be scheduled."
    )
    created_at: datetime


class BookingOut(BookingChildOut):
    children: list[BookingChildOut]

    @staticmethod
    def resolve_children(booking: Booking) -> list:
        return list(booking.children.all())


class BookingScheduleIn(Schema):
    model_config = {"extra": "forbid"}

    start_datetime: str = Field(
        ..., max_length=64, description="ISO-8601 with a timezone, e.g. 2030-01-31T14:00:00Z."
    )
