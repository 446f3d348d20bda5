"""Staff views of services, sessions, bookings and seat holds.

The rule: the admin edits catalogue data (services, their sessions, windows and
package contents) but never takes a seat: bookings and holds cannot be added or
edited here, only cancelled through `bookings.services` (which frees seats; the
money is refunded from the order). Holds are read-only.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from bookings.models import (
    AvailabilityWindow,
    Booking,
    PackageItem,
    SeatHold,
    Service,
    ServiceSession,
)
from bookings.selectors import sessions_with_seats
from bookings.services.bookings import bookings_cancel


class ServiceSessionInline(admin.TabularInline):
    model = ServiceSession
    extra = 0
    fields = ("start", "end", "capacity")


class AvailabilityWindowInline(admin.TabularInline):
    model = AvailabilityWindow
    extra = 0


class PackageItemInline(admin.TabularInline):
    model = PackageItem
    fk_name = "package"
    extra = 0
    autocomplete_fields = ("item_service",)


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "kind",
        "price",
        "currency",
        "credit_price",
        "duration_minutes",
        "host",
        "active",
    )
    list_filter = ("kind", "active", "currency")
    list_editable = ("active",)
    search_fields = ("name", "description")
    inlines = (ServiceSessionInline, AvailabilityWindowInline, PackageItemInline)


@admin.register(ServiceSession)
class ServiceSessionAdmin(admin.ModelAdmin):
    list_display = ("service", "start", "end", "capacity", "seats_booked", "seats_held", "free")
    list_filter = ("service__kind",)
    list_select_related = ("service",)
    search_fields = ("service__name",)
    date_hierarchy = "start"

    def get_queryset(self, request: HttpRequest) -> QuerySet[ServiceSession]:
        return sessions_with_seats(super().get_queryset(request), now=timezone.now())

    @admin.display(description="booked", ordering="seats_booked")
    def seats_booked(self, session: ServiceSession) -> int:
        return session.seats_booked

    @admin.display(description="held", ordering="seats_held")
    def seats_held(self, session: ServiceSession) -> int:
        return session.seats_held

    @admin.display(description="free seats", ordering="free_seats")
    def free(self, session: ServiceSession) -> int:
        return session.free_seats


@admin.register(Booking)
class BookingAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "user",
        "service",
        "session",
        "status",
        "start",
        "order_id",
        "parent",
        "disputed_at",
    )
    list_filter = ("status", "service__kind")
    list_select_related = ("user", "service", "session__service", "parent__service")
    search_fields = ("user__username", "user__email", "service__name", "=order_id")
    readonly_fields = (
        "user",
        "service",
        "session",
        "parent",
        "status",
        "start",
        "end",
        "scheduling_data",
        "order_id",
        "disputed_at",
        "created_at",
        "updated_at",
    )
    actions = ("cancel_bookings",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.action(
        description="Cancel selected bookings (and their children); frees seats",
        permissions=["change"],
    )
    def cancel_bookings(self, request: HttpRequest, queryset: QuerySet[Booking]) -> None:
        count = bookings_cancel(booking_ids=list(queryset.values_list("pk", flat=True)))
        for booking in queryset.select_related("service"):
            self.log_change(request, booking, "Cancelled from the admin.")
        self.message_user(
            request,
            f"Cancelled {count} bookings. Refund their orders from billing if money is owed.",
            messages.SUCCESS,
        )


@admin.register(SeatHold)
class SeatHoldAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "order_id",
        "user",
        "service",
        "session",
        "start",
        "quantity",
        "expires_at",
        "status",
    )
    list_filter = ("status",)
    list_select_related = ("user", "service", "session__service")
    search_fields = ("=order_id", "user__username")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
