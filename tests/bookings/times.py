"""The test day: times safely in the future, named by the hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.utils import timezone

# Fixed once per test run, so a run that crosses midnight keeps one test day.
DAY = (timezone.now().astimezone(UTC) + timedelta(days=3)).replace(
    hour=0, minute=0, second=0, microsecond=0
)


def at(hour: int, minute: int = 0) -> datetime:
    """A time on the test day (midnight UTC three days after the run began)."""
    return DAY + timedelta(hours=hour, minutes=minute)


def iso(when: datetime) -> str:
    return when.isoformat()
