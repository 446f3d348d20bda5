"""The Django admin's busiest lists (orders, the audit log) on a 1280-pixel screen, in a
real browser: every column fits, none is pushed past the window's right edge.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from billing.models import Order
from platform_core.models import AuditEntry
from tests.billing.factories import OrderFactory
from tests.conftest import PASSWORD
from tests.factories import UserFactory
from tests.webclient.conftest import snap

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed"
)
expect = sync_api.expect

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture
def admin_page(page, live_server):
    """The admin, logged in as a superuser; `open(path)` goes to a page of it."""
    boss = UserFactory(
        username="operations.manager.with.a.long.name", is_staff=True, is_superuser=True
    )

    def open_(path: str):
        page.goto(live_server.url + "/admin/login/?next=" + quote(path))
        if page.locator("#id_username").count():
            page.fill("#id_username", boss.username)
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
        return page

    open_.user = boss
    return open_


def fits(page) -> None:
    """Neither the page nor the list's own box scrolls sideways, and every column ends
    inside the window."""
    wide = page.evaluate(
        "() => document.documentElement.scrollWidth > document.documentElement.clientWidth"
    )
    assert not wide, "the page scrolls sideways"
    results = page.locator("#changelist .results")
    overflow = results.evaluate("box => box.scrollWidth - box.clientWidth")
    assert overflow <= 0, f"the list is {overflow} pixels wider than its box"
    right = min(DESKTOP["width"], results.bounding_box()["x"] + results.bounding_box()["width"])
    for cell in page.locator("#result_list thead th").all():
        box = cell.bounding_box()
        assert box["x"] + box["width"] <= right + 1, f"{cell.inner_text()!r} is cut off"


@pytest.mark.parametrize("viewport", [DESKTOP])
def test_the_order_list_fits_1280_pixels(admin_page, request):
    for n, status in enumerate(
        [Order.Status.PARTIALLY_REFUNDED, Order.Status.REQUIRES_ACTION, Order.Status.PAID]
    ):
        OrderFactory(
            user=UserFactory(username=f"customer.with.a.rather.long.username.{n}@example.org"),
            purchase_type="subscription",
            order_type=Order.OrderType.SUBSCRIPTION,
            amount=123456789,
            status=status,
        )
    page = admin_page("/admin/billing/order/")
    expect(page.locator("#result_list tbody tr")).to_have_count(3)
    snap(page, request, "orders")
    fits(page)


@pytest.mark.parametrize("viewport", [DESKTOP])
def test_the_audit_list_fits_1280_pixels(admin_page, request):
    for n in range(3):
        AuditEntry.objects.create(
            actor=admin_page.user,
            action="refund.create",
            object_type="billing.order",
            object_id=str(1000 + n),
            object_repr=f"Order {1000 + n}",
            reason="Customer asked for a refund because the workshop was moved to another day "
            "and they cannot come then; agreed with the host over the phone.",
        )
    page = admin_page("/admin/platform_core/auditentry/")
    expect(page.locator("#result_list tbody tr")).to_have_count(3)
    snap(page, request, "audit")
    fits(page)
