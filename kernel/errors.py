"""The domain error model: one root error, rendered once as `{code, message, extra}`.

Services raise these, never HTTP errors; `platform_core.api` renders them with
their `status`. The rule: a new failure a client must tell apart gets its own
`ErrorCode` member and a small subclass, never a reused code with a new meaning.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class ErrorCode(StrEnum):
    INVALID_INPUT = "invalid_input"
    INVALID_AMOUNT = "invalid_amount"
    UNSUPPORTED_CURRENCY = "unsupported_currency"
    METADATA_TOO_LARGE = "metadata_too_large"
    UNKNOWN_PURCHASE_TYPE = "unknown_purchase_type"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_AUTHENTICATED = "not_authenticated"
    PERMISSION_DENIED = "permission_denied"
    BAD_SIGNATURE = "bad_signature"
    QUOTE_MISMATCH = "quote_mismatch"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    ORDER_STATE_CONFLICT = "order_state_conflict"
    INSUFFICIENT_CREDITS = "insufficient_credits"
    CREDIT_REFERENCE_CONFLICT = "credit_reference_conflict"
    FULFILMENT_IMPOSSIBLE = "fulfilment_impossible"
    SEATS_UNAVAILABLE = "seats_unavailable"
    SEAT_HOLD_LIMIT = "seat_hold_limit"
    REFUND_EXCEEDS_CAPTURED = "refund_exceeds_captured"
    CARD_DECLINED = "card_declined"
    PAYMENT_GATEWAY_ERROR = "payment_gateway_error"
    FEATURE_UNAVAILABLE = "feature_unavailable"
    RATE_LIMITED = "rate_limited"
    INTERNAL_ERROR = "internal_error"


class DomainError(Exception):
    """Root of every error a client may see. Subclasses set `code` and `status`."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR
    status: ClassVar[int] = 500

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class InvalidInputError(DomainError):
    code = ErrorCode.INVALID_INPUT
    status = 422


class NotFoundError(DomainError):
    code = ErrorCode.NOT_FOUND
    status = 404


class PermissionDeniedError(DomainError):
    code = ErrorCode.PERMISSION_DENIED
    status = 403


class ConflictError(DomainError):
    code = ErrorCode.ORDER_STATE_CONFLICT
    status = 409
