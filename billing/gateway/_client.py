"""The one Stripe client and the one way to call it.

The rule: every call to Stripe goes through `_client()` (the pinned API version,
a warm connection pool) inside `with _stripe(...)` (or through `_translate`), so
no Stripe error leaves the gateway, and every write's idempotency key goes
through `_scoped`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
from collections.abc import Iterator
from typing import Any

import requests
import stripe
from django.conf import settings

from billing.gateway.errors import (
    CardDeclinedError,
    FeatureUnavailableError,
    InvalidPaymentMethodError,
    PaymentGatewayError,
)
from kernel.errors import DomainError
from kernel.metrics import stripe_session_observe

log = logging.getLogger(__name__)


API_VERSION: str = stripe.api_version


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
