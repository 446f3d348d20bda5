"""Unpaid seat holds under any sequence of what buyers do: every answer is the model's,
no session ever holds more than its capacity, no buyer more than the limits.

A few buyers share two workshop sessions of a drawn capacity; each of their orders
is for one seat of one session. A drawn sequence of steps, each on one order:
hold its seat (what creating or paying an order does), release it (the payment
failed, or the order was canceled), let its hold run out (its time passes: the
hold's end is moved into the past, as the sweep has not run yet), or pay it (the
order becomes a booking). The reference model is plain counting:

- a hold is refused `SeatsUnavailableError` when the session's bookings and the
  other orders' live holds fill it; else `SeatHoldLimitError` when the buyer's
  live seats in that session would pass the per-session limit, or the buyer has
  live holds for as many orders as the per-user limit; an order already holding
  gets its hold back, unchanged;
- a payment takes a seat unless the bookings and the other orders' live holds fill
  the session (a hold that ran out counts for nothing, its own included);
- a lapsed or released hold never comes back: holding again takes a new seat.

After every step the database must say what the model says, and the invariants
hold: bookings + live holds <= capacity in each session, each buyer within the
limits. Each example runs inside its own savepoint, rolled back at its end.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bookings.errors import SeatHoldLimitError, SeatsUnavailableError
from bookings.models import SEAT_TAKING_STATUSES, Booking, SeatHold, Service
from bookings.services.bookings import bookings_create_for_order
from bookings.services.holds import seat_holds_create, seat_holds_release
from tests.bookings.factories import ServiceFactory, ServiceSessionFactory
from tests.bookings.seat_checks import plan_for
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PER_SESSION = 2
PER_USER = 3
BUYERS = 2
ORDERS = 8
SESSIONS = 2

ACTIONS = ["hold", "hold", "hold", "hold", "release", "lapse", "pay"]


@pytest.fixture
def limits(settings):
    settings.TOLLGATE = {
        **settings.TOLLGATE,
        "BOOKING_HOLD_SEATS_PER_SESSION": PER_SESSION,
        "BOOKING_HOLDS_PER_USER": PER_USER,
    }


class Model:
    """What must be: each order's state ("new", "live", "released", "lapsed", "booked")."""

    def __init__(self, owners: list[tuple[int, int]], capacities: list[int]) -> None:
        self.owners = owners  # order -> (buyer, session)
        self.capacities = capacities
        self.state = ["new"] * len(owners)

    def _count(self, session: int, state: str, *, but: int) -> int:
        return sum(
            1
            for o, (_, s) in enumerate(self.owners)
            if s == session and self.state[o] == state and o != but
        )

    def _full(self, order: int) -> bool:
        _, session = self.owners[order]
        taken = self._count(session, "booked", but=-1) + self._count(session, "live", but=order)
        return taken >= self.capacities[session]

    def hold(self, order: int) -> str:
        if self.state[order] == "live":
            return "ok"
        buyer, session = self.owners[order]
        if self._full(order):
            return "full"
        mine = [o for o, (b, _) in enumerate(self.owners) if b == buyer and o != order]
        here = sum(1 for o in mine if self.state[o] == "live" and self.owners[o][1] == session)
        if here + 1 > PER_SESSION:
            return "limit"
        if sum(1 for o in mine if self.state[o] == "live") >= PER_USER:
            return "limit"
        self.state[order] = "live"
        return "ok"

    def release(self, order: int) -> str:
        if self.state[order] == "live":
            self.state[order] = "released"
        return "ok"

    def lapse(self, order: int) -> str:
        if self.state[order] == "live":
            self.state[order] = "lapsed"
        return "ok"

    def pay(self, order: int) -> str:
        if self.state[order] == "booked":
            return "ok"
        if self._full(order):
            return "full"
        self.state[order] = "booked"
        return "ok"


def _outcome(call) -> str:
    try:
        call()
    except SeatsUnavailableError:
        return "full"
    except SeatHoldLimitError:
        return "limit"
    return "ok"


def _order_id(order: int) -> int:
    return 9_000 + order


def _check(model: Model, sessions, buyers) -> None:
    now = timezone.now()
    live = SeatHold.objects.live(now)
    for i, session in enumerate(sessions):
        booked = Booking.objects.filter(session=session, status__in=SEAT_TAKING_STATUSES).count()
        held = sum(live.filter(session=session).values_list("quantity", flat=True))
        assert booked == model._count(i, "booked", but=-1)
        assert held == model._count(i, "live", but=-1)
        assert booked + held <= session.capacity
    for buyer in buyers:
        mine = live.filter(user=buyer)
        per_session = Counter(mine.values_list("session_id", flat=True))
        assert max(per_session.values(), default=0) <= PER_SESSION
        assert len(set(mine.values_list("order_id", flat=True))) <= PER_USER
    for order, state in enumerate(model.state):
        holds = live.filter(order_id=_order_id(order))
        assert holds.count() == (1 if state == "live" else 0), (order, state)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    capacities=st.lists(st.integers(1, 6), min_size=SESSIONS, max_size=SESSIONS),
    owners=st.lists(
        st.tuples(st.integers(0, BUYERS - 1), st.integers(0, SESSIONS - 1)),
        min_size=ORDERS,
        max_size=ORDERS,
    ),
    steps=st.lists(
        st.tuples(st.sampled_from(ACTIONS), st.integers(0, ORDERS - 1)), min_size=12, max_size=40
    ),
)
# Both limits, a full session, a lapsed hold that cannot come back, a paid order.
@example(
    capacities=[3, 6],
    owners=[(0, 0)] * 3 + [(0, 1)] * 3 + [(1, 0)] * 2,
    steps=[("hold", 0), ("hold", 1), ("hold", 2), ("hold", 3), ("hold", 4), ("lapse", 0),
           ("hold", 4), ("hold", 2), ("hold", 6), ("hold", 7), ("hold", 0), ("pay", 0),
           ("release", 6), ("pay", 0), ("pay", 7), ("hold", 5), ("release", 3), ("hold", 5)],
)  # fmt: skip
def test_any_sequence_of_holds_releases_lapses_and_payments_is_the_model_s(
    limits, capacities, owners, steps
):
    with transaction.atomic():
        service = ServiceFactory(kind=Service.Kind.WORKSHOP)
        sessions = [ServiceSessionFactory(service=service, capacity=c) for c in capacities]
        buyers = [UserFactory() for _ in range(BUYERS)]
        plans = [plan_for(service, {"service_session_id": s.pk}) for s in sessions]
        model = Model(owners, capacities)

        def hold(order: int) -> None:
            buyer, session = owners[order]
            seat_holds_create(
                order_id=_order_id(order), user_id=buyers[buyer].pk, plan=plans[session]
            )

        def lapse(order: int) -> None:
            SeatHold.objects.filter(
                order_id=_order_id(order), status=SeatHold.Status.ACTIVE
            ).update(expires_at=timezone.now() - timedelta(seconds=1))

        def pay(order: int) -> None:
            buyer, session = owners[order]
            bookings_create_for_order(
                order_id=_order_id(order), user_id=buyers[buyer].pk, plan=plans[session]
            )

        actual = {
            "hold": hold,
            "release": lambda order: seat_holds_release(order_id=_order_id(order)),
            "lapse": lapse,
            "pay": pay,
        }
        for action, order in steps:
            if action == "hold" and model.state[order] == "booked":
                continue  # a paid order is never held again
            expected = getattr(model, action)(order)
            got = _outcome(lambda a=action, o=order: actual[a](o))
            assert got == expected, (action, order, model.state)
            _check(model, sessions, buyers)
        transaction.set_rollback(True)
