"""Sentry and OpenTelemetry: each on only when its endpoint is set, from its own extra."""

from __future__ import annotations

import importlib.util
import os

import pytest

from tests.platform_core.test_settings import PRODUCTION

SCRIPT = """
import json, os, django
os.environ['DJANGO_SETTINGS_MODULE'] = 'platform_core.settings'
django.setup()
import sentry_sdk
client = sentry_sdk.get_client()
print(json.dumps({'active': client.is_active(), 'dsn': client.dsn}))
"""


def run(**env: str):
    import subprocess
    import sys

    from tests.platform_core.test_settings import PROJECT_ROOT

    clean = os.environ.copy()
    for key in ("SENTRY_DSN", "OTEL_EXPORTER_OTLP_ENDPOINT", "DEBUG", "SECRET_KEY"):
        clean.pop(key, None)
    clean = {k: v for k, v in clean.items() if not k.startswith("STRIPE_")}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**clean, **PRODUCTION, **env},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.skipif(importlib.util.find_spec("sentry_sdk") is None, reason="no sentry extra")
def test_sentry_is_on_only_with_a_dsn():
    import json

    off = run()
    assert off.returncode == 0, off.stderr
    assert json.loads(off.stdout.splitlines()[-1])["active"] is False

    on = run(SENTRY_DSN="https://public@sentry.invalid/1")
    assert on.returncode == 0, on.stderr
    assert json.loads(on.stdout.splitlines()[-1]) == {
        "active": True,
        "dsn": "https://public@sentry.invalid/1",
    }


@pytest.mark.skipif(
    importlib.util.find_spec("opentelemetry") is not None, reason="the otel extra is installed"
)
def test_tracing_without_its_extra_stops_start_up_with_what_to_install():
    result = run(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4318")
    assert result.returncode != 0
    assert "pip install 'tollgate[otel]'" in result.stderr
