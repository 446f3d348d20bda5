"""Credits as lots: what comes in, the order spending draws them, returns, expiry, clawback."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from credits.errors import CreditReferenceConflictError, InsufficientCreditsError
from credits.models import CreditDraw, CreditLot, CreditTransaction
from credits.services import (
    credit_lot_expire,
    credits_debit_refund,
    credits_expire_due,
    credits_freeze,
    credits_grant,
    credits_grant_by_staff,
    credits_spend,
    credits_spend_or_replay,
    credits_spend_return,
)
from kernel.errors import InvalidInputError, NotFoundError
from tests.credits.ledger_checks import balance_of

pytestmark = pytest.mark.django_db

PAID = CreditLot.Category.PAID
PROMOTIONAL = CreditLot.Category.PROMOTIONAL


def lots_of(user) -> list[CreditLot]:
    return list(CreditLot.objects.filter(account__user=user).order_by("id"))


def remaining(*lots: CreditLot) -> list[int]:
    return [CreditLot.objects.get(pk=lot.pk).remaining for lot in lots]


def draws_of(entry: CreditTransaction) -> list[tuple[int, int]]:
    return list(
        CreditDraw.objects.filter(entry=entry).order_by("id").values_list("lot_id", "amount")
    )


def assert_lots_hold_the_balance(user) -> None:
    """The lots' remainders add up to the balance, or to zero while it is a debt."""
    balance = balance_of(user)
    assert sum(lot.remaining for lot in lots_of(user)) == max(balance, 0)


def grant(user, amount, reference, **kwargs) -> CreditLot:
    entry = credits_grant(user_id=user.pk, amount=amount, reference=reference, **kwargs)
    return CreditLot.objects.get(entry=entry)


# --- credits in ------------------------------------------------------------------------


def test_a_purchase_is_a_paid_lot_with_its_order_and_cost_basis(user):
    entry = credits_grant(
        user_id=user.pk,
        amount=100,
        reference="order-7",
        kind=CreditTransaction.Kind.PURCHASE,
        source_order_id=7,
        cost_basis=1999,
        currency="EUR",
    )
    lot = CreditLot.objects.get(entry=entry)
    assert (lot.category, lot.source, lot.source_order_id) == (PAID, "purchase", 7)
    assert (lot.amount, lot.remaining, lot.expires_at) == (100, 100, None)
    assert (lot.cost_basis, lot.currency) == (1999, "eur")
    assert_lots_hold_the_balance(user)


def test_a_repeated_grant_makes_no_second_lot(user):
    grant(user, 10, "order-1")
    credits_grant(user_id=user.pk, amount=10, reference="order-1")
    assert len(lots_of(user)) == 1
    assert balance_of(user) == 10


def test_a_staff_grant_is_promotional_unless_said_otherwise(user, staff_user):
    soon = timezone.now() + timedelta(days=3)
    first = credits_grant_by_staff(
        user_id=user.pk, amount=5, memo="welcome", created_by_id=staff_user.pk, expires_at=soon
    )
    second = credits_grant_by_staff(
        user_id=user.pk, amount=6, memo="goodwill", created_by_id=staff_user.pk, category=PAID
    )
    assert first.created and second.created
    promo, paid = (CreditLot.objects.get(entry=w.entry) for w in (first, second))
    assert (promo.category, promo.source, promo.expires_at) == (PROMOTIONAL, "staff", soon)
    assert (paid.category, paid.expires_at) == (PAID, None)


@pytest.mark.parametrize(
    "terms",
    [
        {"category": "gift"},
        {"expires_at": timezone.now() - timedelta(minutes=1)},
        {"expires_at": timezone.now().replace(tzinfo=None) + timedelta(days=1)},
    ],
    ids=["unknown-category", "expiry-past", "expiry-naive"],
)
def test_a_staff_grant_refuses_bad_lot_terms(user, staff_user, terms):
    with pytest.raises(InvalidInputError):
        credits_grant_by_staff(
            user_id=user.pk, amount=5, memo="welcome", created_by_id=staff_user.pk, **terms
        )
    assert balance_of(user) == 0
    assert lots_of(user) == []


def test_credits_coming_in_repay_a_debt_before_filling_their_lot(user):
    first = grant(user, 10, "order-1", source_order_id=1)
    credits_debit_refund(user_id=user.pk, amount=14, reference="refund-1", source_order_id=1)
    assert balance_of(user) == -4
    assert remaining(first) == [0]

    second = grant(user, 10, "order-2")
    assert (second.amount, second.remaining) == (10, 6)
    assert_lots_hold_the_balance(user)


def test_a_staff_grant_may_not_expire_the_moment_it_is_made(user, staff_user, monkeypatch):
    now = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: now)
    with pytest.raises(InvalidInputError):
        credits_grant_by_staff(
            user_id=user.pk, amount=5, memo="welcome", created_by_id=staff_user.pk, expires_at=now
        )
    write = credits_grant_by_staff(
        user_id=user.pk,
        amount=5,
        memo="welcome",
        created_by_id=staff_user.pk,
        expires_at=now + timedelta(microseconds=1),
    )
    assert CreditLot.objects.get(entry=write.entry).expires_at == now + timedelta(microseconds=1)
    assert balance_of(user) == 5


def test_a_lots_cost_basis_is_a_whole_number_of_minor_units_zero_included(user):
    free = grant(user, 10, "order-1", kind="purchase", cost_basis=0, currency="eur")
    assert (free.cost_basis, free.currency) == (0, "eur")
    for n, cost_basis in enumerate((-1, 12.5, True), start=2):
        with pytest.raises(InvalidInputError):
            grant(user, 10, f"order-{n}", kind="purchase", cost_basis=cost_basis, currency="eur")
    assert balance_of(user) == 10
    assert lots_of(user) == [free]


# --- the draw order --------------------------------------------------------------------


def test_a_spend_draws_soonest_expiry_then_promotional_then_oldest(user):
    now = timezone.now()
    never_paid = grant(user, 10, "a")
    later_paid = grant(user, 10, "b", expires_at=now + timedelta(days=9))
    soon_paid = grant(user, 10, "c", expires_at=now + timedelta(days=2))
    soon_promo = grant(user, 10, "d", expires_at=now + timedelta(days=2), category=PROMOTIONAL)
    never_promo = grant(user, 10, "e", category=PROMOTIONAL)

    spend = credits_spend(user_id=user.pk, amount=45, reference="big")

    # soon promotional, soon paid, later paid, then the lots that never expire:
    # promotional before paid.
    assert draws_of(spend) == [
        (soon_promo.pk, 10),
        (soon_paid.pk, 10),
        (later_paid.pk, 10),
        (never_promo.pk, 10),
        (never_paid.pk, 5),
    ]
    assert remaining(never_paid, never_promo) == [5, 0]
    assert_lots_hold_the_balance(user)


def test_a_spend_takes_the_oldest_of_equal_lots_first(user):
    older = grant(user, 3, "a")
    newer = grant(user, 3, "b")
    spend = credits_spend(user_id=user.pk, amount=4, reference="x")
    assert draws_of(spend) == [(older.pk, 3), (newer.pk, 1)]


def test_a_staff_adjustment_draws_like_a_spend(user, staff_user):
    paid = grant(user, 10, "a")
    promo = grant(user, 10, "b", category=PROMOTIONAL)
    write = credits_grant_by_staff(
        user_id=user.pk, amount=-12, memo="correction", created_by_id=staff_user.pk
    )
    assert write.entry.kind == "adjustment"
    assert draws_of(write.entry) == [(promo.pk, 10), (paid.pk, 2)]
    assert_lots_hold_the_balance(user)


def test_a_staff_adjustment_of_one_credit_takes_one(user, staff_user):
    paid = grant(user, 10, "a")
    write = credits_grant_by_staff(
        user_id=user.pk, amount=-1, memo="correction", created_by_id=staff_user.pk
    )
    assert (write.entry.kind, write.entry.amount, write.balance) == ("adjustment", -1, 9)
    assert remaining(paid) == [9]


def test_a_spend_never_takes_frozen_credits(user):
    grant(user, 10, "order-1")
    credits_freeze(user_id=user.pk, amount=8, reference="dispute-1")
    with pytest.raises(InsufficientCreditsError):
        credits_spend(user_id=user.pk, amount=3, reference="x")
    credits_spend(user_id=user.pk, amount=2, reference="y")
    assert balance_of(user) == 8
    assert_lots_hold_the_balance(user)


# --- returns ---------------------------------------------------------------------------


def test_a_return_gives_back_to_the_lots_the_spend_drew_last_drawn_first(user):
    promo = grant(user, 4, "a", category=PROMOTIONAL)
    paid = grant(user, 10, "b")
    credits_spend(user_id=user.pk, amount=9, reference="order-9")
    assert remaining(promo, paid) == [0, 5]

    first = credits_spend_return(
        user_id=user.pk, spend_reference="order-9", amount=6, reference="cancel-9a"
    )
    assert first.created
    assert (first.entry.kind, first.entry.amount, first.balance) == ("return", 6, 11)
    assert first.entry.reference == "return:cancel-9a"
    assert draws_of(first.entry) == [(paid.pk, -5), (promo.pk, -1)]
    assert remaining(promo, paid) == [1, 10]

    rest = credits_spend_return(user_id=user.pk, spend_reference="order-9", reference="cancel-9b")
    assert rest.entry.amount == 3
    assert draws_of(rest.entry) == [(promo.pk, -3)]
    assert remaining(promo, paid) == [4, 10]
    assert_lots_hold_the_balance(user)


def test_a_return_is_once_per_reference_and_never_more_than_the_spend(user, large_ids):
    grant(user, 10, "a")
    credits_spend(user_id=user.pk, amount=5, reference="s")
    first = credits_spend_return(user_id=user.pk, spend_reference="s", amount=3, reference="r1")
    again = credits_spend_return(user_id=user.pk, spend_reference="s", amount=3, reference="r1")
    assert again.entry.pk == first.entry.pk and not again.created

    with pytest.raises(InvalidInputError) as too_much:
        credits_spend_return(user_id=user.pk, spend_reference="s", amount=3, reference="r2")
    assert too_much.value.status == 422
    assert too_much.value.extra["returnable"] == 2

    credits_spend_return(user_id=user.pk, spend_reference="spend:s", reference="r3")
    with pytest.raises(InvalidInputError):
        credits_spend_return(user_id=user.pk, spend_reference="s", reference="r4")
    assert balance_of(user) == 10
    assert_lots_hold_the_balance(user)


@pytest.mark.parametrize("amount", [0, -1, 1.5, True])
def test_a_return_refuses_what_is_not_a_positive_whole_number(user, amount):
    grant(user, 10, "a")
    credits_spend(user_id=user.pk, amount=5, reference="s")
    with pytest.raises(InvalidInputError, match="positive whole number"):
        credits_spend_return(user_id=user.pk, spend_reference="s", amount=amount, reference="r")
    assert balance_of(user) == 5
    assert not CreditTransaction.objects.filter(account__user=user, kind="return").exists()


def test_a_spend_whose_own_reference_has_the_prefix_is_given_back_under_it(user):
    grant(user, 10, "a")
    credits_spend(user_id=user.pk, amount=3, reference="x")  # stored as spend:x
    named = credits_spend(user_id=user.pk, amount=5, reference="spend:x")  # spend:spend:x
    write = credits_spend_return(user_id=user.pk, spend_reference="spend:x", reference="r")
    # The client's own name comes first; the stored form is the fallback.
    assert (write.entry.returns_id, write.entry.amount) == (named.pk, 5)
    assert balance_of(user) == 7


def test_a_return_reference_answers_only_its_own_spend_and_amount(user):
    grant(user, 20, "a")
    credits_spend(user_id=user.pk, amount=5, reference="s1")
    credits_spend(user_id=user.pk, amount=5, reference="s2")
    first = credits_spend_return(user_id=user.pk, spend_reference="s1", amount=2, reference="r1")
    credits_spend_return(user_id=user.pk, spend_reference="s2", amount=2, reference="r2")

    asked = [("s2", 2, "r1"), ("s1", 2, "r2"), ("s1", 3, "r1"), ("s1", 1, "r1")]
    for spend_reference, amount, reference in asked:
        with pytest.raises(CreditReferenceConflictError) as conflict:
            credits_spend_return(
                user_id=user.pk, spend_reference=spend_reference, amount=amount, reference=reference
            )
        assert conflict.value.status == 409
    # Without an amount, a repeat for the same spend answers the first return.
    again = credits_spend_return(user_id=user.pk, spend_reference="s1", reference="r1")
    assert (again.created, again.entry.pk, again.entry.amount) == (False, first.entry.pk, 2)
    assert balance_of(user) == 14
    assert_lots_hold_the_balance(user)


def test_a_single_credit_and_a_large_return_are_given_back_once(user):
    grant(user, 5000, "a")
    credits_spend(user_id=user.pk, amount=3001, reference="s")
    one = credits_spend_return(user_id=user.pk, spend_reference="s", amount=1, reference="r1")
    assert one.entry.amount == 1
    big = credits_spend_return(user_id=user.pk, spend_reference="s", amount=3000, reference="r2")
    again = credits_spend_return(user_id=user.pk, spend_reference="s", amount=3000, reference="r2")
    assert (again.created, again.entry.pk) == (False, big.entry.pk)
    assert balance_of(user) == 5000
    assert_lots_hold_the_balance(user)


def test_a_spend_given_back_in_parts_gives_each_lot_no_more_than_it_took(user):
    first = grant(user, 5, "a")
    second = grant(user, 5, "b")
    credits_spend(user_id=user.pk, amount=10, reference="s")  # `first` 5, then `second` 5

    part = credits_spend_return(user_id=user.pk, spend_reference="s", amount=2, reference="r1")
    assert draws_of(part.entry) == [(second.pk, -2)]
    rest = credits_spend_return(user_id=user.pk, spend_reference="s", reference="r2")
    # `second` is owed 3 more, `first` all 5 it gave.
    assert draws_of(rest.entry) == [(second.pk, -3), (first.pk, -5)]
    assert remaining(first, second) == [5, 5]
    assert_lots_hold_the_balance(user)


def test_a_return_reference_may_fill_the_stored_reference_and_no_more(user):
    """Stored as `return:<reference>`: the longest reference accepted fills the column."""
    grant(user, 10, "a")
    credits_spend(user_id=user.pk, amount=5, reference="s")
    room = CreditTransaction._meta.get_field("reference").max_length - len("return:")
    with pytest.raises(InvalidInputError):
        credits_spend_return(
            user_id=user.pk, spend_reference="s", amount=1, reference="r" * (room + 1)
        )
    write = credits_spend_return(
        user_id=user.pk, spend_reference="s", amount=1, reference="r" * room
    )
    assert write.entry.reference == "return:" + "r" * room
    assert balance_of(user) == 6


def test_a_return_of_an_unknown_spend_is_not_found(user, other_user):
    grant(other_user, 10, "a")
    credits_spend(user_id=other_user.pk, amount=5, reference="theirs")
    with pytest.raises(NotFoundError):
        credits_spend_return(user_id=user.pk, spend_reference="theirs", reference="r")
    grant(user, 1, "b")
    with pytest.raises(NotFoundError):
        credits_spend_return(user_id=user.pk, spend_reference="theirs", reference="r")


def test_a_return_to_an_expired_lot_is_expired_again_by_the_sweep(user):
    now = timezone.now()
    lot = grant(user, 10, "a", expires_at=now + timedelta(days=1))
    credits_spend(user_id=user.pk, amount=4, reference="s")
    assert credits_expire_due(now=now + timedelta(days=2)) == 1
    assert (balance_of(user), remaining(lot)) == (0, [0])

    credits_spend_return(user_id=user.pk, spend_reference="s", reference="r")
    assert (balance_of(user), remaining(lot)) == (4, [4])

    assert credits_expire_due(now=now + timedelta(days=2)) == 1
    assert (balance_of(user), remaining(lot)) == (0, [0])
    expiries = CreditTransaction.objects.filter(account__user=user, kind="expiry")
    assert sorted(expiries.values_list("amount", flat=True)) == [-6, -4]


def test_a_lot_expires_again_each_time_a_return_gives_it_credits_back(user):
    now = timezone.now()
    later = now + timedelta(days=2)
    lot = grant(user, 10, "a", expires_at=now + timedelta(days=1))
    credits_spend(user_id=user.pk, amount=6, reference="s")
    assert credits_expire_due(now=later) == 1

    for reference in ("r1", "r2"):
        credits_spend_return(user_id=user.pk, spend_reference="s", amount=3, reference=reference)
        assert remaining(lot) == [3]
        assert credits_expire_due(now=later) == 1
        assert (balance_of(user), remaining(lot)) == (0, [0])
    expiries = CreditTransaction.objects.filter(account__user=user, kind="expiry").order_by("id")
    assert list(expiries.values_list("amount", flat=True)) == [-4, -3, -3]
    assert [draws_of(e) for e in expiries] == [[(lot.pk, 4)], [(lot.pk, 3)], [(lot.pk, 3)]]
    # Each time is its own entry, numbered from the first.
    assert list(expiries.values_list("reference", flat=True)) == [
        f"expiry:lot-{lot.pk}:{n}" for n in (1, 2, 3)
    ]


def test_a_return_while_in_debt_repays_it_first(user):
    lot = grant(user, 10, "order-1", source_order_id=1)
    credits_spend(user_id=user.pk, amount=8, reference="s")
    credits_debit_refund(user_id=user.pk, amount=10, reference="refund-1", source_order_id=1)
    assert balance_of(user) == -8

    write = credits_spend_return(user_id=user.pk, spend_reference="s", amount=8, reference="r")
    assert write.balance == 0
    assert draws_of(write.entry) == []
    assert remaining(lot) == [0]
    assert_lots_hold_the_balance(user)


# --- expiry ----------------------------------------------------------------------------


def test_the_sweep_expires_what_is_left_once_per_lot(user, other_user):
    now = timezone.now()
    due = grant(user, 10, "a", expires_at=now - timedelta(minutes=1))
    later = grant(user, 10, "b", expires_at=now + timedelta(days=1))
    never = grant(user, 10, "c")
    theirs = grant(other_user, 7, "d", expires_at=now - timedelta(days=1))
    credits_spend(user_id=user.pk, amount=3, reference="s")  # from `due`

    assert credits_expire_due(now=now) == 2
    assert credits_expire_due(now=now) == 0
    assert remaining(due, later, never, theirs) == [0, 10, 10, 0]
    entry = CreditTransaction.objects.get(account__user=user, kind="expiry")
    assert (entry.amount, entry.balance_after) == (-7, 20)
    assert draws_of(entry) == [(due.pk, 7)]
    assert (balance_of(user), balance_of(other_user)) == (20, 0)
    assert credit_lot_expire(lot_id=later.pk, now=now) is None
    assert credit_lot_expire(lot_id=due.pk, now=now) is None  # expired already
    assert CreditTransaction.objects.filter(kind="expiry").count() == 2


def test_the_sweep_expires_a_lot_down_to_its_last_credit(user):
    now = timezone.now()
    lot = grant(user, 10, "a", expires_at=now - timedelta(minutes=1))
    credits_spend(user_id=user.pk, amount=9, reference="s")
    assert credits_expire_due(now=now) == 1
    assert (balance_of(user), remaining(lot)) == (0, [0])
    entry = CreditTransaction.objects.get(account__user=user, kind="expiry")
    assert draws_of(entry) == [(lot.pk, 1)]


def test_the_sweep_reports_its_progress_up_to_every_lot_due(user, other_user):
    now = timezone.now()
    grant(user, 10, "a", expires_at=now - timedelta(minutes=2))
    grant(other_user, 5, "b", expires_at=now - timedelta(minutes=1))
    seen = []
    assert credits_expire_due(now=now, progress=lambda done, total: seen.append((done, total))) == 2
    assert seen == [(1, 2), (2, 2)]


def test_the_sweep_leaves_alone_the_lots_it_has_nothing_to_take_from(user, other_user):
    now = timezone.now()
    past = now - timedelta(minutes=1)
    grant(user, 10, "a", expires_at=past)
    spent = grant(other_user, 4, "b", expires_at=past)
    credits_spend(user_id=other_user.pk, amount=4, reference="s")
    assert remaining(spent) == [0]
    assert credits_expire_due(now=now) == 1

    # Expired or spent out, no lot is looked at again: one statement finds nothing due.
    seen = []
    with CaptureQueriesContext(connection) as ctx:
        assert credits_expire_due(now=now, progress=lambda done, total: seen.append(total)) == 0
    assert len(ctx.captured_queries) == 1
    assert seen == []
    assert (balance_of(user), balance_of(other_user)) == (0, 0)


def test_the_sweep_may_take_frozen_credits(user):
    now = timezone.now()
    grant(user, 10, "a", expires_at=now - timedelta(seconds=1))
    credits_freeze(user_id=user.pk, amount=10, reference="dispute-1")
    assert credits_expire_due(now=now) == 1
    assert balance_of(user) == 0
    with pytest.raises(InsufficientCreditsError):
        credits_spend_or_replay(user_id=user.pk, amount=1, reference="x")


def test_the_expire_command_reports_what_it_expired(user):
    from io import StringIO

    from django.core.management import call_command

    grant(user, 10, "a", expires_at=timezone.now() - timedelta(seconds=1))
    out, err = StringIO(), StringIO()
    call_command("credits_expire", stdout=out, stderr=err)
    assert "1 credit lots expired." in out.getvalue()
    assert "credit lots" in err.getvalue()
    assert balance_of(user) == 0


def test_the_sweep_is_scheduled():
    from django_q.models import Schedule

    schedule = Schedule.objects.get(func="credits.tasks.credits_expire")
    assert schedule.repeats == -1


# --- clawback --------------------------------------------------------------------------


def test_a_refund_debit_takes_its_own_orders_lot_first(user):
    promo = grant(user, 10, "a", category=PROMOTIONAL, expires_at=timezone.now())
    bought = grant(user, 10, "order-5", source_order_id=5)
    other = grant(user, 10, "order-6", source_order_id=6)
    credits_spend(user_id=user.pk, amount=13, reference="s")  # promo 10, then `bought` 3
    assert remaining(promo, bought, other) == [0, 7, 10]

    debit = credits_debit_refund(
        user_id=user.pk, amount=10, reference="refund-5", source_order_id=5
    )
    # What is left of order 5's lot, then the rest in draw order.
    assert draws_of(debit) == [(bought.pk, 7), (other.pk, 3)]
    assert balance_of(user) == 7
    assert_lots_hold_the_balance(user)


def test_a_refund_debit_takes_its_own_orders_lot_before_a_later_orders(user):
    now = timezone.now()
    bought = grant(user, 10, "order-70005", source_order_id=70_005)
    later = grant(
        user, 10, "order-70006", source_order_id=70_006, expires_at=now + timedelta(days=1)
    )
    staff = grant(user, 10, "gift", expires_at=now + timedelta(days=1))

    debit = credits_debit_refund(
        user_id=user.pk, amount=12, reference="refund-70005", source_order_id=70_005
    )
    # Order 70006's lot and the gift expire sooner, but order 70005's own credits go
    # first (ids past the small integers Python shares: compared by value).
    assert draws_of(debit) == [(bought.pk, 10), (later.pk, 2)]
    assert remaining(bought, later, staff) == [0, 8, 10]
    assert_lots_hold_the_balance(user)


def test_a_refund_debit_past_its_own_lot_draws_promotional_before_paid(user):
    own = grant(
        user, 10, "order-9", source_order_id=9, expires_at=timezone.now() + timedelta(days=1)
    )
    paid = grant(user, 10, "order-5", source_order_id=5)
    promo = grant(user, 10, "welcome", category=PROMOTIONAL)
    credits_spend(user_id=user.pk, amount=10, reference="s")  # all of order 9's lot
    assert remaining(own, paid, promo) == [0, 10, 10]

    debit = credits_debit_refund(user_id=user.pk, amount=4, reference="refund-9", source_order_id=9)
    # Neither lot expires: the promotional one goes first, though the paid one is older.
    assert draws_of(debit) == [(promo.pk, 4)]
    assert remaining(own, paid, promo) == [0, 10, 6]
    assert_lots_hold_the_balance(user)


def test_a_refund_debit_past_its_own_lots_draws_in_the_spends_order(user):
    now = timezone.now()
    never_paid = grant(user, 10, "a")
    later_paid = grant(user, 10, "b", expires_at=now + timedelta(days=9))
    soon_paid = grant(user, 10, "c", expires_at=now + timedelta(days=2))
    soon_promo = grant(user, 10, "d", expires_at=now + timedelta(days=2), category=PROMOTIONAL)
    never_promo = grant(user, 10, "e", category=PROMOTIONAL)

    debit = credits_debit_refund(
        user_id=user.pk, amount=41, reference="refund-9", source_order_id=9
    )
    assert draws_of(debit) == [
        (soon_promo.pk, 10),
        (soon_paid.pk, 10),
        (later_paid.pk, 10),
        (never_promo.pk, 10),
        (never_paid.pk, 1),
    ]
    assert remaining(never_paid) == [9]
    assert_lots_hold_the_balance(user)


def test_what_was_spent_becomes_a_debt(user):
    bought = grant(user, 10, "order-5", source_order_id=5)
    credits_spend(user_id=user.pk, amount=6, reference="s")
    debit = credits_debit_refund(
        user_id=user.pk, amount=10, reference="refund-5", source_order_id=5
    )
    assert draws_of(debit) == [(bought.pk, 4)]
    assert balance_of(user) == -6
    assert_lots_hold_the_balance(user)
    with pytest.raises(InsufficientCreditsError):
        credits_spend(user_id=user.pk, amount=1, reference="t")
