"""Fixtures for the credit ledger tests."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from django.db import connection

from credits.models import CreditAccount, CreditLot, CreditTransaction
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


@pytest.fixture
def large_ids(db) -> None:
    """Ledger rows numbered past the small integers Python shares between equal
    values, as a ledger in use is: ids compared by identity then differ."""
    with connection.cursor() as cursor:
        for model in (CreditAccount, CreditLot, CreditTransaction):
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), "
                "GREATEST(nextval(pg_get_serial_sequence(%s, 'id')), 70000))",
                [model._meta.db_table, model._meta.db_table],
            )
