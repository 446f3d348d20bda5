"""The dashboard as a person sees it: headless Chromium logs in, opens the page, and the
charts and figures are there. The screenshot is kept in test-artifacts/ to look at.

Nothing is installed here: CI installs Debian's `chromium` (.ci/run) and the
`playwright` package (the `dev` extra); without the browser this test is skipped.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from django.contrib.auth.models import Permission

from tests.backoffice.books import END, START, books_make
from tests.conftest import PASSWORD
from tests.factories import UserFactory

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="/usr/bin/chromium is not installed (apt-get install chromium; .ci/run does)",
    ),
    pytest.mark.django_db(transaction=True),
]


def test_the_dashboard_renders_its_charts_and_figures_in_chromium(live_server):
    sync_api = pytest.importorskip("playwright.sync_api")
    books = books_make()
    # The permission itself, not the "finance" group: a transactional test's database
    # is emptied between tests, and only permissions are made again afterwards.
    finance = UserFactory(is_staff=True)
    finance.user_permissions.add(Permission.objects.get(codename="view_dashboard"))
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    dashboard = f"/admin/ops/dashboard/?start={START}&end={END}"
    # Everything in the database is written above: the browser's own event loop runs
    # from here on, and the live server answers from its thread.
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(live_server.url + "/admin/login/?next=" + quote(dashboard))
            page.fill("#id_username", finance.username)
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_selector("svg.chart rect.bar", timeout=15_000)
            page.screenshot(path=str(shot), full_page=True)
            title = page.title()
            charts = page.locator("svg.chart").count()
            bars = page.locator("svg.chart rect.bar")
            bar_count = bars.count()
            tallest = max(bars.nth(n).bounding_box()["height"] for n in range(bar_count))
            usd = page.locator('[data-figure="net-revenue-usd"] .figure').inner_text()
            success = page.locator('[data-figure="success-rate"] .figure').inner_text()
            lag = page.locator('[data-figure="lag-p95"] .figure').inner_text()
        finally:
            browser.close()
    assert title.startswith("Financial dashboard")
    assert charts == len(books["revenue"]) + 3  # a revenue chart per currency, and three more
    days_with_money = sum(1 for v in books["per_day"].values() if v)
    assert bar_count >= days_with_money
    assert tallest > 50  # drawn, not collapsed: the busiest day fills most of its chart
    assert usd == "46.00 USD"
    assert success == f"{books['payments']['success_rate'] * 100:.1f}%"
    assert lag == f"{books['webhooks']['lag_p95_seconds']:.1f} s"
    assert shot.stat().st_size > 10_000
