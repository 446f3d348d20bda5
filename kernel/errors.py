"""The domain error model: one root error, rendered once as `{code, message, extra}`.

Services raise these, never HTTP errors; `platform_core.api` renders them with
their `status`. The rule: a new failure a client must tell apart gets its own
`ErrorCode` member and a small subclass, never a reused code with a new meaning.

Whether the same work may succeed when tried again is said in one place too: an
error's `retryable` (a class default, or `retryable=` when it is raised, which
is also shown in `extra`), read through `error_retryable`.
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
    NOT_SOLD_THIS_WAY = "not_sold_this_way"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_AUTHENTICATED = "not_authenticated"
    PERMISSION_DENIED = "permission_denied"
    BAD_SIGNATURE = "bad_signature"
    QUOTE_MISMATCH = "quote_mismatch"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    ORDER_STATE_CONFLICT = "order_state_conflict"
    SUBSCRIPTION_EXISTS = "subscription_exists"
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
    # Whether the same work may succeed later (an event's processing is retried only
    # then). A raise may say it for itself with `retryable=…`, kept in `extra` too.
    retryable: bool = True

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra
        if "retryable" in extra:
            self.retryable = bool(extra["retryable"])


def error_retryable(exc: BaseException) -> bool:
    """Whether work that raised `exc` may succeed if tried again.

    A `DomainError` says so itself; anything else (a database that went away, a
    bug fixed by a deploy) is worth another try.
    """
    return exc.retryable if isinstance(exc, DomainError) else True


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
