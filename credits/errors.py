"""Errors the credit services raise."""

from kernel.errors import DomainError, ErrorCode


class InsufficientCreditsError(DomainError):
    code = ErrorCode.INSUFFICIENT_CREDITS
    status = 409


class CreditReferenceConflictError(DomainError):
    """A reference was reused for a different amount or kind."""

    code = ErrorCode.CREDIT_REFERENCE_CONFLICT
    status = 409
