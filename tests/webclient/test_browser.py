"""The web client in a real browser, against a live server, localstripe and its webhooks.

Headless Chromium (Debian's) runs the page served at `/`, which speaks only
`/api/v1/`; the development Stripe stands in for Stripe, Stripe.js, Checkout's page
and the customer portal, and sends its signed webhooks to the live server, where a
worker thread processes them.
Each test leaves a screenshot in test-artifacts/web/.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from billing.models import Order, SavedPaymentMethod, StripeEvent, Subscription
from bookings.models import Booking, Service
from credits.models import CreditPack, Plan
from credits.selectors import credits_balance_get
from tests.billing.conftest import eventually, stripe_plan_create
from tests.bookings.factories import ServiceFactory, ServiceSessionFactory
from tests.conftest import PASSWORD, client_for
from tests.webclient.conftest import snap

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed"
)
expect = sync_api.expect

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

VISA = "4242424242424242"
MASTERCARD = "5555555555554444"
DECLINED_ON_CHARGE = "4000000000000341"
THREE_D_SECURE = "4000002500003155"


@pytest.fixture
def starter_pack(db) -> CreditPack:
    return CreditPack.objects.create(
        name="Starter", credits=100, price=1000, currency="usd", active=True, sort_order=10
    )


@pytest.fixture
def frontend_here(live_server):
    """The client's address is the live server's: Stripe's pages send the buyer back here."""
    previous = settings.FRONTEND_URL
    settings.FRONTEND_URL = live_server.url
    yield
    settings.FRONTEND_URL = previous


@pytest.fixture
def app(page, live_server, live_stripe, user):
    """The client, logged in as `user`, on its dashboard."""
    page.goto(live_server.url + "/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.locator("#balance")).to_have_text("0 credits")
    return page


def go(page, route: str, heading: str) -> None:
    page.evaluate("route => { location.hash = route }", route)
    expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()


def add_card(page, number: str, *, three_d_secure: str | None = None) -> None:
    """Type a card into Stripe.js's card element and save it (SetupIntent + confirmCardSetup)."""
    go(page, "#/cards", "Cards")
    form = page.locator("#card-element")
    form.locator("input[placeholder=number]").fill(number)
    form.locator("input[placeholder=exp_month]").fill("12")
    form.locator("input[placeholder=exp_year]").fill("34")
    form.locator("input[placeholder=cvc]").fill("123")
    form.locator("input[placeholder=postal_code]").fill("10001")
    page.get_by_role("button", name="Save card").click()
    if three_d_secure:
        page.get_by_role("button", name=three_d_secure).click()
    expect(page.locator("#add-card-result")).to_contain_text("Card saved: ")
    expect(page.locator("#add-card-result")).to_contain_text(number[-4:])


def buy_starter(page) -> None:
    go(page, "#/buy", "Buy credits")
    page.get_by_role("button", name="Buy Starter for $10.00").click()


def test_log_in_add_a_card_buy_a_pack_and_see_the_balance_rise(
    app, request, starter_pack, user, event_worker
):
    page = app
    add_card(page, VISA)
    expect(page.locator("#saved-cards")).to_contain_text("Visa •••• 4242")
    expect(page.locator("#saved-cards")).to_contain_text("default")

    buy_starter(page)
    result = page.locator("#pay-result [data-state=success]")
    expect(result).to_contain_text("Paid: 100 credits added; your balance is 100 credits.")
    snap(page, request, "paid")
    order = Order.objects.get(user=user)
    assert order.status == Order.Status.PAID

    # Stripe's own webhook for the payment lands and is processed: no second fulfilment.
    intent_id = order.payments.get().stripe_payment_intent_id

    def webhook_processed() -> bool:
        event = StripeEvent.objects.filter(
            type="payment_intent.succeeded", object_id=intent_id
        ).first()
        return event is not None and event.status == StripeEvent.Status.PROCESSED

    eventually(webhook_processed)
    go(page, "#/", "Dashboard")
    expect(page.locator("#balance")).to_have_text("100 credits")
    expect(page.locator(f"tr[data-order-id='{order.pk}']")).to_contain_text("paid")
    expect(page.locator(f"tr[data-order-id='{order.pk}']")).to_contain_text("$10.00")
    assert credits_balance_get(user_id=user.pk) == 100


def test_a_declined_card_says_so_and_adds_no_credits(app, starter_pack, user, event_worker):
    page = app
    add_card(page, DECLINED_ON_CHARGE)  # it saves; it is the charge that is declined
    buy_starter(page)
    declined = page.locator("#pay-result [data-state=declined]")
    expect(declined).to_contain_text("Card declined: Your card was declined.")
    expect(declined).to_contain_text("Nothing was charged.")

    go(page, "#/", "Dashboard")
    expect(page.locator("#balance")).to_have_text("0 credits")
    assert Order.objects.get(user=user).status == Order.Status.FAILED
    assert credits_balance_get(user_id=user.pk) == 0


def test_3d_secure_failed_then_completed_pays_after_the_webhook(
    app, request, starter_pack, user, event_worker
):
    page = app
    # localstripe's Stripe.js asks for 3-D Secure when the card is saved, too.
    add_card(page, THREE_D_SECURE, three_d_secure="Complete authentication")

    buy_starter(page)
    expect(page.locator("#pay-result [data-state=action]")).to_contain_text("3-D Secure")
    snap(page, request, "3ds-step")
    page.get_by_role("button", name="Fail authentication").click()
    expect(page.locator("#pay-result [data-state=auth-failed]")).to_contain_text(
        "3-D Secure failed"
    )
    assert credits_balance_get(user_id=user.pk) == 0

    page.get_by_role("button", name="Buy Starter for $10.00").click()
    page.get_by_role("button", name="Complete authentication").click()
    # Paid only once Stripe's payment_intent.succeeded webhook has reached the worker.
    expect(page.locator("#pay-result [data-state=success]")).to_contain_text(
        "your balance is 100 credits", timeout=20_000
    )
    paid = Order.objects.get(user=user, status=Order.Status.PAID)
    assert StripeEvent.objects.filter(
        type="payment_intent.succeeded",
        object_id=paid.payments.get().stripe_payment_intent_id,
        status=StripeEvent.Status.PROCESSED,
    ).exists()
    assert credits_balance_get(user_id=user.pk) == 100


def test_failed_3d_secure_says_so_on_the_order_and_another_card_pays_it(
    app, request, starter_pack, user, event_worker
):
    page = app
    add_card(page, THREE_D_SECURE, three_d_secure="Complete authentication")
    buy_starter(page)
    page.get_by_role("button", name="Fail authentication").click()
    expect(page.locator("#pay-result [data-state=auth-failed]")).to_contain_text(
        "can be paid with another card"
    )
    order = Order.objects.get(user=user)

    # The order page says why, once Stripe's payment_failed webhook is processed,
    # instead of waiting for Stripe for ever, and offers another card.
    add_card(page, VISA)
    go(page, f"#/orders/{order.pk}", f"Order #{order.pk}")
    expect(page.locator("#order[data-status=failed]")).to_be_visible(timeout=20_000)
    expect(page.locator("#order")).to_contain_text("3-D Secure check failed")
    expect(page.get_by_role("heading", name="Pay with another card")).to_be_visible()
    snap(page, request, "auth-failed")
    page.locator("#pay-card").select_option(label="Visa •••• 4242")
    page.get_by_role("button", name="Pay with this card").click()
    expect(page.locator("#order-live [data-state=success]")).to_contain_text(
        "the order is paid", timeout=20_000
    )
    expect(page.locator("#order[data-status=paid]")).to_be_visible()
    expect(page.locator("#pay-again-section")).to_be_empty()
    snap(page, request, "paid-again")
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert order.payments.count() == 1
    assert credits_balance_get(user_id=user.pk) == 100


def test_an_order_made_without_a_card_is_paid_from_its_page(app, request, user, event_worker):
    page = app
    add_card(page, VISA)
    created = client_for(user).post(
        "/payments/create/", {"is_credit_purchase": True, "credit_amount": 100}
    )
    order_id = created.json()["order_id"]
    go(page, f"#/orders/{order_id}", f"Order #{order_id}")
    expect(page.locator("#order-live")).to_contain_text("Not paid yet")
    page.get_by_role("button", name="Pay with this card").click()
    expect(page.locator("#order[data-status=paid]")).to_be_visible(timeout=20_000)
    assert credits_balance_get(user_id=user.pk) == 100


def test_book_a_workshop_seat_and_see_it_in_bookings(app, request, user, event_worker):
    workshop = ServiceFactory(name="Pottery workshop", kind=Service.Kind.WORKSHOP, price=2500)
    session = ServiceSessionFactory(
        service=workshop, capacity=3, start=timezone.now() + timedelta(days=5)
    )
    page = app
    add_card(page, VISA)
    go(page, "#/book", "Book")
    seat = page.locator(f"li[data-session-id='{session.pk}']")
    expect(seat).to_contain_text("3 of 3 seats free")
    seat.get_by_role("button", name="Book a seat").click()
    expect(page.locator("#book-result [data-state=success]")).to_contain_text(
        "A seat at Pottery workshop"
    )
    snap(page, request, "booked")

    go(page, "#/bookings", "Bookings")
    booking = page.locator("#bookings li.booking").first
    expect(booking).to_contain_text("Pottery workshop")
    expect(booking).to_contain_text("confirmed")
    assert Booking.objects.get(user=user).session_id == session.pk

    go(page, "#/book", "Book")
    expect(page.locator(f"li[data-session-id='{session.pk}']")).to_contain_text("2 of 3 seats free")


def test_saved_cards_change_the_default_and_delete(app, user):
    page = app
    add_card(page, VISA)
    add_card(page, MASTERCARD)
    cards = page.locator("#saved-cards")
    visa = cards.locator("li[data-last4='4242']")
    mastercard = cards.locator("li[data-last4='4444']")
    expect(visa).to_contain_text("default")

    mastercard.get_by_role("button", name="Make default").click()
    expect(page.locator("#cards-result")).to_contain_text("is now your default card")
    expect(cards.locator("li[data-last4='4444']")).to_contain_text("default")

    cards.locator("li[data-last4='4242']").get_by_role("button", name="Delete").click()
    cards.locator("li[data-last4='4242']").get_by_role("button", name="Yes, delete").click()
    expect(page.locator("#cards-result")).to_contain_text("Visa •••• 4242 deleted.")
    expect(cards.locator("li.saved-card")).to_have_count(1)
    expect(cards).not_to_contain_text("4242")


def test_network_errors_say_so_and_a_retry_is_safe(app, starter_pack, user):
    page = app
    add_card(page, VISA)
    go(page, "#/buy", "Buy credits")
    page.route("**/api/v1/payments/create/", lambda route: route.abort())
    buy = page.get_by_role("button", name="Buy Starter for $10.00")
    buy.click()
    expect(page.locator("#pay-result [data-state=network]")).to_contain_text(
        "Could not reach Tollgate"
    )
    assert not Order.objects.filter(user=user).exists()

    page.unroute("**/api/v1/payments/create/")
    buy.click()
    expect(page.locator("#pay-result [data-state=success]")).to_contain_text("100 credits")
    assert Order.objects.filter(user=user).count() == 1


def test_subscribe_cancel_and_manage_billing_in_the_portal(
    app, request, user, event_worker, frontend_here
):
    plan = Plan.objects.create(
        name="Monthly", stripe_price_id="plan_web_monthly", amount=1900, credits_per_cycle=500
    )
    stripe_plan_create(plan)
    page = app
    add_card(page, VISA)
    go(page, "#/subscription", "Subscription")
    expect(page.get_by_text("$19.00 every month")).to_be_visible()
    page.get_by_role("button", name="Subscribe to Monthly").click()
    expect(page.locator("#subscription-result [data-state=success]")).to_contain_text(
        "Subscribed to Monthly"
    )
    go(page, "#/", "Dashboard")
    expect(page.locator("#plan")).to_contain_text("Monthly")
    expect(page.locator("#plan")).to_contain_text("renews on")

    go(page, "#/subscription", "Subscription")
    page.get_by_role("button", name="Cancel at period end").click()
    expect(page.locator("#subscription-result [data-state=success]")).to_contain_text("ends on")
    expect(page.locator("#plan")).to_contain_text("ends on")

    page.get_by_role("button", name="Manage billing").click()
    expect(page.get_by_role("heading", name="Billing", exact=True)).to_be_visible()
    sub = page.locator(".subscription")
    expect(sub).to_contain_text("Monthly")
    expect(sub).to_contain_text("Cancels on")
    page.get_by_role("button", name="Renew plan").click()
    expect(page.locator("#notice")).to_contain_text("Your plan will renew.")
    expect(sub).to_contain_text("Renews on")
    expect(page.locator(".payment-method")).to_contain_text("•••• 4242")
    page.get_by_label("Add a card").fill(MASTERCARD)
    page.get_by_label("Expiry (MM / YY)").fill("12 / 34")
    page.get_by_label("CVC").fill("123")
    page.get_by_role("button", name="Add card").click()
    expect(page.locator("#notice")).to_contain_text("Card ending 4444 was added.")
    snap(page, request, "portal")
    page.get_by_role("link", name="← Return").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    local = Subscription.objects.get(user=user)
    eventually(lambda: not Subscription.objects.get(pk=local.pk).cancel_at_period_end)
    eventually(lambda: SavedPaymentMethod.objects.filter(user=user, last4="4444").exists())


def test_pay_on_stripes_page_declined_then_4242(
    app, request, starter_pack, user, event_worker, frontend_here
):
    page = app
    go(page, "#/buy", "Buy credits")
    page.get_by_label("Pay on Stripe's page").check()
    page.get_by_role("button", name="Buy Starter for $10.00").click()
    expect(page.get_by_role("heading", name="Pay", exact=True)).to_be_visible()
    expect(page.locator("#total")).to_have_text("10.00 USD")
    page.get_by_label("Card number").fill("4000 0000 0000 0002")
    page.get_by_label("Expiry (MM / YY)").fill("12 / 34")
    page.get_by_label("CVC").fill("123")
    page.get_by_role("button", name="Pay").click()
    expect(page.locator("#error")).to_contain_text("declined")
    page.get_by_label("Card number").fill(VISA)
    page.get_by_label("Expiry (MM / YY)").fill("12 / 34")
    page.get_by_label("CVC").fill("123")
    page.get_by_role("button", name="Pay").click()
    expect(page.get_by_role("heading", name="Orders", exact=True)).to_be_visible()
    order = Order.objects.get(user=user)
    expect(page.locator(f"tr[data-order-id='{order.pk}']")).to_contain_text("paid")
    snap(page, request, "checkout-paid")
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert credits_balance_get(user_id=user.pk) == 100


def test_amounts_are_formatted_per_currency_without_floats(page, live_server):
    page.goto(live_server.url + "/")
    formatted = page.evaluate(
        """async () => {
            const m = await import("/static/web/money.js");
            return {
                usd: m.formatMoney(1050, "usd"),
                big: m.minorToMajor(99999999, "usd"),
                jpy: m.formatMoney(500, "jpy"),
                kwd: m.minorToMajor(1230, "kwd"),
                isk: m.minorToMajor(50000, "isk"),
                ugx: m.formatMoney(50000, "ugx"),
                cents: m.minorToMajor(5, "eur"),
                negative: m.minorToMajor(-1999, "gbp"),
                custom: m.minorToMajor(m.multiplyMinor(10, 250), "usd"),
                unsafe: (() => { try { m.minorToMajor(0.1 + 0.2, "usd"); return "accepted"; }
                                 catch (e) { return "refused"; } })(),
            };
        }"""
    )
    assert formatted == {
        "usd": "$10.50",
        "big": "999999.99",
        "jpy": "¥500",
        "kwd": "1.23",
        "isk": "500",
        "ugx": "UGX\xa0500",
        "cents": "0.05",
        "negative": "-19.99",
        "custom": "25.00",
        "unsafe": "refused",
    }


def test_logged_out_pages_show_no_navigation_or_log_out(page, live_server, request):
    """The navigation is for a logged-in reader; the log-in page offers only the form."""
    page.goto(live_server.url + "/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()

    expect(page.locator("#nav")).to_be_hidden()
    expect(page.get_by_role("button", name="Log out")).to_be_hidden()
    snap(page, request, "logged-out")
