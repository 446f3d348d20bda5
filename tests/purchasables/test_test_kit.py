"""The test kit works for a package outside Tollgate: the gift-card example's own suite
runs from its own folder, as its author runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from devstack.database import url_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tollgate-gift-cards"


@pytest.mark.e2e
def test_the_gift_card_examples_own_tests_pass_from_its_folder():
    # Its own database name, so its test database is not this suite's.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("STRIPE_", "DJANGO_")) and key != "DATABASE_URL"
    }
    env["DATABASE_URL"] = url_for(settings.DATABASES["default"], "tollgate_example_kit")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
