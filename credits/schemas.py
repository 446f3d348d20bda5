"""Request and response bodies of the credits API.

The rule: input schemas forbid unknown fields and take amounts as strict
integers (no string, float or boolean slips through as a number of credits);
output schemas list their fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from ninja import Field, ModelSchema, Schema
from pydantic import AwareDatetime, field_validator

from credits.models import CreditLot, CreditTransaction
from credits.services import (
    GRANT_REFERENCE_MAX_LENGTH,
    LEDGER_ENTRY_MAX,
    MEMO_MAX_LENGTH,
    SPEND_REFERENCE_MAX_LENGTH,
)

# The lots a balance shows, the first to be drawn first.
BALANCE_LOTS_SHOWN = 20


class CreditLotOut(Schema):
    """Credits that came in together, and what is left of them."""

    id: int
    category: Literal["paid", "promotional"] = Field(
        ..., description="`paid` (bought, or refunded to credits) or `promotional` (granted)."
    )
    source: str
    amount: int = Field(..., description="The credits that came in.")
    remaining: int = Field(..., description="What is left of them to spend.")
    expires_at: datetime | None = Field(
        ..., description="When what is left expires; null when it never does."
    )
    created_at: datetime


class CreditsByCategoryOut(Schema):
    paid: int
    promotional: int


class CreditsExpiringSoonOut(Schema):
    credits: int = Field(..., description="Credits that expire within `within_days`.")
    within_days: int
    first_expires_at: datetime | None


class CreditBalanceOut(Schema):
    balance: int
    frozen: int = Field(
        0,
        description="Credits of the balance held while a purchase is disputed: "
        "they cannot be spent until the dispute is resolved.",
    )
    currency_unit: Literal["credits"] = "credits"
    by_category: CreditsByCategoryOut = Field(
        ..., description="What is left of the lots, per category."
    )
    expiring_soon: CreditsExpiringSoonOut
    lots: list[CreditLotOut] = Field(
        ...,
        description=f"The lots with credits left, in the order spending draws them: the "
        f"soonest expiry first (none last), promotional before paid, then the oldest. At "
        f"most {BALANCE_LOTS_SHOWN}; `GET /credits/lots/` lists them all.",
    )
    lots_open: int = Field(..., description="How many lots have credits left.")


class CreditTransactionOut(ModelSchema):
    created_at: datetime

    class Meta:
        model = CreditTransaction
        fields = ["id", "amount", "kind", "reference", "balance_after", "memo", "created_at"]


class CreditSpendIn(Schema):
    model_config = {"extra": "forbid"}

    amount: int = Field(..., strict=True, gt=0, le=LEDGER_ENTRY_MAX)
    reference: str = Field(
        ...,
        min_length=1,
        max_length=SPEND_REFERENCE_MAX_LENGTH,
        description="Your key for this spend: the same reference is spent once. "
        "It is stored as `spend:<reference>`.",
    )
    memo: str = Field("", max_length=MEMO_MAX_LENGTH)


class CreditGrantIn(Schema):
    model_config = {"extra": "forbid"}

    user_id: int = Field(..., strict=True, gt=0)
    amount: int = Field(
        ...,
        strict=True,
        ge=-LEDGER_ENTRY_MAX,
        le=LEDGER_ENTRY_MAX,
        description="Positive to grant; negative to adjust down (never below zero).",
    )
    reference: str | None = Field(
        None,
        min_length=1,
        max_length=GRANT_REFERENCE_MAX_LENGTH,
        description="Makes the grant idempotent; stored as `grant:<reference>`. "
        "One is generated when absent.",
    )
    memo: str = Field(..., min_length=1, max_length=MEMO_MAX_LENGTH, description="Why.")
    category: Literal["paid", "promotional"] = Field(
        CreditLot.Category.PROMOTIONAL.value,
        description="A grant's lot: `promotional` (the default) or `paid`.",
    )
    expires_at: AwareDatetime | None = Field(
        None, description="When what is left of a grant expires (a time to come); never if null."
    )

    @field_validator("amount")
    @classmethod
    def _amount_not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("amount may not be zero")
        return value

    @field_validator("memo")
    @classmethod
    def _memo_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("memo says why credits are granted")
        return value


class CreditEntryOut(Schema):
    """One ledger write: the entry and the account's balance after it."""

    entry: CreditTransactionOut
    balance: int
