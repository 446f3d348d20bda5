"""PaymentIntents: create (never two for one order), look up, confirm, change, read, cancel."""

from __future__ import annotations

import logging
import time
from typing import Any

import stripe
from django.conf import settings
from stripe.params import (
    PaymentIntentCreateParams,
    PaymentIntentListParams,
    PaymentIntentUpdateParams,
)

from billing.gateway._client import (
    _allowed_payment_method_types,
    _client,
    _maybe_delivered,
    _scoped,
    _stripe,
    _translate,
)
from billing.gateway.errors import (
    PaymentGatewayError,
)
from billing.stripe_objects import (
    PaymentIntentData,
    payment_intent_from_payload,
)

log = logging.getLogger(__name__)


# Seconds of clock difference allowed when looking up what Stripe made since a moment.
LOOKUP_CLOCK_SLACK = 300
# How long after an order's creation its first PaymentIntent can have been made (the
# first request's sends and their timeouts), clock slack included: a look-up on a
# client's retry reads only PaymentIntents made in that window.
LOOKUP_WINDOW = 1200
# At most this many PaymentIntents are read by one look-up (100 per page).
LOOKUP_MAX_PAGES = 20
# The first pause before a create is resent (doubling, at most 2 s).
RESEND_DELAY = 0.25


def payment_intent_create(
    *,
    amount: int,
    currency: str,
    metadata: dict[str, str],
    idempotency_key: str,
    payment_method: str | None = None,
    customer: str | None = None,
    description: str | None = None,
    created_after: int | None = None,
) -> PaymentIntentData:
    """Create an unconfirmed card PaymentIntent (confirm it with `payment_intent_confirm`).

    Never two for one order: when a send may have reached Stripe without its answer
    reaching us (a dropped connection, a timeout, a 5xx), the order's PaymentIntent is
    looked up by its metadata before the request is sent again, instead of trusting
    the idempotency key alone (it expires after 24 hours, and localstripe ignores it).
    `created_after` (a Unix time) says an earlier request may already have made it:
    then the look-up comes first.
    """
    params: PaymentIntentCreateParams = {
        "amount": amount,
        "currency": currency,
        "metadata": metadata,
        # Dynamic payment methods: the account's settings choose them, narrowed by
        # STRIPE_PAYMENT_METHOD_TYPES. The server confirms without a return URL, so
        # only methods that need no redirect.
        "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
    }
    if allowed := _allowed_payment_method_types():
        params["allowed_payment_method_types"] = allowed
    if payment_method:
        params["payment_method"] = payment_method
    if customer:
        params["customer"] = customer
    if description:
        params["description"] = description[:1000]
    wanted: dict[str, Any] = {
        "metadata": metadata,
        "amount": amount,
        "currency": currency,
        "customer": customer,
        # An order paid again has an earlier PaymentIntent that matches all the rest,
        # made minutes before with the card the buyer gave first.
        "payment_method": payment_method,
    }
    window: tuple[int, int | None]
    if created_after is None:  # only a send of this call can have made it
        window = (int(time.time()) - LOOKUP_CLOCK_SLACK, None)
    else:
        window = (created_after, created_after + LOOKUP_WINDOW)
        found = payment_intent_find(**wanted, created_after=window[0], created_before=window[1])
        if found is not None:
            return found
    resends = settings.STRIPE_MAX_NETWORK_RETRIES
    for attempt in range(resends + 1):
        try:
            intent = _client().v1.payment_intents.create(
                params=params,
                # The SDK's own retries would resend blind; this loop looks first.
                options={"idempotency_key": _scoped(idempotency_key), "max_network_retries": 0},
            )
        except stripe.StripeError as exc:
            if not _maybe_delivered(exc):
                raise _translate(
                    exc, action="create the payment", names_payment_method=True
                ) from exc
            found = _payment_intent_find_quietly(
                **wanted, created_after=window[0], created_before=window[1]
            )
            if found is not None:
                log.warning("stripe create the payment: answer lost, found %s", found.id)
                return found
            if attempt == resends:
                raise _translate(
                    exc, action="create the payment", names_payment_method=True
                ) from exc
            time.sleep(min(RESEND_DELAY * 2**attempt, 2.0))
        else:
            return payment_intent_from_payload(intent.to_dict())
    raise AssertionError("unreachable")  # pragma: no cover


def _payment_intent_find_quietly(**kwargs: Any) -> PaymentIntentData | None:
    try:
        return payment_intent_find(**kwargs)
    except PaymentGatewayError:
        return None  # the send is retried, or its own error raised, as if not found


def payment_intent_find(
    *,
    metadata: dict[str, str],
    amount: int,
    currency: str,
    customer: str | None,
    created_after: int,
    created_before: int | None = None,
    payment_method: str | None = None,
) -> PaymentIntentData | None:
    """The PaymentIntent made for this order, or None: the same amount, currency,
    customer and every (non-empty) metadata key, made inside the window, and with
    `payment_method` when one is given.

    It lists PaymentIntents (consistent at once, where Stripe's Search lags by up to a
    minute) created in the window, at most `LOOKUP_MAX_PAGES` pages. The window and
    the match together keep another deployment's order with the same number, user
    and purchase, made at another time, from matching. The oldest match wins.
    """
    params: PaymentIntentListParams = {"created": {"gte": created_after}, "limit": 100}
    if created_before is not None:
        params["created"] = {"gte": created_after, "lte": created_before}
    if customer:
        params["customer"] = customer
    # Stripe drops metadata keys whose value is empty, so they cannot be matched on.
    expected = {k: v for k, v in metadata.items() if v != ""}

    def ours(obj: dict[str, Any]) -> bool:
        made = int(obj.get("created") or created_after)
        return (
            all((obj.get("metadata") or {}).get(k) == v for k, v in expected.items())
            and obj.get("amount") == amount
            and (obj.get("currency") or "").lower() == currency.lower()
            and (obj.get("customer") or None) == (customer or None)
            and (payment_method is None or _payment_method_id(obj) == payment_method)
            and made >= created_after
            and (created_before is None or made <= created_before)
        )

    client = _client()
    with _stripe("look up the payment"):
        page = client.v1.payment_intents.list(params=params)
        matches = []
        for read, item in enumerate(page.auto_paging_iter()):
            if read == 100 * LOOKUP_MAX_PAGES:
                log.warning(
                    "payment look-up for order %s stopped after %d PaymentIntents",
                    metadata.get("order_id"),
                    read,
                )
                break
            obj = item.to_dict()
            if ours(obj):
                matches.append(obj)
    if not matches:
        return None
    if len(matches) > 1:
        log.error("order %s has %d PaymentIntents", metadata.get("order_id"), len(matches))
    oldest = min(matches, key=lambda obj: (int(obj.get("created") or 0), obj["id"]))
    return payment_intent_from_payload(oldest)


def _payment_method_id(obj: dict[str, Any]) -> str | None:
    method = obj.get("payment_method")
    return method.get("id") if isinstance(method, dict) else method


def payment_intent_confirm(*, payment_intent_id: str, idempotency_key: str) -> PaymentIntentData:
    """Confirm a PaymentIntent whose payment method was set at creation.

    A decline raises `CardDeclinedError`; 3-D Secure answers `requires_action`.
    """
    with _stripe("confirm the payment", names_payment_method=True):
        intent = _client().v1.payment_intents.confirm(
            payment_intent_id, options={"idempotency_key": _scoped(idempotency_key)}
        )
    return payment_intent_from_payload(intent.to_dict())


def payment_intent_payment_method_set(
    *, payment_intent_id: str, payment_method: str, customer: str | None, idempotency_key: str
) -> PaymentIntentData:
    """Put another payment method on an unpaid PaymentIntent, to confirm it again.

    Stripe moves an intent that needed a payment method, or was waiting for 3-D
    Secure, back to `requires_confirmation`. Done as its own update because
    `confirm(id, payment_method=…)` is not something every Stripe API here offers.
    """
    params: PaymentIntentUpdateParams = {"payment_method": payment_method}
    if customer:
        params["customer"] = customer
    with _stripe("change the payment method", names_payment_method=True):
        intent = _client().v1.payment_intents.update(
            payment_intent_id,
            params=params,
            options={"idempotency_key": _scoped(idempotency_key)},
        )
    return payment_intent_from_payload(intent.to_dict())


def payment_intent_retrieve(*, payment_intent_id: str) -> PaymentIntentData:
    with _stripe("read the payment"):
        intent = _client().v1.payment_intents.retrieve(payment_intent_id)
    return payment_intent_from_payload(intent.to_dict())


def payment_intent_cancel(*, payment_intent_id: str, idempotency_key: str) -> PaymentIntentData:
    with _stripe("cancel the payment"):
        intent = _client().v1.payment_intents.cancel(
            payment_intent_id, options={"idempotency_key": _scoped(idempotency_key)}
        )
    return payment_intent_from_payload(intent.to_dict())
