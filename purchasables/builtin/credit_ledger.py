"""The credit ledger as billing sees it: taking credits to pay an order, giving them back.

Billing never imports the ledger; it reaches it through `tollgate_credits_take`
and `tollgate_credits_give_back`, which this built-in plugin implements with
`credits.services`. A take is a ledger spend under the order's reference; a
give-back returns credits of that spend (never more than it took) or, for card
money refunded as credits, grants new paid credits tied to the order.

The rule: every write here is idempotent on its reference, so a retried or
repeated call never moves a balance twice.
"""

from __future__ import annotations

from credits.errors import InsufficientCreditsError
from credits.models import CreditLot, CreditTransaction
from credits.selectors import credits_balance_and_frozen_get
from credits.services import (
    SPEND_REFERENCE_PREFIX,
    credits_grant,
    credits_spend_or_replay,
    credits_spend_return,
)
from purchasables import hookimpl

# A partial take reads what is available, then spends it; a concurrent spend in
# between makes it read again, this many times at most.
PARTIAL_TAKE_ATTEMPTS = 5


def _available(user_id: int) -> int:
    balance, frozen = credits_balance_and_frozen_get(user_id=user_id)
    return max(0, balance - frozen)


def _taken_before(user_id: int, reference: str) -> int | None:
    entry = (
        CreditTransaction.objects.filter(
            account__user_id=user_id,
            reference=SPEND_REFERENCE_PREFIX + reference,
            kind=CreditTransaction.Kind.SPEND,
        )
        .only("amount")
        .first()
    )
    return None if entry is None else -entry.amount


def _missing(user_id: int, credits: int, exc: InsufficientCreditsError) -> InsufficientCreditsError:
    available = _available(user_id)
    missing = max(1, credits - available)
    return InsufficientCreditsError(
        f"Not enough credits: this costs {credits}, {available} are available; "
        f"{missing} more are needed.",
        required=credits,
        available=available,
        missing=missing,
        **{k: v for k, v in exc.extra.items() if k in ("balance", "frozen")},
    )


@hookimpl
def tollgate_credits_take(
    user_id: int, credits: int, reference: str, memo: str, partial: bool
) -> int:
    before = _taken_before(user_id, reference)
    if before is not None:
        return before
    if not partial:
        try:
            write = credits_spend_or_replay(
                user_id=user_id, amount=credits, reference=reference, memo=memo
            )
        except InsufficientCreditsError as exc:
            raise _missing(user_id, credits, exc) from exc
        return -write.entry.amount
    for _ in range(PARTIAL_TAKE_ATTEMPTS):
        take = min(credits, _available(user_id))
        if take <= 0:
            return 0
        try:
            write = credits_spend_or_replay(
                user_id=user_id, amount=take, reference=reference, memo=memo
            )
        except InsufficientCreditsError:
            continue  # spent meanwhile: look again
        return -write.entry.amount
    return 0


@hookimpl
def tollgate_credits_give_back(
    user_id: int,
    spend_reference: str | None,
    credits: int,
    reference: str,
    memo: str,
    order_id: int,
) -> int:
    if spend_reference is not None:
        write = credits_spend_return(
            user_id=user_id,
            spend_reference=spend_reference,
            amount=credits,
            reference=reference,
            memo=memo,
        )
        return write.entry.amount
    entry = credits_grant(
        user_id=user_id,
        amount=credits,
        reference=reference,
        kind=CreditTransaction.Kind.REFUND,
        memo=memo,
        category=CreditLot.Category.PAID,
        source_order_id=order_id,
    )
    return entry.amount
