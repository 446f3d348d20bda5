"""Reads of the credit ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import BigIntegerField, ExpressionWrapper, F, Min, QuerySet, Sum
from django.utils import timezone

from credits.models import CreditAccount, CreditLot, CreditPack, CreditTransaction

# "Expiring soon", as a client's balance shows it.
EXPIRING_SOON = timedelta(days=30)
# The order spending draws lots in (see `credits.services`), as a queryset's ordering;
# "promotional" sorts after "paid", so descending puts it first.
LOT_DRAW_ORDERING = (F("expires_at").asc(nulls_last=True), "-category", "id")


def credits_balance_get(*, user_id: int) -> int:
    account = CreditAccount.objects.filter(user_id=user_id).only("balance").first()
    return account.balance if account else 0


def credits_transactions_for_user(*, user_id: int) -> QuerySet[CreditTransaction]:
    return CreditTransaction.objects.filter(account__user_id=user_id).order_by("-id")


def credits_ledger_sum(*, user_id: int) -> int:
    total = CreditTransaction.objects.filter(account__user_id=user_id).aggregate(s=Sum("amount"))
    return total["s"] or 0


def credit_packs_active() -> QuerySet[CreditPack]:
    return CreditPack.objects.filter(active=True)


def credits_frozen_get(*, user_id: int) -> int:
    """Credits of the balance held by open freezes (a disputed purchase): not spendable."""
    account = CreditAccount.objects.filter(user_id=user_id).only("frozen").first()
    return account.frozen if account else 0


def credits_balance_and_frozen_get(*, user_id: int) -> tuple[int, int]:
    """The balance and the part of it frozen, in one read."""
    account = CreditAccount.objects.filter(user_id=user_id).only("balance", "frozen").first()
    return (account.balance, account.frozen) if account else (0, 0)


def credits_lots_open_for_user(*, user_id: int) -> QuerySet[CreditLot]:
    """My lots with credits left, in the order spending draws them."""
    return CreditLot.objects.filter(account__user_id=user_id, remaining__gt=0).order_by(
        *LOT_DRAW_ORDERING
    )


def credits_lots_for_user(*, user_id: int) -> QuerySet[CreditLot]:
    """All my lots, spent and expired ones too, newest first."""
    return CreditLot.objects.filter(account__user_id=user_id).order_by("-id")


def credits_by_category_get(*, user_id: int) -> dict[str, int]:
    """What is left of my lots per category (every category, 0 when none)."""
    totals = dict.fromkeys(CreditLot.Category.values, 0)
    rows = (
        CreditLot.objects.filter(account__user_id=user_id, remaining__gt=0)
        .values("category")
        .annotate(s=Sum("remaining"))
    )
    totals.update({row["category"]: row["s"] for row in rows})
    return totals


@dataclass(frozen=True)
class ExpiringSoon:
    credits: int
    within_days: int
    first_expires_at: datetime | None


def credits_expiring_soon_get(
    *, user_id: int, within: timedelta = EXPIRING_SOON, now: datetime | None = None
) -> ExpiringSoon:
    """My credits that expire within `within` from now, and when the first of them do."""
    now = now or timezone.now()
    found = CreditLot.objects.filter(
        account__user_id=user_id, remaining__gt=0, expires_at__lte=now + within
    ).aggregate(s=Sum("remaining"), first=Min("expires_at"))
    return ExpiringSoon(
        credits=found["s"] or 0, within_days=within.days, first_expires_at=found["first"]
    )


# --- across accounts (the financial dashboard) -----------------------------------------


def credits_outstanding_by_category() -> dict[str, int]:
    """Credits left in every account's lots, per category: what the platform still owes."""
    totals = dict.fromkeys(CreditLot.Category.values, 0)
    rows = CreditLot.objects.filter(remaining__gt=0).values("category").annotate(s=Sum("remaining"))
    totals.update({row["category"]: row["s"] for row in rows})
    return totals


def credits_expired_between(*, since: datetime, until: datetime) -> int:
    """Credits the expiry sweep took in [since, until)."""
    total = CreditTransaction.objects.filter(
        kind=CreditTransaction.Kind.EXPIRY, created_at__gte=since, created_at__lt=until
    ).aggregate(s=Sum("amount"))
    return -(total["s"] or 0)


def credits_deferred_revenue() -> dict[str, int]:
    """Per currency, the cost basis of the paid credits not yet used: for each paid lot
    with a known price, its price times the share of it left (rounded down), in minor
    units. Revenue earned only when the credits are spent or expire."""
    share = ExpressionWrapper(
        F("cost_basis") * F("remaining") / F("amount"), output_field=BigIntegerField()
    )
    rows = (
        CreditLot.objects.filter(
            category=CreditLot.Category.PAID, remaining__gt=0, cost_basis__isnull=False
        )
        .exclude(currency="")
        .values("currency")
        .annotate(s=Sum(share))
        .order_by("currency")
    )
    return {row["currency"]: row["s"] for row in rows}
