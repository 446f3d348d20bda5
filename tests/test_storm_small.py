"""The storm, small: 200 orders of every purchase type, shuffled and repeated webhooks over
HTTP from 8 senders, buyers paying workshops with credits (concurrent spends, splits with
declined and good cards, cancellations and refunds twice at once, lots expiring during the
sweep), the web server SIGKILLed and restarted mid-run; every money invariant
must hold at the end (see `bench/storm.py`; `make storm` runs the full size).

It runs the same harness as `make storm`, as a child process with its own PostgreSQL
database, gunicorn, two queue clusters and localstripe, and fails with the harness's
figures when any violation count is not 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.e2e


def test_a_small_storm_keeps_every_money_invariant():
    env = {**os.environ, "STORM_DB": f"tollgate_storm_test_{os.getpid()}"}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.storm", "--small"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=200,
    )
    report = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, report
    assert "every invariant held" in proc.stdout, report
