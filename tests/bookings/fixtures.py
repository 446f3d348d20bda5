"""Booking fixtures: one service of each kind, with times safely in the future.

Test modules load them with `pytest_plugins = ["tests.bookings.fixtures"]`.

The 1-on-1 service is available from 09:00 to 17:00 UTC on `times.DAY`, so
tests name slots as `at(10)` (10:00 that day).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from bookings.models import Service
from tests.billing.conftest import live_stripe  # noqa: F401  (offered to modules that load these)
from tests.bookings.factories import (
    AvailabilityWindowFactory,
    PackageItemFactory,
    ServiceFactory,
    ServiceSessionFactory,
)
from tests.bookings.purchases import Http, http_for
from tests.bookings.times import at


@pytest.fixture
def workshop(db) -> Service:
    """A workshop with one upcoming 10-seat session."""
    service = ServiceFactory(name="Sourdough workshop", kind=Service.Kind.WORKSHOP, price=4500)
    ServiceSessionFactory(service=service, capacity=10)
    return service


@pytest.fixture
def small_workshop(db) -> Service:
    """A workshop with one upcoming 2-seat session."""
    service = ServiceFactory(name="Knife skills", kind=Service.Kind.WORKSHOP, price=3000)
    ServiceSessionFactory(service=service, capacity=2)
    return service


@pytest.fixture
def course(db) -> Service:
    """A course of three weekly sessions of 5 seats."""
    service = ServiceFactory(name="Bread course", kind=Service.Kind.COURSE, price=12000)
    first = timezone.now() + timedelta(days=7)
    for week in range(3):
        ServiceSessionFactory(service=service, start=first + timedelta(weeks=week), capacity=5)
    return service


@pytest.fixture
def coach(db):
    from tests.factories import UserFactory

    return UserFactory(username="coach")


@pytest.fixture
def one_on_one(coach) -> Service:
    """A 60-minute 1-on-1 with the coach, available 09:00–17:00 UTC on the test day."""
    service = ServiceFactory(
        name="Coaching call", kind=Service.Kind.SESSION, price=8000, duration_minutes=60, host=coach
    )
    AvailabilityWindowFactory(service=service, start=at(9), end=at(17))
    return service


@pytest.fixture
def bundle(one_on_one, workshop) -> Service:
    """Two coaching calls and a workshop seat."""
    service = ServiceFactory(name="Starter bundle", kind=Service.Kind.BUNDLE, price=15000)
    PackageItemFactory(package=service, item_service=one_on_one, quantity=2)
    PackageItemFactory(package=service, item_service=workshop, quantity=1)
    return service


@pytest.fixture
def package(one_on_one) -> Service:
    """Three coaching calls."""
    service = ServiceFactory(name="Coaching ×3", kind=Service.Kind.PACKAGE, price=21000)
    PackageItemFactory(package=service, item_service=one_on_one, quantity=3)
    return service


@pytest.fixture
def http(live_server, user) -> Http:
    """The buyer, over real HTTP to the live server."""
    return http_for(live_server, user)


@pytest.fixture
def staff_http(live_server, staff_user) -> Http:
    return http_for(live_server, staff_user)
