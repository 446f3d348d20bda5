"""The web client's pages in a real browser: the custom credit amount, and the pages
read on a phone. Each test leaves a screenshot in test-artifacts/web/.
"""

from __future__ import annotations

import pytest

from billing.models import Order
from credits.models import Plan
from tests.billing.conftest import stripe_plan_create
from tests.billing.factories import OrderFactory
from tests.webclient.conftest import snap

# `app`: the page, logged in as `user` (every test here uses it, through pytestmark).
from tests.webclient.test_browser import VISA, add_card, app, go  # noqa: F401

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed"
)
expect = sync_api.expect

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("app"),
]

PHONE = {"width": 390, "height": 844}


def test_a_custom_amount_out_of_range_says_the_limit_and_cannot_be_bought(page, request, user):
    go(page, "#/buy", "Buy credits")
    count = page.locator("#custom-credits")
    buy = page.locator("form.custom").get_by_role("button", name="Buy")
    range_ = page.locator("#custom-range")
    price = page.locator("#custom-price")

    count.fill("9")  # the minimum is 10 (TOLLGATE_CREDITS_MIN)
    expect(range_).to_have_text("The minimum is 10 credits.")
    expect(price).to_have_text("—")
    expect(buy).to_be_disabled()
    expect(count).to_have_attribute("aria-invalid", "true")
    snap(page, request, "below-minimum")

    count.fill("")
    expect(range_).to_have_text("Enter a number of credits: at least 10.")
    expect(buy).to_be_disabled()
    count.fill("12.5")
    expect(range_).to_have_text("Enter a whole number of credits.")
    expect(buy).to_be_disabled()
    count.fill("100001")
    expect(range_).to_have_text("The maximum is 100000 credits.")
    expect(buy).to_be_disabled()

    count.fill("10")
    expect(range_).to_have_text("From 10 to 100000 credits.")
    expect(price).to_have_text("$1.00")
    expect(buy).to_be_enabled()
    expect(count).to_have_attribute("aria-invalid", "false")

    # Enter in the field does not get past a disabled Buy either.
    count.fill("3")
    count.press("Enter")
    expect(buy).to_be_disabled()
    assert not Order.objects.filter(user=user).exists()


def test_a_plan_has_one_name_on_every_page(page, request, user, event_worker):
    plan = Plan.objects.create(
        name="Studio", stripe_price_id="plan_web_studio", amount=2900, credits_per_cycle=300
    )
    stripe_plan_create(plan)
    add_card(page, VISA)
    go(page, "#/subscription", "Subscription")
    expect(page.locator(".plan h3")).to_have_text("Studio")
    page.get_by_role("button", name="Subscribe to Studio").click()
    expect(page.locator("#subscription-result [data-state=success]")).to_have_text(
        "Subscribed to Studio (active)."
    )
    expect(page.locator("li[data-subscription-id] strong")).to_have_text("Studio")
    expect(page.locator("#plan strong")).to_have_text("Studio")
    snap(page, request, "subscription")
    go(page, "#/cards", "Cards")
    go(page, "#/", "Dashboard")
    expect(page.locator("#plan strong")).to_have_text("Studio")

    # Stripe's portal names the plan by its product: the same name.
    go(page, "#/subscription", "Subscription")
    page.get_by_role("button", name="Manage billing").click()
    expect(page.locator(".subscription")).to_contain_text("Studio")
    expect(page.locator(".subscription")).not_to_contain_text("Studio subscription")


def page_scrolls_sideways(page) -> bool:
    return page.evaluate(
        "() => document.documentElement.scrollWidth > document.documentElement.clientWidth"
    )


@pytest.mark.parametrize("viewport", [PHONE])
def test_recent_orders_fit_a_phone_without_scrolling_the_page(page, request, user):
    for n in range(3):
        OrderFactory(
            user=user,
            description=f"Workshop: Wheel-thrown pottery for beginners, evening session {n}",
            amount=123456789,
            status=Order.Status.PARTIALLY_REFUNDED,
        )
    go(page, "#/cards", "Cards")  # away from the dashboard the log-in showed, and back
    go(page, "#/", "Dashboard")
    table = page.locator("table.orders")
    expect(table.locator("tbody tr")).to_have_count(3)
    snap(page, request, "dashboard")
    assert not page_scrolls_sideways(page)
    # Every order's figures are on screen, not pushed past the right edge.
    for cell in table.locator("td.amount").all():
        box = cell.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    for badge in table.locator("[data-status]").all():
        box = badge.bounding_box()
        assert box["x"] + box["width"] <= PHONE["width"]

    go(page, "#/orders", "Orders")
    expect(page.locator("#orders tbody tr")).to_have_count(3)
    snap(page, request, "orders")
    assert not page_scrolls_sideways(page)


def test_a_page_left_before_its_answers_came_never_paints_over_the_next_one(page, request):
    """The Buy page's card list answers only after the reader has moved on to the
    dashboard: the late answer must not draw the Buy page under the dashboard's address."""
    held = []
    page.route("**/api/v1/payments/methods/", lambda route: held.append(route))
    page.evaluate("route => { location.hash = route }", "#/buy")
    page.wait_for_function("() => document.title.startsWith('Buy credits')")
    go(page, "#/", "Dashboard")
    expect(page.locator("#balance")).to_have_text("0 credits")
    assert len(held) == 1, "the Buy page's card list was asked for once, and held"
    with page.expect_response("**/api/v1/payments/methods/"):
        held[0].continue_()
    # Let the late answer reach the Buy page's code and whatever it would draw.
    page.evaluate("() => new Promise(done => setTimeout(done, 300))")
    expect(page.get_by_role("heading", name="Buy credits")).to_have_count(0)
    expect(page.get_by_role("heading", name="Dashboard", exact=True)).to_be_visible()
    expect(page.locator("#balance")).to_have_text("0 credits")
    snap(page, request, "late-answer-after-leaving")


def test_the_dashboard_shows_the_balance_by_lot_and_what_expires_soon(page, request, user):
    from datetime import timedelta

    from django.utils import timezone

    from credits.services import credits_grant

    credits_grant(user_id=user.pk, amount=300, reference="web-paid")
    soon = timezone.now() + timedelta(days=3)
    credits_grant(
        user_id=user.pk,
        amount=40,
        reference="web-promo",
        category="promotional",
        expires_at=soon,
    )
    go(page, "#/buy", "Buy credits")
    go(page, "#/", "Dashboard")  # rendered afresh, after the grants
    expect(page.locator("#balance")).to_have_text("340 credits")
    expect(page.locator("#balance-categories")).to_have_text("300 paid, 40 promotional")
    expect(page.locator("#expiring-soon")).to_contain_text("40 expire within 30 days")
    page.locator("#lots summary").click()
    rows = page.locator("#lots tbody tr")
    expect(rows).to_have_count(2)
    # Spent in this order: the promotional lot that expires first, then the paid one.
    expect(rows.nth(0)).to_contain_text("40 of 40")
    expect(rows.nth(0)).to_contain_text("promotional")
    expect(rows.nth(1)).to_contain_text("300 of 300")
    expect(rows.nth(1)).to_contain_text("never")
    snap(page, request, "dashboard-lots")
