"""The platform's admin: API tokens, the audit log, users (with erasure), and the order
page with what other apps hold about an order.

The rules: the audit log is read-only here like everywhere; erasing a user goes
through `backoffice.data_rights.user_erase` and needs
`platform_core.erase_user`. Views that join several apps live here, in the
back office, because billing may not import credits or bookings.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from backoffice.data_rights import user_erase
from billing.admin import OrderAdmin
from billing.models import Order
from bookings.selectors import bookings_for_order
from credits.models import CreditTransaction
from kernel.admin_cells import clipped, short_datetime
from kernel.errors import DomainError
from platform_core.models import ApiToken, AuditEntry

User = get_user_model()


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["prefix", "user__username", "user__email"]
    readonly_fields = ["user", "digest", "prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tokens are issued through the API, shown once

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset.filter(revoked_at__isnull=True):
            ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
            self.log_change(request, token, "Revoked.")


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    # Fits 1280 pixels beside the admin's side bars: long values are cut, whole on hover.
    list_display = ["created_short", "actor_short", "action", "object_short", "reason_short"]
    list_filter = ["action", "object_type"]
    search_fields = ["=object_id", "object_repr", "reason", "actor__username"]
    date_hierarchy = "created_at"
    list_select_related = ["actor"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="When", ordering="created_at")
    def created_short(self, entry: AuditEntry) -> str:
        return short_datetime(entry.created_at)

    @admin.display(description="Actor", ordering="actor__username")
    def actor_short(self, entry: AuditEntry) -> str:
        return clipped(entry.actor or "system")

    @admin.display(description="Object", ordering="object_type")
    def object_short(self, entry: AuditEntry) -> str:
        return clipped(f"{entry.object_type} {entry.object_id}".strip())

    @admin.display(description="Reason")
    def reason_short(self, entry: AuditEntry) -> str:
        return clipped(entry.reason, wide=True)


# --- the order page, with the ledger entries and bookings it caused -----------------

admin.site.unregister(Order)


def _table(headers: list[str], rows: list[tuple]) -> str:
    if not rows:
        return "—"
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join(
        "", "<tr>" + "<td>{}</td>" * len(headers) + "</tr>", (tuple(r) for r in rows)
    )
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)


@admin.register(Order)
class PlatformOrderAdmin(OrderAdmin):
    readonly_fields = [*OrderAdmin.readonly_fields, "ledger_entries", "bookings"]

    @admin.display(description="Ledger entries")
    def ledger_entries(self, order: Order) -> str:
        refund_ids = list(order.refunds.values_list("pk", flat=True))
        references = [f"order-{order.pk}", *(f"refund-{pk}" for pk in refund_ids)]
        entries = CreditTransaction.objects.filter(
            Q(reference__in=references), account__user_id=order.user_id
        ).order_by("id")
        return _table(
            ["Entry", "Amount", "Kind", "Reference", "Balance after", "When"],
            [
                (
                    format_html(
                        '<a href="{}">{}</a>',
                        reverse("admin:credits_credittransaction_change", args=[e.pk]),
                        e.pk,
                    ),
                    f"{e.amount:+d}",
                    e.kind,
                    e.reference,
                    e.balance_after,
                    e.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                )
                for e in entries
            ],
        )

    @admin.display(description="Bookings")
    def bookings(self, order: Order) -> str:
        return _table(
            ["Booking", "Service", "Status", "Start"],
            [
                (
                    format_html(
                        '<a href="{}">{}</a>',
                        reverse("admin:bookings_booking_change", args=[b.pk]),
                        b.pk,
                    ),
                    b.service.name,
                    b.status,
                    b.start.strftime("%Y-%m-%d %H:%M") if b.start else "unscheduled",
                )
                for b in bookings_for_order(order_id=order.pk).select_related("service")
            ],
        )


# --- users, with erasure ---------------------------------------------------------------

admin.site.unregister(User)


class ErasureForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="The request this answers (ticket, date). Kept in the audit log.",
    )


@admin.register(User)
class PlatformUserAdmin(UserAdmin):
    actions = ["erase_personal_data"]

    def has_erase_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("platform_core.erase_user")

    @admin.action(
        description="Erase personal data of the selected users (keeps financial records)",
        permissions=["erase"],
    )
    def erase_personal_data(self, request: HttpRequest, queryset: QuerySet):
        users = list(queryset.exclude(pk=request.user.pk))
        if len(users) != queryset.count():
            self.message_user(request, "You cannot erase your own account.", messages.WARNING)
        form = ErasureForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            for user in users:
                try:
                    report = user_erase(
                        user_id=user.pk,
                        actor_id=request.user.pk,
                        reason=form.cleaned_data["reason"],
                    )
                except DomainError as exc:
                    self.message_user(
                        request,
                        f"User {user.pk}: {exc.message} Run the erasure again to finish it.",
                        messages.ERROR,
                    )
                    continue
                self.message_user(
                    request,
                    f"User {user.pk} erased: {report.tokens_revoked} tokens revoked, "
                    f"{report.cards_removed} cards removed, Stripe customer "
                    f"{'deleted' if report.customer_deleted else 'absent'}.",
                    messages.SUCCESS,
                )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Erase personal data",
            "opts": self.model._meta,
            "users": users,
            "form": form,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "action": "erase_personal_data",
        }
        return TemplateResponse(request, "ops/erase_confirm.html", context)
