"""Stripe Checkout: a hosted page that pays one order or starts a subscription."""

from __future__ import annotations

import stripe
from stripe.params.checkout import SessionCreateParams as CheckoutSessionCreateParams
from stripe.params.checkout import SessionCreateParamsLineItem

from billing.gateway._client import (
    _allowed_payment_method_types,
    _client,
    _scoped,
    _stripe,
)
from billing.stripe_objects import (
    CheckoutSessionData,
    checkout_session_from_payload,
)


def _line_item(
    *, amount: int, currency: str, name: str, recurring_price: str | None
) -> SessionCreateParamsLineItem:
    if recurring_price:
        return {"price": recurring_price, "quantity": 1}
    return {
        "price_data": {
            "currency": currency,
            "unit_amount": amount,
            "product_data": {"name": name[:250]},
        },
        "quantity": 1,
    }


def checkout_session_create(
    *,
    mode: str,
    amount: int,
    currency: str,
    name: str,
    metadata: dict[str, str],
    client_reference_id: str,
    success_url: str,
    cancel_url: str,
    idempotency_key: str,
    customer_id: str | None = None,
    recurring_price: str | None = None,
) -> CheckoutSessionData:
    """A Checkout Session for one order (`mode=payment`) or a subscription.

    The metadata goes on the session and on the object it makes
    (`payment_intent_data` or `subscription_data`): Stripe does not copy it.
    """
    params: CheckoutSessionCreateParams = {
        "mode": mode,
        "line_items": [
            _line_item(amount=amount, currency=currency, name=name, recurring_price=recurring_price)
        ],
        "metadata": metadata,
        "client_reference_id": client_reference_id,
        "success_url": success_url,
        "cancel_url": cancel_url,
    }
    if mode == "subscription":
        params["subscription_data"] = {"metadata": metadata}
    else:
        params["payment_intent_data"] = {"metadata": metadata}
    if customer_id:
        params["customer"] = customer_id
    if allowed := _allowed_payment_method_types():
        params["allowed_payment_method_types"] = allowed
    with _stripe("start checkout", feature="Stripe Checkout"):
        session = _client().v1.checkout.sessions.create(
            params=params, options={"idempotency_key": _scoped(idempotency_key)}
        )
    return checkout_session_from_payload(session.to_dict())


def checkout_session_expire(*, session_id: str, idempotency_key: str) -> CheckoutSessionData:
    """Expire an open Checkout Session so that it can no longer be paid; answers the
    session as it is afterwards.

    Stripe expires only an open session: for one that has completed (or expired)
    already it answers 400, and the session is read back instead, so the caller
    sees `status` `complete` and records its payment.
    """
    client = _client()
    with _stripe("expire the checkout", feature="Stripe Checkout"):
        try:
            session = client.v1.checkout.sessions.expire(
                session_id, options={"idempotency_key": _scoped(idempotency_key)}
            )
        except stripe.InvalidRequestError as exc:
            if exc.http_status != 400:
                raise
            session = client.v1.checkout.sessions.retrieve(session_id)
    return checkout_session_from_payload(session.to_dict())
