"""Subscriptions and their invoices."""

from __future__ import annotations

from stripe.params import (
    InvoiceListParams,
    SubscriptionCreateParams,
    SubscriptionCreateParamsItem,
)

from billing.gateway._client import (
    _client,
    _scoped,
    _stripe,
)
from billing.stripe_objects import (
    InvoiceData,
    SubscriptionData,
    invoice_from_payload,
    subscription_from_payload,
)


def subscription_create(
    *,
    customer_id: str,
    price_id: str,
    metadata: dict[str, str],
    idempotency_key: str,
    default_payment_method: str | None = None,
) -> SubscriptionData:
    """Subscribe the customer to a price, charging the card now and every cycle: the given
    payment method, else the customer's default. A first payment that fails (or needs the
    customer) fails the request, so no subscription is left incomplete behind it."""
    item: SubscriptionCreateParamsItem = {"price": price_id}
    params: SubscriptionCreateParams = {
        "customer": customer_id,
        "items": [item],
        "metadata": metadata,
        "payment_behavior": "error_if_incomplete",
    }
    if default_payment_method:
        params["default_payment_method"] = default_payment_method
    with _stripe("start the subscription", names_payment_method=True):
        subscription = _client().v1.subscriptions.create(
            params=params, options={"idempotency_key": _scoped(idempotency_key)}
        )
    return subscription_from_payload(subscription.to_dict())


def subscription_retrieve(*, subscription_id: str) -> SubscriptionData:
    with _stripe("read the subscription"):
        return subscription_from_payload(
            _client().v1.subscriptions.retrieve(subscription_id).to_dict()
        )


def subscription_cancel_at_period_end(*, subscription_id: str) -> SubscriptionData:
    with _stripe("cancel the subscription"):
        subscription = _client().v1.subscriptions.update(
            subscription_id, params={"cancel_at_period_end": True}
        )
    return subscription_from_payload(subscription.to_dict())


def subscription_cancel_now(*, subscription_id: str) -> SubscriptionData:
    """End a subscription at once (no further invoices); used to undo one we cannot keep."""
    with _stripe("cancel the subscription"):
        subscription = _client().v1.subscriptions.cancel(subscription_id)
    return subscription_from_payload(subscription.to_dict())


def subscriptions_for_customer(*, customer_id: str) -> list[SubscriptionData]:
    """The customer's subscriptions that are not over (Stripe leaves out canceled ones)."""
    with _stripe("list the subscriptions"):
        page = _client().v1.subscriptions.list(params={"customer": customer_id, "limit": 100})
        return [subscription_from_payload(s.to_dict()) for s in page.auto_paging_iter()]


def invoices_for_subscription(*, subscription_id: str) -> list[InvoiceData]:
    with _stripe("list the invoices"):
        params: InvoiceListParams = {"subscription": subscription_id, "limit": 10}
        page = _client().v1.invoices.list(params=params)
        return [invoice_from_payload(i.to_dict()) for i in page.data]
