"""Staff views of orders, payments and Stripe events. Money records are read-only here:
they change only through the services, so the admin cannot break an invariant."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from billing.models import Fulfilment, Order, Payment, Refund, StripeEvent
from billing.money import format_minor
from billing.services.events import event_replay
from billing.services.refunds import refund_create
from kernel.errors import DomainError


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class PaymentInline(admin.TabularInline):
    model = Payment
    extra = 0
    can_delete = False
    fields = ["stripe_payment_intent_id", "status", "amount", "amount_received", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class RefundInline(admin.TabularInline):
    model = Refund
    extra = 0
    can_delete = False
    fields = ["stripe_refund_id", "amount", "status", "source", "reason", "applied_at"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class FulfilmentInline(admin.StackedInline):
    model = Fulfilment
    extra = 0
    can_delete = False
    readonly_fields = ["result", "created_at"]

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ["id", "user", "purchase_type", "status", "amount_shown", "created_at"]
    list_filter = ["status", "order_type", "purchase_type", "currency", "created_at"]
    search_fields = ["=id", "user__email", "user__username", "=payments__stripe_payment_intent_id"]
    date_hierarchy = "created_at"
    list_select_related = ["user"]
    inlines = [PaymentInline, RefundInline, FulfilmentInline]
    actions = ["refund_in_full"]

    def has_refund_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.add_refund")

    @admin.action(description="Refund the selected orders in full", permissions=["refund"])
    def refund_in_full(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        for order_id in queryset.values_list("pk", flat=True):
            try:
                refund = refund_create(
                    order_id=order_id,
                    amount=None,
                    reason="Refunded in full from the admin",
                    initiated_by_id=request.user.pk,
                )
            except DomainError as exc:
                self.message_user(request, f"Order {order_id}: {exc.message}", messages.ERROR)
            else:
                self.message_user(
                    request, f"Order {order_id}: refund {refund.status}.", messages.SUCCESS
                )

    @admin.display(description="Amount", ordering="amount")
    def amount_shown(self, order: Order) -> str:
        return format_minor(order.amount, order.currency)


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = ["stripe_payment_intent_id", "order", "status", "amount", "currency"]
    list_filter = ["status", "currency"]
    search_fields = ["=stripe_payment_intent_id", "=stripe_charge_id", "=order__id"]


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ["id", "order", "stripe_refund_id", "amount", "status", "source", "applied_at"]
    list_filter = ["status", "source"]
    search_fields = ["=stripe_refund_id", "=order__id"]


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["stripe_id", "type", "status", "attempts", "received_at", "processed_at"]
    list_filter = ["status", "type"]
    search_fields = ["=stripe_id", "=object_id"]
    actions = ["replay"]

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.change_stripeevent")

    @admin.action(description="Replay the selected events", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[StripeEvent]) -> None:
        count = 0
        for event_id in queryset.exclude(status=StripeEvent.Status.PROCESSING).values_list(
            "pk", flat=True
        ):
            event_replay(event_id=event_id)
            count += 1
        self.message_user(request, f"{count} event(s) queued again.", messages.SUCCESS)
