"""The credits API: my balance and ledger, idempotent spends, staff grants.

The rule: operations are thin (parse, call one service, render) and act only on
the caller's own account, except `credits_grant_create`, which is staff-only.
Authentication comes from `platform_core.api` (the `NinjaAPI`'s default
`auth=user_auth`, fail closed), since `credits` may not import `platform_core`.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Router, Status
from ninja.pagination import paginate

from credits.models import CreditLot, CreditTransaction
from credits.schemas import (
    BALANCE_LOTS_SHOWN,
    CreditBalanceOut,
    CreditEntryOut,
    CreditGrantIn,
    CreditLotOut,
    CreditSpendIn,
    CreditTransactionOut,
)
from credits.selectors import (
    credits_balance_and_frozen_get,
    credits_by_category_get,
    credits_expiring_soon_get,
    credits_lots_for_user,
    credits_lots_open_for_user,
    credits_transactions_for_user,
)
from credits.services import LedgerWrite, credits_grant_by_staff, credits_spend_or_replay
from kernel.errors import PermissionDeniedError
from kernel.pagination import BoundedPageNumberPagination
from kernel.schemas import ErrorOut

router = Router(tags=["credits"])

TRANSACTIONS_PAGE_SIZE = 20
TRANSACTIONS_MAX_PAGE_SIZE = 100


def _entry_response(write: LedgerWrite) -> Status:
    body = {"entry": write.entry, "balance": write.balance}
    return Status(201 if write.created else 200, body)


@router.get("/balance/", response={200: CreditBalanceOut, 401: ErrorOut})
def credits_balance(request: HttpRequest):
    """My balance, what is left per category, what expires soon, and the lots drawn next."""
    user_id = request.user.pk
    balance, frozen = credits_balance_and_frozen_get(user_id=user_id)
    open_lots = credits_lots_open_for_user(user_id=user_id)
    soon = credits_expiring_soon_get(user_id=user_id)
    body = {
        "balance": balance,
        "frozen": frozen,
        "by_category": credits_by_category_get(user_id=user_id),
        "expiring_soon": {
            "credits": soon.credits,
            "within_days": soon.within_days,
            "first_expires_at": soon.first_expires_at,
        },
        "lots": list(open_lots[:BALANCE_LOTS_SHOWN]),
        "lots_open": open_lots.count(),
    }
    return Status(200, body)


@router.get("/lots/", response={200: list[CreditLotOut], 401: ErrorOut, 422: ErrorOut})
@paginate(
    BoundedPageNumberPagination,
    page_size=TRANSACTIONS_PAGE_SIZE,
    max_page_size=TRANSACTIONS_MAX_PAGE_SIZE,
)
def credits_lots(request: HttpRequest, open: bool = False) -> QuerySet[CreditLot]:
    """My lots, newest first; with `open=true` only those with credits left, in the order
    spending draws them."""
    if open:
        return credits_lots_open_for_user(user_id=request.user.pk)
    return credits_lots_for_user(user_id=request.user.pk)


@router.get(
    "/transactions/",
    response={200: list[CreditTransactionOut], 401: ErrorOut, 422: ErrorOut},
)
@paginate(
    BoundedPageNumberPagination,
    page_size=TRANSACTIONS_PAGE_SIZE,
    max_page_size=TRANSACTIONS_MAX_PAGE_SIZE,
)
def credits_transactions(request: HttpRequest) -> QuerySet[CreditTransaction]:
    """My ledger entries, newest first."""
    return credits_transactions_for_user(user_id=request.user.pk)


@router.post(
    "/spend/",
    response={
        200: CreditEntryOut,
        201: CreditEntryOut,
        401: ErrorOut,
        409: ErrorOut,
        422: ErrorOut,
    },
)
def credits_spend_create(request: HttpRequest, payload: CreditSpendIn):
    """Spend credits once per `reference`: 201 when spent, 200 with the same entry on a repeat.

    409 `insufficient_credits` when the balance (or a debt) does not cover it;
    409 `credit_reference_conflict` when the reference was spent with another amount.
    """
    write = credits_spend_or_replay(
        user_id=request.user.pk,
        amount=payload.amount,
        reference=payload.reference,
        memo=payload.memo,
    )
    return _entry_response(write)


@router.post(
    "/grant/",
    response={
        200: CreditEntryOut,
        201: CreditEntryOut,
        401: ErrorOut,
        403: ErrorOut,
        404: ErrorOut,
        409: ErrorOut,
        422: ErrorOut,
    },
)
def credits_grant_create(request: HttpRequest, payload: CreditGrantIn):
    """Staff: grant credits (amount > 0) or adjust them down (amount < 0, never below zero).

    A grant is a lot of `category` (promotional by default) that expires at
    `expires_at`, or never; an adjustment draws from the lots as a spend does.

    201 when written, 200 with the first entry when the `reference` was used before.
    """
    if not (request.user.is_staff and request.user.has_perm("credits.add_credittransaction")):
        raise PermissionDeniedError("Granting credits is for finance staff only.")
    write = credits_grant_by_staff(
        user_id=payload.user_id,
        amount=payload.amount,
        reference=payload.reference,
        memo=payload.memo,
        created_by_id=request.user.pk,
        category=payload.category,
        expires_at=payload.expires_at,
    )
    return _entry_response(write)
