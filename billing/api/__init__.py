"""Billing's API: the catalog, and under /payments orders, cards, subscriptions, the webhook."""

from ninja import Router

from billing.api import cards, catalog, orders, subscriptions, webhooks

catalog_router = catalog.router
payments_router = Router()
payments_router.add_router("", orders.router)
payments_router.add_router("", cards.router)
payments_router.add_router("", subscriptions.router)
payments_router.add_router("", webhooks.router)

__all__ = ["catalog_router", "payments_router"]
