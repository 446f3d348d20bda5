"""Errors the booking services raise. Bad requests use `kernel.errors.InvalidInputError`."""

from kernel.errors import DomainError, ErrorCode


class SeatsUnavailableError(DomainError):
    """The session is full, or the 1-on-1 slot is taken, at the moment of asking."""

    code = ErrorCode.SEATS_UNAVAILABLE
    status = 409
