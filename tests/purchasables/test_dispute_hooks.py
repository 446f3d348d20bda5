"""The built-in credit plugins' dispute hook, called through the registry as billing
calls it: the order's share of the credits frozen while open, released once after."""

from __future__ import annotations

import pytest

from credits.selectors import credits_balance_get, credits_frozen_get
from credits.services import credits_grant
from purchasables.registry import registry
from purchasables.types import DisputeInfo, OrderInfo

pytestmark = pytest.mark.django_db


def test_a_subscription_cycles_credits_are_frozen_while_disputed_then_released(user):
    order = OrderInfo(
        order_id=77,
        user_id=user.pk,
        purchase_type="subscription",
        order_type="subscription",
        amount=1900,
        currency="usd",
        metadata={},
        data={"plan_id": 1, "credits": 100},
    )
    credits_grant(user_id=user.pk, amount=100, reference="order-77", kind="subscription")

    def dispute(state: str) -> DisputeInfo:
        return DisputeInfo(
            dispute_id=5,
            stripe_dispute_id="dp_sub",
            state=state,
            status="needs_response",
            amount=1900,
            at_stake=950,  # half the cycle was refunded before
            currency="usd",
            reason="subscription_canceled",
        )

    assert registry.dispute(order, dispute("open")) == {
        "credits_frozen": 50,
        "credits_disputed": 50,
    }
    assert registry.dispute(order, dispute("open"))["credits_frozen"] == 50  # a repeat
    assert credits_frozen_get(user_id=user.pk) == 50
    assert registry.dispute(order, dispute("won")) == {"credits_released": 50}
    assert registry.dispute(order, dispute("won")) == {"credits_released": 0}
    assert (credits_balance_get(user_id=user.pk), credits_frozen_get(user_id=user.pk)) == (100, 0)
