"""Credit lots under random interleavings, against a reference model of the lots.

A hypothesis state machine grants lots (paid or promotional, expiring at one of a
few times or never, from one of a few orders), spends, gives spends back, moves a
clock and runs the expiry sweep, claws back an order's credits and freezes and
releases credits, on one account. After every step: the balance equals the sum of
the ledger and the model's; every lot holds what the model says (so each spend
drew in the documented order: soonest expiry, promotional before paid, oldest);
the lots add up to the balance, or to zero in debt; no spend took the balance
below zero; each entry's draws add up to what it moved.

Each run of the machine is one example inside its own savepoint, rolled back in
`teardown`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from hypothesis.stateful import run_state_machine_as_test as run_machine

from credits.errors import InsufficientCreditsError
from credits.models import CreditDraw, CreditLot, CreditTransaction
from credits.selectors import credits_balance_get, credits_ledger_sum
from credits.services import (
    credits_debit_refund,
    credits_expire_due,
    credits_freeze,
    credits_grant,
    credits_spend_or_replay,
    credits_spend_return,
    credits_unfreeze,
)
from kernel.errors import InvalidInputError
from tests.factories import UserFactory

amounts = st.integers(min_value=1, max_value=60)
# Expiry in days from the machine's start; few values, so ties are common.
expiries = st.sampled_from([None, 1, 2, 2, 5])
categories = st.sampled_from(["paid", "promotional"])
orders = st.sampled_from([None, 1, 2])


@dataclass
class Lot:
    pk: int
    category: str
    expires_at: datetime | None
    order_id: int | None
    remaining: int

    def draw_key(self) -> tuple:
        return (
            self.expires_at is None,
            self.expires_at or datetime.min,
            self.category != "promotional",
            self.pk,
        )


@dataclass
class Spend:
    reference: str
    amount: int
    draws: list[tuple[int, int]]  # (lot pk, credits) in draw order
    returned: int = 0
    given_back: dict[int, int] = field(default_factory=dict)


@dataclass
class Model:
    balance: int = 0
    frozen: int = 0
    lots: dict[int, Lot] = field(default_factory=dict)
    spends: list[Spend] = field(default_factory=list)

    def take(self, ordered: list[Lot], amount: int) -> list[tuple[int, int]]:
        drawn = []
        for lot in ordered:
            if amount == 0:
                break
            n = min(lot.remaining, amount)
            if n:
                lot.remaining -= n
                amount -= n
                drawn.append((lot.pk, n))
        return drawn

    def in_draw_order(self) -> list[Lot]:
        return sorted(self.lots.values(), key=Lot.draw_key)


class LotMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.user = UserFactory()
        self.model = Model()
        self.start_at = timezone.now()
        self.clock = self.start_at
        self.counter = 0

    def teardown(self) -> None:
        if hasattr(self, "_atomic"):
            transaction.set_rollback(True)
            self._atomic.__exit__(None, None, None)

    def _reference(self, what: str) -> str:
        self.counter += 1
        return f"{what}-{self.counter}"

    @rule(amount=amounts, category=categories, expiry=expiries, order_id=orders)
    def grant(self, amount: int, category: str, expiry: int | None, order_id: int | None):
        expires_at = None if expiry is None else self.start_at + timedelta(days=expiry)
        entry = credits_grant(
            user_id=self.user.pk,
            amount=amount,
            reference=self._reference("grant"),
            category=category,
            expires_at=expires_at,
            source_order_id=order_id,
        )
        lot = CreditLot.objects.get(entry=entry)
        m = self.model
        m.lots[lot.pk] = Lot(
            lot.pk, category, expires_at, order_id, min(amount, max(m.balance + amount, 0))
        )
        m.balance += amount

    @rule(amount=amounts)
    def spend(self, amount: int) -> None:
        m = self.model
        reference = self._reference("spend")
        try:
            write = credits_spend_or_replay(
                user_id=self.user.pk, amount=amount, reference=reference
            )
        except InsufficientCreditsError:
            assert m.balance - m.frozen < amount
            return
        assert m.balance - m.frozen >= amount
        drawn = m.take(m.in_draw_order(), amount)
        m.balance -= amount
        m.spends.append(Spend(reference, amount, drawn))
        actual = list(write.entry.draws.order_by("id").values_list("lot_id", "amount"))
        assert actual == drawn

    @precondition(lambda self: hasattr(self, "model") and self.model.spends)
    @rule(pick=st.integers(min_value=0), part=st.one_of(st.none(), amounts))
    def give_back(self, pick: int, part: int | None) -> None:
        m = self.model
        spend = m.spends[pick % len(m.spends)]
        left = spend.amount - spend.returned
        give = left if part is None else part
        try:
            write = credits_spend_return(
                user_id=self.user.pk,
                spend_reference=spend.reference,
                amount=part,
                reference=self._reference("return"),
            )
        except InvalidInputError:
            assert give <= 0 or give > left
            return
        assert 0 < give <= left
        to_lots = max(m.balance + give, 0) - max(m.balance, 0)
        for lot_pk, n in reversed(spend.draws):
            owed = n - spend.given_back.get(lot_pk, 0)
            k = min(owed, to_lots)
            if k > 0:
                m.lots[lot_pk].remaining += k
                spend.given_back[lot_pk] = spend.given_back.get(lot_pk, 0) + k
                to_lots -= k
        spend.returned += give
        m.balance += give
        assert write.entry.amount == give

    @rule(days=st.sampled_from([0, 1, 2, 3]))
    def sweep(self, days: int) -> None:
        self.clock += timedelta(days=days)
        expired = credits_expire_due(now=self.clock)
        m = self.model
        due = [
            lot
            for lot in m.lots.values()
            if lot.remaining and lot.expires_at is not None and lot.expires_at <= self.clock
        ]
        assert expired == len(due)
        for lot in due:
            m.balance -= lot.remaining
            lot.remaining = 0

    @rule(amount=amounts, order_id=orders)
    def clawback(self, amount: int, order_id: int | None) -> None:
        credits_debit_refund(
            user_id=self.user.pk,
            amount=amount,
            reference=self._reference("refund"),
            source_order_id=order_id,
        )
        m = self.model
        ordered = sorted(
            m.lots.values(),
            key=lambda lot: (order_id is None or lot.order_id != order_id, *lot.draw_key()),
        )
        m.take(ordered, amount)
        m.balance -= amount

    @rule(amount=amounts)
    def freeze(self, amount: int) -> None:
        reference = self._reference("dispute")
        frozen = credits_freeze(user_id=self.user.pk, amount=amount, reference=reference)
        m = self.model
        assert frozen.amount == min(amount, max(0, m.balance - m.frozen))
        m.frozen += frozen.amount
        self.freezes = [*getattr(self, "freezes", []), (reference, frozen.amount)]

    @precondition(lambda self: getattr(self, "freezes", None))
    @rule()
    def unfreeze(self) -> None:
        reference, amount = self.freezes.pop(0)
        assert credits_unfreeze(user_id=self.user.pk, reference=reference) == amount
        self.model.frozen -= amount

    @precondition(lambda self: hasattr(self, "model"))
    @invariant()
    def the_lots_and_the_ledger_agree_with_the_model(self) -> None:
        m, user = self.model, self.user
        balance = credits_balance_get(user_id=user.pk)
        assert balance == credits_ledger_sum(user_id=user.pk) == m.balance
        lots = dict(CreditLot.objects.filter(account__user=user).values_list("pk", "remaining"))
        assert lots == {pk: lot.remaining for pk, lot in m.lots.items()}
        assert sum(lots.values()) == max(balance, 0)
        entries = CreditTransaction.objects.filter(account__user=user).order_by("id")
        drawn = dict(
            CreditDraw.objects.filter(entry__account__user=user)
            .values("entry_id")
            .annotate(s=Sum("amount"))
            .values_list("entry_id", "s")
        )
        running = 0
        for entry in entries:
            running += entry.amount
            assert entry.balance_after == running
            if entry.kind in ("spend", "adjustment", "expiry"):
                assert entry.balance_after >= 0, entry
                assert drawn.get(entry.pk) == -entry.amount, entry


@pytest.mark.django_db
def test_random_lot_interleavings_keep_lots_ledger_and_order():
    run_machine(
        LotMachine,
        settings=settings(
            max_examples=30,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
