"""Fixtures for the credit ledger tests."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from credits.models import CreditTransaction
from credits.services import credits_grant
from tests.factories import UserFactory


@pytest.fixture
def fund() -> Callable[..., CreditTransaction]:
    """Grant credits to a user, as the system would (a unique reference each time)."""
    counter = itertools.count()

    def _fund(user, amount: int) -> CreditTransaction:
        return credits_grant(user_id=user.pk, amount=amount, reference=f"fund-{next(counter)}")

    return _fund


@pytest.fixture
def superuser(db):
    return UserFactory(is_staff=True, is_superuser=True)
