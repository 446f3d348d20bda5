"""Stripe customers: one per user who pays by card."""

from __future__ import annotations

import stripe
from stripe.params import (
    CustomerCreateParams,
)

from billing.gateway._client import (
    _client,
    _scoped,
    _stripe,
)
from billing.stripe_objects import (
    CustomerData,
    customer_from_payload,
)


def customer_create(
    *, email: str, name: str, metadata: dict[str, str], idempotency_key: str
) -> CustomerData:
    params: CustomerCreateParams = (
        {"email": email, "name": name, "metadata": metadata} if email else {"metadata": metadata}
    )
    with _stripe("create the customer"):
        customer = _client().v1.customers.create(
            params=params, options={"idempotency_key": _scoped(idempotency_key)}
        )
    return customer_from_payload(customer.to_dict())


def customer_retrieve(*, customer_id: str) -> CustomerData:
    with _stripe("read the customer"):
        return customer_from_payload(_client().v1.customers.retrieve(customer_id).to_dict())


def customer_delete(*, customer_id: str) -> bool:
    """Delete a customer at Stripe: its cards go with it and its subscriptions end.

    Answers False when Stripe has no such customer (deleted already), so a
    retried erasure is a no-op here.
    """
    with _stripe("delete the customer"):
        try:
            _client().v1.customers.delete(customer_id)
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return False
            raise
    return True


def customer_default_payment_method_set(*, customer_id: str, payment_method_id: str) -> None:
    with _stripe("set the default card"):
        _client().v1.customers.update(
            customer_id,
            params={"invoice_settings": {"default_payment_method": payment_method_id}},
        )
