"""Only a succeeded SetupIntent saves its card: one that still waits for the customer
(3-D Secure), is processing, or was canceled may carry a payment method of our
customer's, but nothing is saved from it."""

from __future__ import annotations

import pytest

from billing.models import SavedPaymentMethod
from billing.services.cards import card_setup_complete, stripe_customer_get_or_create
from billing.stripe_objects import SetupIntentData
from tests.billing.test_cards import new_card


@pytest.mark.parametrize("status", ["requires_action", "processing", "canceled"])
def test_a_setup_that_has_not_succeeded_saves_no_card(status, user, stripe_server):
    customer_id = stripe_customer_get_or_create(user_id=user.pk)
    pm_id = new_card()
    setup = SetupIntentData(
        id="seti_states",
        status=status,
        client_secret="seti_states_secret",
        customer_id=customer_id,
        payment_method_id=pm_id,
        metadata={},
    )
    assert card_setup_complete(setup=setup) is None
    assert not SavedPaymentMethod.objects.exists()
