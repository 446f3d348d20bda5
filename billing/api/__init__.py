"""Billing's API: the catalog, and under /payments orders, saved cards and the webhook."""

from ninja import Router

from billing.api import cards, catalog, orders, webhooks

catalog_router = catalog.router
payments_router = Router()
payments_router.add_router("", orders.router)
payments_router.add_router("", cards.router)
payments_router.add_router("", webhooks.router)

__all__ = ["catalog_router", "payments_router"]
