"""The credit ledger under random interleavings, against a reference model
(balance = the ledger's sum, never below zero by a spend).

A hypothesis state machine buys, grants, spends, adjusts and debits refunds for
two users in any order, with references drawn from a small pool so that replays
and conflicting reuses happen often. After every step: each balance equals the
sum of its ledger and the model's balance; a spend never takes a balance below
zero; a refund debit is always recorded, even past zero; a repeated reference
is one entry.

Each run of the machine is one example; it starts clean because it runs inside
its own savepoint, rolled back in `teardown`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from credits.errors import CreditReferenceConflictError, InsufficientCreditsError
from credits.models import CreditTransaction
from credits.selectors import credits_balance_get, credits_ledger_sum
from credits.services import (
    credits_debit_refund,
    credits_grant,
    credits_grant_by_staff,
    credits_spend_or_replay,
)
from tests.factories import UserFactory

USERS = 2
amounts = st.integers(min_value=1, max_value=500)
# Few references, shared by every kind of write, so replays and clashes are common.
references = st.sampled_from(["a", "b", "c", "order-1", "order-2", "refund-1"])
users = st.integers(min_value=0, max_value=USERS - 1)


@dataclass
class Account:
    """The reference model of one account: its balance and what each reference wrote."""

    balance: int = 0
    entries: dict[str, tuple[int, str]] = field(default_factory=dict)

    def write(self, *, reference: str, amount: int, kind: str, floor: int | None) -> str:
        """Apply one write as the ledger must; answers "created", "replayed" or the error."""
        if reference in self.entries:
            return "replayed" if self.entries[reference] == (amount, kind) else "conflict"
        if floor is not None and amount < 0 and self.balance + amount < floor:
            return "insufficient"
        self.entries[reference] = (amount, kind)
        self.balance += amount
        return "created"


def outcome(write) -> str:
    """What the service did: "created", "replayed" or the refusal, in the model's words."""
    try:
        result = write()
    except InsufficientCreditsError:
        return "insufficient"
    except CreditReferenceConflictError:
        return "conflict"
    created = getattr(result, "created", None)
    if created is None:  # the plain services answer the entry: new if the model says so
        return "entry"
    return "created" if created else "replayed"


class LedgerMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.users = [UserFactory() for _ in range(USERS)]
        self.staff = UserFactory(is_staff=True)
        self.model = [Account() for _ in range(USERS)]

    def teardown(self) -> None:
        if hasattr(self, "_atomic"):
            transaction.set_rollback(True)
            self._atomic.__exit__(None, None, None)

    def _check(self, actual: str, expected: str) -> None:
        if actual == "entry":  # plain services raise on refusal and answer the entry otherwise
            assert expected in ("created", "replayed"), expected
        else:
            assert actual == expected

    @rule(who=users, amount=amounts, reference=references)
    def purchase(self, who: int, amount: int, reference: str) -> None:
        """A paid order's fulfilment: a purchase entry under the system's reference."""
        expected = self.model[who].write(
            reference=reference, amount=amount, kind=CreditTransaction.Kind.PURCHASE, floor=None
        )
        actual = outcome(
            lambda: credits_grant(
                user_id=self.users[who].pk,
                amount=amount,
                kind=CreditTransaction.Kind.PURCHASE,
                reference=reference,
            )
        )
        self._check(actual, expected)

    @rule(who=users, amount=amounts, reference=references)
    def staff_grant(self, who: int, amount: int, reference: str) -> None:
        expected = self.model[who].write(
            reference="grant:" + reference,
            amount=amount,
            kind=CreditTransaction.Kind.GRANT,
            floor=0,
        )
        actual = outcome(
            lambda: credits_grant_by_staff(
                user_id=self.users[who].pk,
                amount=amount,
                memo="goodwill",
                created_by_id=self.staff.pk,
                reference=reference,
            )
        )
        self._check(actual, expected)

    @rule(who=users, amount=amounts, reference=references)
    def staff_adjust_down(self, who: int, amount: int, reference: str) -> None:
        expected = self.model[who].write(
            reference="grant:" + reference,
            amount=-amount,
            kind=CreditTransaction.Kind.ADJUSTMENT,
            floor=0,
        )
        actual = outcome(
            lambda: credits_grant_by_staff(
                user_id=self.users[who].pk,
                amount=-amount,
                memo="correction",
                created_by_id=self.staff.pk,
                reference=reference,
            )
        )
        self._check(actual, expected)

    @rule(who=users, amount=amounts, reference=references)
    def spend(self, who: int, amount: int, reference: str) -> None:
        expected = self.model[who].write(
            reference="spend:" + reference,
            amount=-amount,
            kind=CreditTransaction.Kind.SPEND,
            floor=0,
        )
        actual = outcome(
            lambda: credits_spend_or_replay(
                user_id=self.users[who].pk, amount=amount, reference=reference
            )
        )
        self._check(actual, expected)

    @rule(who=users, amount=amounts, reference=references)
    def refund_debit(self, who: int, amount: int, reference: str) -> None:
        """A refund takes credits back even past zero: the books show every refund."""
        expected = self.model[who].write(
            reference=reference, amount=-amount, kind=CreditTransaction.Kind.REFUND, floor=None
        )
        actual = outcome(
            lambda: credits_debit_refund(
                user_id=self.users[who].pk, amount=amount, reference=reference
            )
        )
        self._check(actual, expected)

    @precondition(lambda self: hasattr(self, "users"))
    @invariant()
    def balance_is_the_sum_of_the_ledger_and_the_model(self) -> None:
        for who, user in enumerate(self.users):
            stored = credits_balance_get(user_id=user.pk)
            assert stored == credits_ledger_sum(user_id=user.pk) == self.model[who].balance
            entries = CreditTransaction.objects.filter(account__user=user).order_by("id")
            assert {e.reference: (e.amount, e.kind) for e in entries} == self.model[who].entries
            running = 0
            for entry in entries:
                running += entry.amount
                assert entry.balance_after == running, entry
                if entry.kind in (CreditTransaction.Kind.SPEND, CreditTransaction.Kind.ADJUSTMENT):
                    assert entry.balance_after >= 0, "a spend took the balance below zero"


@pytest.mark.django_db
def test_random_ledger_interleavings_keep_the_books_whole():
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
