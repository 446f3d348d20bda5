"""The gateway's errors: Stripe's failures as the project's own (4xx/5xx with the error shape)."""

from __future__ import annotations

from kernel.errors import DomainError, ErrorCode


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
