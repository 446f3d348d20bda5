"""Saved payment methods: SetupIntents to add one, and the methods a customer holds."""

from __future__ import annotations

from stripe.params import (
    PaymentMethodListParams,
    SetupIntentCreateParams,
)

from billing.gateway._client import (
    _allowed_payment_method_types,
    _client,
    _scoped,
    _stripe,
)
from billing.stripe_objects import (
    PaymentMethodData,
    SetupIntentData,
    payment_method_from_payload,
    setup_intent_from_payload,
)


def setup_intent_create(
    *, customer_id: str, metadata: dict[str, str], idempotency_key: str
) -> SetupIntentData:
    """A SetupIntent for saving a payment method to be charged later, with or without the
    user present: the methods the account enables (or STRIPE_PAYMENT_METHOD_TYPES) that
    need no redirect, as payments are confirmed by the server."""
    params: SetupIntentCreateParams = {
        "customer": customer_id,
        "usage": "off_session",
        "metadata": metadata,
        "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
    }
    if allowed := _allowed_payment_method_types():
        params["allowed_payment_method_types"] = allowed
    with _stripe("start adding a card"):
        intent = _client().v1.setup_intents.create(
            params=params, options={"idempotency_key": _scoped(idempotency_key)}
        )
    return setup_intent_from_payload(intent.to_dict())


def setup_intent_retrieve(*, setup_intent_id: str) -> SetupIntentData:
    with _stripe("read the card setup"):
        return setup_intent_from_payload(
            _client().v1.setup_intents.retrieve(setup_intent_id).to_dict()
        )


def payment_method_retrieve(*, payment_method_id: str) -> PaymentMethodData:
    with _stripe("read the card"):
        return payment_method_from_payload(
            _client().v1.payment_methods.retrieve(payment_method_id).to_dict()
        )


def payment_method_attach(*, payment_method_id: str, customer_id: str) -> PaymentMethodData:
    with _stripe("save the card", names_payment_method=True):
        method = _client().v1.payment_methods.attach(
            payment_method_id, params={"customer": customer_id}
        )
    return payment_method_from_payload(method.to_dict())


def payment_method_detach(*, payment_method_id: str) -> None:
    with _stripe("remove the card"):
        _client().v1.payment_methods.detach(payment_method_id)


def payment_methods_list(*, customer_id: str) -> list[PaymentMethodData]:
    with _stripe("list the cards"):
        params: PaymentMethodListParams = {"customer": customer_id, "type": "card", "limit": 100}
        page = _client().v1.payment_methods.list(params=params)
        return [payment_method_from_payload(m.to_dict()) for m in page.auto_paging_iter()]
