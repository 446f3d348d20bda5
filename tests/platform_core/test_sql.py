"""Hand-written SQL lives in each app's SQL module, under one rule for model signals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.db.models import signals

import platform_core.ratelimit.sql
import platform_core.sql
from platform_core.ratelimit.models import RateLimitWindow
from platform_core.ratelimit.services import rate_limit_hit

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = [
    "platform_core",
    "backoffice",
    "webclient",
    "billing",
    "purchasables",
    "credits",
    "bookings",
    "kernel",
]
# billing's is checked with billing's tests.
SQL_MODULES = [platform_core.sql, platform_core.ratelimit.sql]
# What runs SQL the ORM did not build.
RAW_SQL = re.compile(r"\.cursor\(|\.raw\(|\.extra\(|\bRawSQL\(")
# The database backend itself.
ALLOWED = {"platform_core/db/base.py"}


def test_only_the_sql_modules_run_hand_written_sql():
    found = []
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            relative = path.relative_to(ROOT).as_posix()
            if "/migrations/" in relative or path.name == "sql.py" or relative in ALLOWED:
                continue
            found += [
                f"{relative}:{number}"
                for number, line in enumerate(path.read_text().splitlines(), 1)
                if RAW_SQL.search(line)
            ]
    assert found == [], "hand-written SQL outside an app's SQL module (`<app>/sql.py`)"


WRITTEN = [
    (model, module)
    for module in SQL_MODULES
    for model in {*module.MODELS_INSERTED, *module.MODELS_UPDATED}
]


@pytest.mark.parametrize(("model", "module"), WRITTEN, ids=lambda m: getattr(m, "__name__", ""))
def test_nothing_in_the_product_listens_for_what_the_sql_does_not_announce(model, module):
    announced = {signals.post_save} if model not in module.MODELS_UPDATED else set()
    for signal in (signals.pre_save, signals.post_save, signals.pre_delete, signals.post_delete):
        assert signal in announced or not signal.has_listeners(model), model._meta.label


@pytest.mark.django_db
def test_a_new_rate_window_is_announced_and_its_next_hits_are_not(settings):
    settings.TOLLGATE = {**settings.TOLLGATE, "RATE_LIMITS": {"login": "5/min"}}
    heard = []

    def receiver(sender, **kwargs):
        heard.append((sender, kwargs.get("instance"), kwargs.get("created")))

    for signal in (signals.pre_save, signals.post_save, signals.post_delete):
        signal.connect(receiver, weak=False)
    try:
        rate_limit_hit(scope="login", identity="203.0.113.9")
        rate_limit_hit(scope="login", identity="203.0.113.9")
    finally:
        for signal in (signals.pre_save, signals.post_save, signals.post_delete):
            signal.disconnect(receiver)
    [(sender, window, created)] = heard
    assert (sender, created) == (RateLimitWindow, True)
    stored = RateLimitWindow.objects.get()
    assert (window.pk, window.key, window.window_start, window.expires_at) == (
        stored.pk,
        stored.key,
        stored.window_start,
        stored.expires_at,
    )
    assert stored.hits == 2
