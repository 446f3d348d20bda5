"""Dates and times a client sends: the span of the calendar the platform computes with.

Python's calendar ends at 9999-12-31, so a time near either end parses and then
overflows the first time a duration is added or it is moved to UTC (an
`OverflowError`, which would surface as a 500). No booking, report or payment
is ever that far away.

The rule: every date or time parsed from a client's input is checked with
`input_datetime_check` or `input_date_check` before any arithmetic, and
refused with `InvalidInputError` (422) outside `[EARLIEST, LATEST)`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from kernel.errors import InvalidInputError

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)


def _out_of_range(value: object, field: str) -> InvalidInputError:
    return InvalidInputError(
        f"`{field}` {value} is outside the dates this service handles "
        f"({EARLIEST.year} to {LATEST.year - 1}).",
        field=field,
    )


def input_datetime_check(value: datetime, *, field: str) -> datetime:
    """`value` (timezone-aware), refused unless it lies in `[EARLIEST, LATEST)` in UTC."""
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:  # moved to UTC it leaves the calendar
        raise _out_of_range(value.isoformat(), field) from None
    if not EARLIEST <= in_utc < LATEST:
        raise _out_of_range(value.isoformat(), field)
    return value


def input_date_check(value: date, *, field: str) -> date:
    """`value`, refused unless it lies in `[EARLIEST, LATEST)`."""
    if not EARLIEST.date() <= value < LATEST.date():
        raise _out_of_range(value.isoformat(), field)
    return value
