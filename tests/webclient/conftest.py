"""Browser fixtures: Debian's Chromium driven by Playwright, screenshots, a webhook worker.

The rule: nothing here downloads a browser. Without /usr/bin/chromium (or the
playwright package) the browser tests skip, saying why; they never fail for it.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

# localstripe sending its webhooks to the live server, pointed away afterwards.
from tests.billing.conftest import live_stripe  # noqa: F401

# Debian's package; TOLLGATE_CHROMIUM points elsewhere (never a downloaded browser).
CHROMIUM = Path(os.environ.get("TOLLGATE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts" / "web"
TIMEOUT_MS = 15_000


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: install Debian's chromium "
            "(apt-get install chromium) to run the browser tests"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="the playwright package is not installed (pip install -e '.[dev]')",
    )
    # Playwright's sync API keeps an asyncio loop registered on this thread (it runs
    # in a greenlet), which Django's async-safety check takes for async code. No
    # coroutine touches the ORM here, so the check is switched off while the
    # browser is up, and only then.
    sync_api.expect.set_options(timeout=TIMEOUT_MS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_api.sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            try:
                yield chromium
            finally:
                chromium.close()


def _artifact_name(item: pytest.Item) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", item.name)


@pytest.fixture
def browser_timezone() -> str:
    """The buyer's time zone; a test parametrizes it to read the page elsewhere."""
    return "UTC"


@pytest.fixture
def viewport() -> dict[str, int]:
    """The window's size; a test parametrizes it to read the page on a phone."""
    return {"width": 1100, "height": 900}


@pytest.fixture
def page(browser, request, browser_timezone, viewport) -> Iterator:
    """A fresh browser context and page; its screenshot is saved when the test ends.

    A failing test also leaves the page's HTML and console log beside the screenshot.
    """
    context = browser.new_context(locale="en-US", timezone_id=browser_timezone, viewport=viewport)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    console: list[str] = []
    tab.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    tab.on("pageerror", lambda err: console.append(f"pageerror: {err}"))
    yield tab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = _artifact_name(request.node)
    try:
        tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            (ARTIFACTS / f"{name}.html").write_text(tab.content(), encoding="utf-8")
            (ARTIFACTS / f"{name}.console.txt").write_text("\n".join(console), encoding="utf-8")
    finally:
        context.close()


def snap(page, request, step: str) -> Path:
    """A screenshot of one step of a test, kept in test-artifacts/web/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{_artifact_name(request.node)}--{step}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def event_worker() -> Iterator[None]:
    """What django-q2's worker does, in a thread: drain stored webhook events as they come."""
    from billing.services.events import events_drain

    stop = threading.Event()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            while not stop.is_set():
                events_drain()
                stop.wait(0.2)
        except BaseException as exc:  # reported by the fixture, not lost in the thread
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=work, name="event-worker", daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=30)
    assert not errors, f"the event worker failed: {errors[0]!r}"
