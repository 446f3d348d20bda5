"""Paying with credits in the web client: the balance, the choice, honest refusals,
and cancelling a booking for the credits back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from bookings.models import Booking, Service
from credits.selectors import credits_balance_get
from credits.services import credits_grant
from tests.bookings.factories import ServiceFactory, ServiceSessionFactory
from tests.webclient.conftest import snap
from tests.webclient.test_browser import VISA, add_card, app, go  # noqa: F401  (the logged-in client)

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed"
)
expect = sync_api.expect

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_book_with_credits_see_what_is_missing_and_cancel_for_them_back(app, request, user):  # noqa: F811
    credits_grant(user_id=user.pk, amount=100, reference="fund")
    start = timezone.now() + timedelta(days=5)
    cheap = ServiceFactory(
        name="Glazing workshop", kind=Service.Kind.WORKSHOP, price=4500, credit_price=40
    )
    seat = ServiceSessionFactory(service=cheap, capacity=3, start=start)
    dear = ServiceFactory(
        name="Kiln workshop", kind=Service.Kind.WORKSHOP, price=9000, credit_price=80
    )
    dear_seat = ServiceSessionFactory(service=dear, capacity=3, start=start)
    page = app
    go(page, "#/book", "Book")
    expect(page.locator("#credit-balance")).to_have_text("100")
    expect(page.locator("li.service[data-service='Glazing workshop']")).to_contain_text(
        "or 40 credits"
    )
    page.locator("#pay-credits").check()
    page.locator(f"li[data-session-id='{seat.pk}']").get_by_role(
        "button", name="Book a seat"
    ).click()
    expect(page.locator("#book-result [data-state=success]")).to_contain_text("40 credits used")
    expect(page.locator("#credit-balance")).to_have_text("60")
    assert credits_balance_get(user_id=user.pk) == 60

    page.locator(f"li[data-session-id='{dear_seat.pk}']").get_by_role(
        "button", name="Book a seat"
    ).click()
    expect(page.locator("#book-result [data-state=error]")).to_contain_text("20 more are needed")
    snap(page, request, "credits-missing")
    assert credits_balance_get(user_id=user.pk) == 60

    booking = Booking.objects.get(user=user)
    go(page, f"#/orders/{booking.order_id}", f"Order #{booking.order_id}")
    page.get_by_role("button", name="Cancel and get my 40 credits back").click()
    expect(page.locator("#order-live")).to_contain_text("your 40 credits are back")
    expect(page.locator("#order[data-status=refunded]")).to_be_visible()
    assert credits_balance_get(user_id=user.pk) == 100
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CANCELED


def test_use_my_credits_first_and_the_card_pays_the_rest(app, request, user):  # noqa: F811
    credits_grant(user_id=user.pk, amount=10, reference="fund")
    workshop = ServiceFactory(
        name="Throwing workshop", kind=Service.Kind.WORKSHOP, price=4500, credit_price=40
    )
    seat = ServiceSessionFactory(
        service=workshop, capacity=3, start=timezone.now() + timedelta(days=5)
    )
    page = app
    add_card(page, VISA)
    go(page, "#/book", "Book")
    page.locator("#credits-first").check()
    page.locator(f"li[data-session-id='{seat.pk}']").get_by_role(
        "button", name="Book a seat"
    ).click()
    expect(page.locator("#book-result [data-state=success]")).to_contain_text("10 credits used")
    expect(page.locator("#credit-balance")).to_have_text("0")
    snap(page, request, "credits-first")
    booking = Booking.objects.get(user=user)
    go(page, f"#/orders/{booking.order_id}", f"Order #{booking.order_id}")
    expect(page.locator("#order")).to_contain_text("10 credits, and $33.75 by card")
