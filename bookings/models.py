"""Bookable services, their scheduled sessions, seat holds and bookings.

The rule: a seat is taken only through `bookings.services`, which locks the
`ServiceSession` row (or, for a 1-on-1 slot, the `Service` rows of its host)
before counting and writing, so a session never has more seat-taking bookings
plus live holds than its capacity. Never create a `Booking` or `SeatHold`
anywhere else.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models


class Service(models.Model):
    class Kind(models.TextChoices):
        SESSION = "session", "1-on-1 session"
        WORKSHOP = "workshop", "Workshop"
        COURSE = "course", "Course"
        PACKAGE = "package", "Package"
        BUNDLE = "bundle", "Bundle"

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, db_index=True)
    # 1-on-1 sessions only: how long one booked slot lasts.
    duration_minutes = models.PositiveIntegerField(null=True, blank=True)
    price = models.PositiveBigIntegerField(help_text="In the currency's minor unit.")
    currency = models.CharField(max_length=3, default="usd")
    # The same service priced in credits; blank when it cannot be bought with credits.
    credit_price = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="In credits; blank: not sold for credits."
    )
    active = models.BooleanField(default=True)
    host = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="hosted_services",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(price__gt=0), name="service_price_positive"),
            models.CheckConstraint(
                condition=models.Q(credit_price__isnull=True) | models.Q(credit_price__gt=0),
                name="service_credit_price_positive",
            ),
            models.CheckConstraint(
                condition=~models.Q(kind="session") | models.Q(duration_minutes__gt=0),
                name="service_session_has_duration",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    @property
    def is_collection(self) -> bool:
        return self.kind in (self.Kind.PACKAGE, self.Kind.BUNDLE)


class PackageItem(models.Model):
    """One line of a package or bundle: `quantity` units of another service."""

    package = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="items")
    item_service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="in_packages")
    quantity = models.PositiveSmallIntegerField(default=1)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["package", "item_service"], name="package_item_unique"),
            models.CheckConstraint(condition=models.Q(quantity__gt=0), name="package_item_qty"),
            models.CheckConstraint(
                condition=~models.Q(package=models.F("item_service")),
                name="package_item_not_itself",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.item_service}"


class AvailabilityWindow(models.Model):
    """When the host of a 1-on-1 service can be booked: slots must lie inside one."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="availability")
    start = models.DateTimeField()
    end = models.DateTimeField()

    class Meta:
        ordering = ["start", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(end__gt=models.F("start")), name="availability_ends_after_start"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.service}: {self.start:%Y-%m-%d %H:%M}–{self.end:%H:%M}"


class ServiceSession(models.Model):
    """A scheduled meeting of a workshop or course, with a seat limit."""

    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="sessions")
    start = models.DateTimeField(db_index=True)
    end = models.DateTimeField()
    capacity = models.PositiveIntegerField()

    class Meta:
        ordering = ["start", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(end__gt=models.F("start")), name="session_ends_after_start"
            ),
            models.CheckConstraint(
                condition=models.Q(capacity__gt=0), name="session_capacity_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.service.name} @ {self.start:%Y-%m-%d %H:%M}"


class Booking(models.Model):
    """A place bought by a user: a seat in a session, a 1-on-1 slot, or a parent of those.

    A course, package or bundle is a parent booking (no session, no time) with
    child bookings; a package's 1-on-1 unit may be a child with no time yet,
    scheduled later by its owner.
    """

    class Status(models.TextChoices):
        CONFIRMED = "confirmed", "Confirmed"
        CANCELED = "canceled", "Canceled"
        PARTIALLY_REFUNDED = "partially_refunded", "Partially refunded"
        COMPLETED = "completed", "Completed"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="bookings"
    )
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="bookings")
    session = models.ForeignKey(
        ServiceSession,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="bookings",
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.CONFIRMED, db_index=True
    )
    start = models.DateTimeField(null=True, blank=True)
    end = models.DateTimeField(null=True, blank=True)
    # What the buyer asked for this booking (a start time, a session id).
    scheduling_data = models.JSONField(default=dict, blank=True)
    # The billing order it came from; a plain id, since bookings knows nothing of billing.
    order_id = models.PositiveBigIntegerField(db_index=True)
    # Set while the payment of its order is disputed: the booking keeps its seat
    # but cannot be scheduled; cleared when the dispute is won, kept (as the
    # reason) when a lost dispute cancels it.
    disputed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["service", "start"], name="booking_service_start_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(start__isnull=True)
                | models.Q(end__isnull=False, end__gt=models.F("start")),
                name="booking_ends_after_start",
            ),
        ]

    def __str__(self) -> str:
        return f"Booking {self.pk} of {self.service.name} ({self.status})"

    @property
    def is_scheduled(self) -> bool:
        return self.session_id is not None or self.start is not None


# A booking in one of these statuses occupies its seat or slot.
SEAT_TAKING_STATUSES = (
    Booking.Status.CONFIRMED,
    Booking.Status.PARTIALLY_REFUNDED,
    Booking.Status.COMPLETED,
)


class SeatHoldQuerySet(models.QuerySet):
    def live(self, now: datetime) -> SeatHoldQuerySet:
        """Holds that still occupy their seat or slot at `now`."""
        return self.filter(status=SeatHold.Status.ACTIVE, expires_at__gt=now)


class SeatHold(models.Model):
    """A seat (or a 1-on-1 slot) kept for an unpaid order until it is paid or the hold ends.

    A seat hold names a `session`; a slot hold names its `service` and `start`/`end`.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        RELEASED = "released", "Released"
        CONVERTED = "converted", "Converted to a booking"
        EXPIRED = "expired", "Expired"

    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="holds")
    session = models.ForeignKey(
        ServiceSession, null=True, blank=True, on_delete=models.PROTECT, related_name="holds"
    )
    start = models.DateTimeField(null=True, blank=True)
    end = models.DateTimeField(null=True, blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    order_id = models.PositiveBigIntegerField(db_index=True)
    quantity = models.PositiveIntegerField(default=1)
    expires_at = models.DateTimeField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SeatHoldQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(
                fields=["expires_at"],
                condition=models.Q(status="active"),
                name="seat_hold_active_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(session__isnull=False)
                | models.Q(start__isnull=False, end__isnull=False, end__gt=models.F("start")),
                name="seat_hold_session_or_slot",
            ),
            models.CheckConstraint(condition=models.Q(quantity__gt=0), name="seat_hold_qty"),
        ]

    def __str__(self) -> str:
        return f"Hold {self.pk} for order {self.order_id} ({self.status})"
