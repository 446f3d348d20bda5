"""Staff views of the credit ledger.

The rule: the admin never writes a ledger entry or a balance. Entries and
accounts are view-only here (a correction is a new entry, made through
`credits.services`, e.g. the staff grant endpoint); only credit packs, which are
catalogue data, are editable.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from credits.models import CreditAccount, CreditPack, CreditTransaction


class ViewOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(CreditAccount)
class CreditAccountAdmin(ViewOnlyAdmin):
    list_display = ("id", "user", "balance", "updated_at")
    list_select_related = ("user",)
    search_fields = ("user__username", "user__email")
    readonly_fields = ("user", "balance", "updated_at")


@admin.register(CreditTransaction)
class CreditTransactionAdmin(ViewOnlyAdmin):
    list_display = (
        "id",
        "created_at",
        "account",
        "amount",
        "kind",
        "reference",
        "balance_after",
        "created_by",
    )
    list_filter = ("kind",)
    list_select_related = ("account__user", "created_by")
    search_fields = ("reference", "account__user__username", "memo")
    date_hierarchy = "created_at"
    readonly_fields = (
        "account",
        "amount",
        "kind",
        "reference",
        "balance_after",
        "memo",
        "created_by",
        "created_at",
    )


@admin.register(CreditPack)
class CreditPackAdmin(admin.ModelAdmin):
    list_display = ("name", "credits", "price", "currency", "active", "sort_order")
    list_editable = ("active", "sort_order")
    list_filter = ("active", "currency")
