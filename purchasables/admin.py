"""Subscription plans in the admin: what the catalog offers and what each cycle grants."""

from __future__ import annotations

from django.contrib import admin

from purchasables.models import Plan


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "stripe_price_id",
        "amount",
        "currency",
        "interval",
        "interval_count",
        "credits_per_cycle",
        "active",
    ]
    list_filter = ["active", "interval", "currency"]
    search_fields = ["name", "stripe_price_id"]
