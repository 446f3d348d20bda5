"""django-q2 task entry points of the credit ledger. They take ids, never model instances."""

from __future__ import annotations

from credits.services import credits_expire_due


def credits_expire() -> str:
    """The scheduled expiry sweep: what is left of every lot past its expiry."""
    return f"{credits_expire_due()} credit lots expired"
