"""Staff views of orders, payments, refunds, disputes, Stripe events, customers, cards and
subscriptions.

The rule: money records are read-only here. They change only through the
services (a refund through `refund_create`, a replay through `event_replay`), so
the admin cannot break an invariant; the actions that call them are offered only
to staff holding the matching permission.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from billing import sql
from billing.models import (
    CardSetup,
    Dispute,
    Fulfilment,
    Order,
    Payment,
    Refund,
    SavedPaymentMethod,
    StripeCustomer,
    StripeEvent,
    Subscription,
)
from billing.services.events import event_replay
from billing.services.refunds import refund_create
from kernel.errors import DomainError
from kernel.money import format_minor


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


class DisputeInline(admin.TabularInline):
    model = Dispute
    fk_name = "order"
    extra = 0
    can_delete = False
    fields = [
        "dispute_link",
        "amount",
        "reason",
        "status",
        "outcome",
        "evidence_due_by",
        "opened_at",
        "closed_at",
        "refund",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="Dispute")
    def dispute_link(self, dispute: Dispute) -> str:
        url = reverse("admin:billing_dispute_change", args=[dispute.pk])
        return format_html('<a href="{}">{}</a>', url, dispute.stripe_dispute_id)


class FulfilmentInline(admin.StackedInline):
    model = Fulfilment
    extra = 0
    can_delete = False
    readonly_fields = ["result", "created_at"]

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


def events_for_order(order: Order) -> QuerySet[StripeEvent]:
    """The Stripe events about this order's objects: its PaymentIntents, charges,
    refunds, Checkout Session and invoice."""
    ids = set(order.payments.values_list("stripe_payment_intent_id", flat=True))
    ids |= set(
        order.payments.exclude(stripe_charge_id="").values_list("stripe_charge_id", flat=True)
    )
    ids |= set(
        order.refunds.filter(stripe_refund_id__isnull=False).values_list(
            "stripe_refund_id", flat=True
        )
    )
    ids |= {i for i in (order.stripe_checkout_session_id, order.stripe_invoice_id) if i}
    ids |= set(order.disputes.values_list("stripe_dispute_id", flat=True))
    return StripeEvent.objects.filter(object_id__in=ids).order_by("received_at", "id")


class RefundForm(forms.Form):
    amount = forms.CharField(
        required=False,
        max_length=32,
        help_text='In major units, e.g. "5.00". Leave empty to refund all that is left.',
    )
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3}))


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "user",
        "purchase_type",
        "order_type",
        "status",
        "amount_shown",
        "created_at",
    ]
    list_filter = [
        "status",
        "order_type",
        "purchase_type",
        "currency",
        "payment_type",
        "created_at",
    ]
    search_fields = [
        "=id",
        "user__email",
        "user__username",
        "=payments__stripe_payment_intent_id",
        "=payments__stripe_charge_id",
        "=stripe_checkout_session_id",
        "=stripe_invoice_id",
        "=disputes__stripe_dispute_id",
    ]
    date_hierarchy = "created_at"
    list_select_related = ["user"]
    readonly_fields = ["stripe_events"]
    inlines = [PaymentInline, RefundInline, DisputeInline, FulfilmentInline]
    actions = ["refund_in_full", "refund_with_form"]

    def has_refund_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.add_refund")

    def change_view(self, request: HttpRequest, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_refund": self.has_refund_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    def _refund(self, request: HttpRequest, order_id: int, amount: str | None, reason: str) -> bool:
        try:
            refund = refund_create(
                order_id=order_id, amount=amount, reason=reason, initiated_by_id=request.user.pk
            )
        except DomainError as exc:
            self.message_user(request, f"Order {order_id}: {exc.message}", messages.ERROR)
            return False
        shown = format_minor(refund.amount, refund.currency)
        self.message_user(
            request, f"Order {order_id}: refund of {shown} {refund.status}.", messages.SUCCESS
        )
        return True

    @admin.action(description="Refund the selected orders in full", permissions=["refund"])
    def refund_in_full(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        for order_id in queryset.values_list("pk", flat=True):
            self._refund(request, order_id, None, "Refunded in full from the admin")

    @admin.action(
        description="Refund the selected orders… (amount and reason)", permissions=["refund"]
    )
    def refund_with_form(self, request: HttpRequest, queryset: QuerySet[Order]):
        """An intermediate page asks for the amount and the reason, then refunds."""
        orders = list(queryset.select_related("user"))
        form = RefundForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            amount = form.cleaned_data["amount"].strip() or None
            if amount is not None and len(orders) != 1:
                form.add_error("amount", "A partial amount is for one order at a time.")
            else:
                for order in orders:
                    with sql.refund_form_lock(order_id=order.pk):
                        # The form carries how many refunds each order had when it was
                        # shown: a resubmitted or double-clicked form refunds once.
                        seen = request.POST.get(f"refunds_seen_{order.pk}")
                        if seen != str(order.refunds.count()):
                            self.message_user(
                                request,
                                f"Order {order.pk} was refunded since this form was shown; "
                                "nothing more was refunded. Check the order and start again.",
                                messages.WARNING,
                            )
                            continue
                        self._refund(request, order.pk, amount, form.cleaned_data["reason"])
                return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Refund orders",
            "opts": self.model._meta,
            "orders": [(o, format_minor(o.amount, o.currency), o.refunds.count()) for o in orders],
            "form": form,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "action": "refund_with_form",
        }
        return TemplateResponse(request, "admin/billing/order/refund_form.html", context)

    @admin.display(description="Amount", ordering="amount")
    def amount_shown(self, order: Order) -> str:
        return format_minor(order.amount, order.currency)

    @admin.display(description="Stripe events")
    def stripe_events(self, order: Order) -> str:
        events = list(events_for_order(order))
        if not events:
            return "—"
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:billing_stripeevent_change", args=[e.pk]),
                    e.stripe_id,
                    e.type,
                    e.status,
                    e.attempts,
                    e.received_at.strftime("%Y-%m-%d %H:%M:%S"),
                )
                for e in events
            ),
        )
        return format_html(
            "<table><thead><tr><th>Event</th><th>Type</th><th>Status</th><th>Attempts</th>"
            "<th>Received</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = ["stripe_payment_intent_id", "order", "status", "amount_shown", "created_at"]
    list_filter = ["status", "currency"]
    search_fields = ["=stripe_payment_intent_id", "=stripe_charge_id", "=order__id"]
    list_select_related = ["order"]

    @admin.display(description="Amount", ordering="amount")
    def amount_shown(self, payment: Payment) -> str:
        return format_minor(payment.amount, payment.currency)


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "order",
        "stripe_refund_id",
        "amount_shown",
        "status",
        "source",
        "initiated_by",
        "applied_at",
    ]
    list_filter = ["status", "source", "currency"]
    search_fields = ["=stripe_refund_id", "=order__id"]
    list_select_related = ["order", "initiated_by"]

    @admin.display(description="Amount", ordering="amount")
    def amount_shown(self, refund: Refund) -> str:
        return format_minor(refund.amount, refund.currency)


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    """Disputes as Stripe reported them; evidence is answered in Stripe's dashboard."""

    list_display = [
        "stripe_dispute_id",
        "order",
        "amount_shown",
        "reason",
        "status",
        "outcome",
        "evidence_due_by",
        "opened_at",
        "closed_at",
    ]
    list_filter = ["outcome", "status", "reason", "currency"]
    search_fields = [
        "=stripe_dispute_id",
        "=stripe_charge_id",
        "=stripe_payment_intent_id",
        "=order__id",
    ]
    list_select_related = ["order"]
    readonly_fields = [
        "stripe_dispute_id",
        "order",
        "payment",
        "stripe_charge_id",
        "stripe_payment_intent_id",
        "amount",
        "currency",
        "reason",
        "status",
        "outcome",
        "evidence_due_by",
        "opened_at",
        "closed_at",
        "stripe_event_at",
        "frozen_at",
        "released_at",
        "reversed_at",
        "refund",
        "result",
        "created_at",
        "updated_at",
    ]

    @admin.display(description="Amount", ordering="amount")
    def amount_shown(self, dispute: Dispute) -> str:
        try:
            return format_minor(dispute.amount, dispute.currency)
        except Exception:  # another system's dispute, in a currency we do not sell in
            return f"{dispute.amount} {dispute.currency.upper()} (minor units)"


@admin.register(Fulfilment)
class FulfilmentAdmin(ReadOnlyAdmin):
    list_display = ["order", "created_at"]
    search_fields = ["=order__id"]


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = [
        "stripe_id",
        "type",
        "status",
        "attempts",
        "received_at",
        "processed_at",
        "error_summary",
    ]
    list_filter = ["status", "type", "livemode"]
    search_fields = ["=stripe_id", "=object_id"]
    fields = [
        "stripe_id",
        "type",
        "status",
        "attempts",
        "object_id",
        "api_version",
        "livemode",
        "stripe_created",
        "received_at",
        "processed_at",
        "next_attempt_at",
        "lease_expires_at",
        "last_error_shown",
        "payload_shown",
    ]
    readonly_fields = ["last_error_shown", "payload_shown"]
    actions = ["replay"]

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.change_stripeevent")

    def changelist_view(self, request: HttpRequest, extra_context=None):
        failed = StripeEvent.objects.filter(status=StripeEvent.Status.FAILED)
        extra_context = {
            **(extra_context or {}),
            "can_replay": self.has_replay_permission(request),
            "failed_count": failed.count(),
            "any_failed_id": failed.values_list("pk", flat=True).first(),
        }
        return super().changelist_view(request, extra_context)

    def change_view(self, request: HttpRequest, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_replay": self.has_replay_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(description="Replay the selected events", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[StripeEvent]) -> None:
        count = 0
        for event in queryset.exclude(status=StripeEvent.Status.PROCESSING).only("pk", "stripe_id"):
            before = StripeEvent.objects.values_list("status", "attempts").get(pk=event.pk)
            event_replay(event_id=event.pk)
            self.log_change(
                request, event, f"Replayed (was {before[0]} after {before[1]} attempts)."
            )
            count += 1
        self.message_user(request, f"{count} event(s) queued again.", messages.SUCCESS)

    @admin.display(description="Error")
    def error_summary(self, event: StripeEvent) -> str:
        lines = [line for line in event.last_error.strip().splitlines() if line.strip()]
        return lines[-1][:120] if lines else ""

    @admin.display(description="Last error and traceback")
    def last_error_shown(self, event: StripeEvent) -> str:
        if not event.last_error:
            return "—"
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', event.last_error)

    @admin.display(description="Payload")
    def payload_shown(self, event: StripeEvent) -> str:
        return format_html(
            '<pre style="white-space: pre-wrap">{}</pre>',
            json.dumps(event.payload, indent=2, sort_keys=True),
        )


@admin.register(StripeCustomer)
class StripeCustomerAdmin(ReadOnlyAdmin):
    list_display = ["stripe_customer_id", "user", "created_at"]
    search_fields = ["=stripe_customer_id", "user__username", "user__email"]
    list_select_related = ["user"]


@admin.register(SavedPaymentMethod)
class SavedPaymentMethodAdmin(ReadOnlyAdmin):
    list_display = ["user", "card_brand", "last4", "expires", "is_default", "created_at"]
    list_filter = ["card_brand", "is_default"]
    search_fields = ["=stripe_payment_method_id", "user__username", "user__email", "=last4"]
    list_select_related = ["user"]

    @admin.display(description="Expires")
    def expires(self, card: SavedPaymentMethod) -> str:
        if not card.exp_month or not card.exp_year:
            return ""
        return f"{card.exp_month:02d}/{card.exp_year}"


@admin.register(CardSetup)
class CardSetupAdmin(ReadOnlyAdmin):
    list_display = ["stripe_setup_intent_id", "user", "status", "created_at", "completed_at"]
    list_filter = ["status"]
    search_fields = ["=stripe_setup_intent_id", "user__username"]
    list_select_related = ["user"]


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "user",
        "plan_name",
        "status",
        "current_period_end",
        "cancel_at_period_end",
        "created_at",
    ]
    list_filter = ["status", "purchase_type", "cancel_at_period_end"]
    search_fields = [
        "=id",
        "=stripe_subscription_id",
        "user__username",
        "user__email",
        "plan_name",
    ]
    list_select_related = ["user"]
