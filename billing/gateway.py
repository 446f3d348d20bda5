"""The Stripe gateway: the only module that imports `stripe`.

The rule: nothing Stripe-shaped leaves this module. Callers get the project's
own dataclasses and the project's own errors (`PaymentGatewayError`,
`CardDeclinedError`, …), every write carries an idempotency key derived from
our ids, and the API version is pinned so Stripe's answers keep their shape.

Every request is built as stripe-python's own parameter type for the pinned
version (`stripe.params.PaymentIntentCreateParams`, …), so the type checker
refuses a parameter that version does not have. It speaks to real Stripe or to
the development Stripe (`STRIPE_API_BASE`), which follows the pinned version;
the readers take older event shapes too (an embedded charge in `latest_charge`,
no `amount_received`), since webhook endpoints on older versions send them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import Iterator
from typing import Any, Literal

import requests
import stripe
from django.conf import settings
from stripe.params import (
    CustomerCreateParams,
    EventListParams,
    InvoiceListParams,
    PaymentIntentCreateParams,
    PaymentIntentListParams,
    PaymentIntentUpdateParams,
    PaymentMethodListParams,
    RefundCreateParams,
    SetupIntentCreateParams,
    SubscriptionCreateParams,
    SubscriptionCreateParamsItem,
)
from stripe.params.billing_portal import SessionCreateParams as PortalSessionCreateParams
from stripe.params.checkout import SessionCreateParams as CheckoutSessionCreateParams
from stripe.params.checkout import SessionCreateParamsLineItem

from billing.stripe_objects import (
    CheckoutSessionData,
    CustomerData,
    InvoiceData,
    PaymentIntentData,
    PaymentMethodData,
    RefundData,
    SetupIntentData,
    SubscriptionData,
    checkout_session_from_payload,
    customer_from_payload,
    invoice_from_payload,
    payment_intent_from_payload,
    payment_method_from_payload,
    refund_from_payload,
    setup_intent_from_payload,
    subscription_from_payload,
)
from kernel.errors import DomainError, ErrorCode
from kernel.metrics import stripe_session_observe
from kernel.storable_json import storable_json_loads

log = logging.getLogger(__name__)

API_VERSION: str = stripe.api_version

# Why Stripe is asked for a refund (the text of our own reason goes in its metadata).
RefundReason = Literal["duplicate", "fraudulent", "requested_by_customer"]

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


class PaymentGatewayError(DomainError):
    """Stripe could not be reached or failed; nothing is known to have been charged."""

    code = ErrorCode.PAYMENT_GATEWAY_ERROR
    status = 502


class CardDeclinedError(DomainError):
    code = ErrorCode.CARD_DECLINED
    status = 402
    retryable = False


class InvalidPaymentMethodError(DomainError):
    code = ErrorCode.INVALID_INPUT
    status = 422
    retryable = False


class FeatureUnavailableError(DomainError):
    """The Stripe API in use does not offer this (a fake Stripe without Checkout or the portal)."""

    code = ErrorCode.FEATURE_UNAVAILABLE
    status = 501
    retryable = False


class BadSignatureError(DomainError):
    code = ErrorCode.BAD_SIGNATURE
    status = 400


def _client() -> stripe.StripeClient:
    return _client_for(
        settings.STRIPE_SECRET_KEY,
        settings.STRIPE_API_BASE,
        settings.STRIPE_MAX_NETWORK_RETRIES,
        settings.STRIPE_TIMEOUT,
    )


@functools.lru_cache(maxsize=4)
def _client_for(api_key: str, api_base: str, retries: int, timeout: int) -> stripe.StripeClient:
    # One client per configuration keeps its HTTP connection pool warm. The proxy
    # settings of the environment (HTTPS_PROXY, NO_PROXY) are read once, here: left to
    # requests, every call would read them again, and ~/.netrc, a sixth of the CPU of
    # an order's creation.
    session = requests.Session()
    session.trust_env = False
    stripe_session_observe(session)
    return stripe.StripeClient(
        api_key,
        stripe_version=API_VERSION,
        base_addresses={"api": api_base},
        max_network_retries=retries,
        # stripe-python waits 80 s by default; a checkout should not.
        http_client=stripe.RequestsClient(
            timeout=timeout,
            session=session,
            proxy=_environ_proxy(api_base),
        ),
    )


def _environ_proxy(api_base: str) -> stripe.HTTPClient._Proxy | None:
    proxies = requests.utils.get_environ_proxies(api_base)
    if not (proxies.get("http") or proxies.get("https")):
        return None
    return {"http": proxies.get("http"), "https": proxies.get("https")}


def _scoped(key: str) -> str:
    """An idempotency key made from our ids, scoped to this deployment.

    Two deployments sharing one Stripe account (staging and production, say)
    both have an order 42; the scope keeps their `order-42-pi` apart.
    """
    scope = hashlib.sha256(settings.SECRET_KEY.encode()).hexdigest()[:10]
    return f"tg-{scope}-{key}"


# Decline codes Stripe advises never to show a customer: they are told "declined".
_HIDDEN_DECLINE_CODES = frozenset(
    {
        "fraudulent",
        "lost_card",
        "stolen_card",
        "pickup_card",
        "restricted_card",
        "merchant_blacklist",
        "security_violation",
    }
)


def _retryable(exc: stripe.StripeError) -> bool:
    """Whether the same request may succeed later (network, rate limit, Stripe's side)."""
    if isinstance(
        exc, stripe.APIConnectionError | stripe.RateLimitError | stripe.AuthenticationError
    ):
        return True
    status = exc.http_status or 0
    return status >= 500 or status in (409, 429) or status == 0


def _translate(
    exc: stripe.StripeError, *, action: str, names_payment_method: bool = False
) -> DomainError:
    """Stripe's error as the project's own. `names_payment_method`: the request carried a
    client-given payment method, so a missing object means that one."""
    body = exc.json_body if isinstance(exc.json_body, dict) else {}
    error: dict[str, Any] = body.get("error") or {}
    if isinstance(exc, stripe.CardError):
        intent = error.get("payment_intent")
        code = error.get("decline_code") or exc.code or "card_declined"
        return CardDeclinedError(
            error.get("message") or "The card was declined.",
            decline_code="card_declined" if code in _HIDDEN_DECLINE_CODES else code,
            payment_intent_id=intent.get("id") if isinstance(intent, dict) else None,
        )
    if (
        names_payment_method
        and isinstance(exc, stripe.InvalidRequestError)
        and (error.get("param") == "payment_method" or exc.http_status == 404)
    ):
        return InvalidPaymentMethodError(
            "That payment method does not exist or cannot be used.",
            field="payment_method_id",
        )
    log.warning("stripe %s failed: %s %s", action, type(exc).__name__, exc.user_message or exc)
    retryable = _retryable(exc)
    return PaymentGatewayError(
        f"The payment provider failed to {action}. "
        + ("It is safe to try again." if retryable else "Trying again will not help."),
        provider_status=exc.http_status,
        provider_code=error.get("code") or exc.code,
        retryable=retryable,
    )


@contextlib.contextmanager
def _stripe(
    action: str, *, names_payment_method: bool = False, feature: str | None = None
) -> Iterator[None]:
    """Around one Stripe call: its errors leave as the project's own (see `_translate`).

    `feature` names what a Stripe API without that route (localstripe) cannot do: its
    404 becomes `FeatureUnavailableError` (501).
    """
    try:
        yield
    except stripe.StripeError as exc:
        unavailable = _unavailable(exc, feature) if feature else None
        raise unavailable or _translate(
            exc, action=action, names_payment_method=names_payment_method
        ) from exc


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


def _allowed_payment_method_types() -> list[Any]:
    """STRIPE_PAYMENT_METHOD_TYPES: the payment methods Tollgate allows (empty: whatever
    the Stripe account's settings enable)."""
    return list(settings.STRIPE_PAYMENT_METHOD_TYPES)


def _maybe_delivered(exc: stripe.StripeError) -> bool:
    """Whether a failed request may still have been carried out by Stripe.

    A connection dropped or timed out after the request was sent, and a 5xx, leave it
    unknown; any other answer says it was not done.
    """
    if isinstance(exc, stripe.APIConnectionError):
        return True
    return isinstance(exc, stripe.APIError) and (exc.http_status or 500) >= 500


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
) -> PaymentIntentData | None:
    """The PaymentIntent made for this order, or None: the same amount, currency,
    customer and every (non-empty) metadata key, made inside the window.

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


def refund_create(
    *,
    payment_intent_id: str,
    amount: int,
    metadata: dict[str, str],
    idempotency_key: str,
    reason: RefundReason | None = None,
) -> RefundData:
    """Refund `amount` of a PaymentIntent's charge, for `reason` (one of Stripe's)."""
    params: RefundCreateParams = {
        "payment_intent": payment_intent_id,
        "amount": amount,
        "metadata": metadata,
    }
    if reason:
        params["reason"] = reason
    with _stripe("refund the payment"):
        refund = _client().v1.refunds.create(
            params=params, options={"idempotency_key": _scoped(idempotency_key)}
        )
    return refund_from_payload(refund.to_dict())


def refunds_for_payment_intent(*, payment_intent_id: str) -> list[RefundData]:
    with _stripe("list the refunds"):
        page = _client().v1.refunds.list(params={"payment_intent": payment_intent_id, "limit": 100})
        return [refund_from_payload(r.to_dict()) for r in page.auto_paging_iter()]


def refunds_list_for_charge(*, charge_id: str) -> list[RefundData]:
    """Every refund of a charge (for `charge.refunded` events that do not embed them)."""
    with _stripe("list the refunds"):
        page = _client().v1.refunds.list(params={"charge": charge_id, "limit": 100})
        return [refund_from_payload(r.to_dict()) for r in page.auto_paging_iter()]


def charge_payment_intent_id(*, charge_id: str) -> str:
    """The PaymentIntent a charge belongs to, or "" for a charge made without one (not
    one of ours: every payment here is a PaymentIntent)."""
    with _stripe("read the charge"):
        charge = _client().v1.charges.retrieve(charge_id).to_dict()
    intent = charge.get("payment_intent")
    return (intent.get("id", "") if isinstance(intent, dict) else intent) or ""


# --- customers and saved cards -------------------------------------------------------


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


# --- Checkout, subscriptions, invoices, the customer portal ---------------------------


def _unavailable(exc: stripe.StripeError, feature: str) -> DomainError | None:
    # A route the Stripe API in use does not have (localstripe answers a plain 404).
    if isinstance(exc, stripe.APIError) and exc.http_status == 404:
        return FeatureUnavailableError(
            f"{feature} is not available from the Stripe API at {settings.STRIPE_API_BASE}. "
            "Use the development Stripe (`python -m devstripe`, which `make run` starts), or "
            "set STRIPE_SECRET_KEY (and STRIPE_PUBLISHABLE_KEY) to Stripe test keys and "
            "unset STRIPE_API_BASE.",
            feature=feature,
        )
    return None


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


def billing_portal_session_create(*, customer_id: str, return_url: str) -> str:
    """The URL of Stripe's customer portal for this customer."""
    with _stripe("open the customer portal", feature="The Stripe customer portal"):
        params: PortalSessionCreateParams = {"customer": customer_id, "return_url": return_url}
        session = _client().v1.billing_portal.sessions.create(params=params)
    return session.url


# --- reconciliation ----------------------------------------------------------------


def events_since(*, created_after: int) -> Iterator[dict[str, Any]]:
    """Stripe's events created after a Unix time, newest first, as plain dicts."""
    with _stripe("list events"):
        params: EventListParams = {"limit": 100, "created": {"gt": created_after}}
        page = _client().v1.events.list(params=params)
        for evt in page.auto_paging_iter():
            yield evt.to_dict()


def webhook_event_verify(*, payload: bytes, signature_header: str | None) -> dict[str, Any]:
    """Check `Stripe-Signature` over the raw body against every configured secret.

    Any one secret may match (rotation); the timestamp must be within
    `STRIPE_WEBHOOK_TOLERANCE` seconds. Answers the event as a plain dict, read once
    and refused (`UnstorableJsonError`, 422) when PostgreSQL could not store it.
    """
    if not signature_header:
        raise BadSignatureError("The Stripe-Signature header is missing.")
    secrets = settings.STRIPE_WEBHOOK_SECRETS
    if not secrets:
        raise BadSignatureError("No webhook secret is configured.")
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(
                payload, signature_header, secret, tolerance=settings.STRIPE_WEBHOOK_TOLERANCE
            )
            break
        except (stripe.SignatureVerificationError, UnicodeDecodeError):
            continue
    else:
        raise BadSignatureError("The Stripe-Signature does not match, or it is too old.")
    try:
        # Checked here, once, for what PostgreSQL cannot store: the event is stored as sent.
        event = storable_json_loads(payload)
    except ValueError:
        raise BadSignatureError("The signed body is not JSON.") from None
    created = event.get("created") if isinstance(event, dict) else None
    data = event.get("data") if isinstance(event, dict) else None
    if (
        not isinstance(event, dict)
        or not isinstance(data, dict)
        or not isinstance(data.get("object"), dict)
        or not isinstance(event.get("id"), str)
        or not 0 < len(event["id"]) <= 255
        or not isinstance(event.get("type", ""), str)
        or (created is not None and not (isinstance(created, int) and 0 <= created < 2**33))
    ):
        raise BadSignatureError("The signed body is not a Stripe event.")
    return event
