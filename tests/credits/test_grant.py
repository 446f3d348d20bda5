"""Adding credits: one statement under the account's lock, once per reference, whatever races it."""

from __future__ import annotations

import pytest
from django.db import transaction

from credits.errors import CreditReferenceConflictError
from credits.models import CreditAccount, CreditTransaction
from credits.services import credits_grant, credits_grant_by_staff, credits_spend
from kernel.errors import InvalidInputError
from tests.credits.ledger_checks import balance_of, run_together


@pytest.mark.django_db
def test_a_first_grant_opens_the_account(user):
    assert not CreditAccount.objects.filter(user=user).exists()
    entry = credits_grant(user_id=user.pk, amount=30, reference="order-1", kind="purchase")
    assert (entry.amount, entry.balance_after, entry.kind, entry.reference) == (
        30,
        30,
        "purchase",
        "order-1",
    )
    assert entry.pk == CreditTransaction.objects.get(reference="order-1").pk
    assert balance_of(user) == 30


@pytest.mark.django_db
def test_a_repeated_grant_answers_the_first_entry_and_moves_nothing(user, fund):
    fund(user, 10)
    first = credits_grant(user_id=user.pk, amount=5, reference="order-7", kind="purchase")
    again = credits_grant(user_id=user.pk, amount=5, reference="order-7", kind="purchase")
    assert again.pk == first.pk
    assert CreditTransaction.objects.filter(reference="order-7").count() == 1
    assert balance_of(user) == 15


@pytest.mark.django_db
def test_a_conflicting_grant_inside_a_transaction_leaves_it_whole(user, fund):
    """No savepoint guards the grant inside a caller's transaction: a refused repeat must
    leave that transaction usable and the balance as it was."""
    fund(user, 10)
    credits_grant(user_id=user.pk, amount=5, reference="order-8", kind="purchase")
    with transaction.atomic():
        with pytest.raises(CreditReferenceConflictError):
            credits_grant(user_id=user.pk, amount=6, reference="order-8", kind="purchase")
        assert balance_of(user) == 15  # the transaction still answers, and nothing moved
        credits_grant(user_id=user.pk, amount=1, reference="order-9")
    assert balance_of(user) == 16


@pytest.mark.django_db
def test_a_negative_adjustment_still_refuses_to_overdraw(user, fund):
    from credits.errors import InsufficientCreditsError

    fund(user, 3)
    with pytest.raises(InsufficientCreditsError):
        credits_grant(user_id=user.pk, amount=-4, reference="adj-1", kind="adjustment")
    credits_grant(user_id=user.pk, amount=-3, reference="adj-2", kind="adjustment")
    assert balance_of(user) == 0


@pytest.mark.django_db(transaction=True)
def test_racing_grants_and_spends_keep_the_balance_equal_to_the_ledger(user, fund):
    fund(user, 50)

    def work(i: int):
        if i % 2:
            return credits_spend(user_id=user.pk, amount=3, reference=f"s{i}")
        return credits_grant(user_id=user.pk, amount=2, reference=f"order-{i}", kind="purchase")

    results = run_together(20, work)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert balance_of(user) == 50 + 10 * 2 - 10 * 3
    entries = CreditTransaction.objects.filter(account__user=user).order_by("id")
    running = 0
    for entry in entries:  # each entry saw the balance the one before it left
        running += entry.amount
        assert entry.balance_after == running


@pytest.mark.django_db(transaction=True)
def test_racing_grants_of_one_reference_write_one_entry(user):
    results = run_together(
        12, lambda i: credits_grant(user_id=user.pk, amount=9, reference="order-1", kind="purchase")
    )
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len({r.pk for r in results}) == 1
    assert CreditTransaction.objects.filter(account__user=user).count() == 1
    assert balance_of(user) == 9


@pytest.mark.django_db
def test_a_grant_a_person_made_is_audited_and_a_systems_is_not(user, staff_user):
    from platform_core.models import AuditEntry

    credits_grant(user_id=user.pk, amount=4, reference="order-3", kind="purchase")
    assert not AuditEntry.objects.exists()
    entry = credits_grant(
        user_id=user.pk, amount=6, reference="gift-1", created_by_id=staff_user.pk
    )
    [audit] = AuditEntry.objects.filter(action="credits.grant")
    assert audit.actor_id == staff_user.pk
    assert audit.details["balance_after"] == entry.balance_after == 10


@pytest.mark.django_db
def test_a_staff_grant_reference_may_fill_the_stored_reference_and_no_more(user, staff_user):
    """Stored as `grant:<reference>`: the longest reference accepted fills the column."""
    room = CreditTransaction._meta.get_field("reference").max_length - len("grant:")
    written = credits_grant_by_staff(
        user_id=user.pk,
        amount=5,
        memo="goodwill",
        created_by_id=staff_user.pk,
        reference="t" * room,
    )
    assert written.created
    assert written.entry.reference == "grant:" + "t" * room
    for reference in ("u" * (room + 1), ""):
        with pytest.raises(InvalidInputError):
            credits_grant_by_staff(
                user_id=user.pk,
                amount=5,
                memo="goodwill",
                created_by_id=staff_user.pk,
                reference=reference,
            )
    assert balance_of(user) == 5


@pytest.mark.django_db
def test_a_repeated_staff_grant_answers_the_first_entry_and_the_balance(user, staff_user):
    first = credits_grant_by_staff(
        user_id=user.pk, amount=5000, memo="goodwill", created_by_id=staff_user.pk, reference="t-9"
    )
    again = credits_grant_by_staff(
        user_id=user.pk, amount=5000, memo="goodwill", created_by_id=staff_user.pk, reference="t-9"
    )
    assert (again.created, again.entry.pk, again.balance) == (False, first.entry.pk, 5000)
    assert balance_of(user) == 5000


@pytest.mark.django_db
def test_a_grant_repeated_with_a_smaller_amount_or_another_kind_conflicts(user, fund):
    fund(user, 10)
    credits_grant(user_id=user.pk, amount=5, reference="order-8", kind="purchase")
    with pytest.raises(CreditReferenceConflictError):
        credits_grant(user_id=user.pk, amount=4, reference="order-8", kind="purchase")
    credits_grant(user_id=user.pk, amount=5, reference="gift-2")
    with pytest.raises(CreditReferenceConflictError):
        credits_grant(user_id=user.pk, amount=5, reference="gift-2", kind="purchase")
    assert balance_of(user) == 20
    assert CreditTransaction.objects.filter(account__user=user).count() == 3


@pytest.mark.django_db
def test_one_entry_moves_at_most_a_billion_credits(user):
    """The API publishes the same bound as the amount's maximum."""
    credits_grant(user_id=user.pk, amount=10**9, reference="order-1", kind="purchase")
    with pytest.raises(InvalidInputError):
        credits_grant(user_id=user.pk, amount=10**9 + 1, reference="order-2", kind="purchase")
    with pytest.raises(InvalidInputError):
        credits_grant(user_id=user.pk, amount=-(10**9 + 1), reference="adj-1", kind="adjustment")
    credits_grant(user_id=user.pk, amount=-(10**9), reference="adj-2", kind="adjustment")
    assert balance_of(user) == 0


@pytest.mark.django_db
@pytest.mark.parametrize("amount", [0, 1.5, True, "3", None])
def test_a_grant_is_a_non_zero_whole_number_of_credits(user, amount):
    with pytest.raises(InvalidInputError):
        credits_grant(user_id=user.pk, amount=amount, reference="order-1", kind="purchase")
    assert balance_of(user) == 0
    assert not CreditTransaction.objects.filter(account__user=user).exists()


@pytest.mark.django_db
def test_a_grant_reference_is_1_to_the_columns_length(user):
    longest = CreditTransaction._meta.get_field("reference").max_length
    entry = credits_grant(user_id=user.pk, amount=5, reference="r" * longest)
    assert entry.reference == "r" * longest
    for reference in ("r" * (longest + 1), ""):
        with pytest.raises(InvalidInputError):
            credits_grant(user_id=user.pk, amount=5, reference=reference)
    assert balance_of(user) == 5
