"""Stripe's customer portal."""

from __future__ import annotations

from stripe.params.billing_portal import SessionCreateParams as PortalSessionCreateParams

from billing.gateway._client import (
    _client,
    _stripe,
)


def billing_portal_session_create(*, customer_id: str, return_url: str) -> str:
    """The URL of Stripe's customer portal for this customer."""
    with _stripe("open the customer portal", feature="The Stripe customer portal"):
        params: PortalSessionCreateParams = {"customer": customer_id, "return_url": return_url}
        session = _client().v1.billing_portal.sessions.create(params=params)
    return session.url
