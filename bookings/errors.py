"""Errors the booking services raise. Bad requests use `kernel.errors.InvalidInputError`."""

from kernel.errors import DomainError, ErrorCode


class SeatsUnavailableError(DomainError):
    """The session is full, or the 1-on-1 slot is taken, at the moment of asking."""

    code = ErrorCode.SEATS_UNAVAILABLE
    status = 409


class SeatHoldLimitError(DomainError):
    """The user already holds as many unpaid seats as one user may (in this session, or
    in all); they pay for or cancel one of those orders, or wait for its hold to lapse."""

    code = ErrorCode.SEAT_HOLD_LIMIT
    status = 409
