"""Checks the credit tests share: the balance-equals-ledger invariant and a thread race.

The rule: a thread that touches the database closes its own connection, or the
test database cannot be dropped and later tests hang.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connection

from credits.models import CreditAccount
from credits.selectors import credits_ledger_sum


def balance_of(user) -> int:
    """The stored balance, checked against the ledger: the two must always agree."""
    account = CreditAccount.objects.filter(user=user).first()
    stored = account.balance if account else 0
    assert stored == credits_ledger_sum(user_id=user.pk), "balance drifted from the ledger"
    return stored


def run_together(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run `work(i)` on `count` real threads released at once; return results or exceptions."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = work(i)
        except Exception as exc:  # the caller asserts on every outcome
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a racing thread did not finish"
    return results
