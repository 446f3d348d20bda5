"""Staff view of gift cards. View-only: a card changes through `services` alone."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from tollgate_gift_cards.models import GiftCard


@admin.register(GiftCard)
class GiftCardAdmin(admin.ModelAdmin):
    list_display = ("id", "order_id", "purchaser", "face_value", "value", "currency", "status")
    list_filter = ("status",)
    list_select_related = ("purchaser",)
    search_fields = ("=code", "purchaser__username")
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
