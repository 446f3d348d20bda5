"""The operator's guide tells which Stripe event types to enable: exactly those handled."""

from __future__ import annotations

import re
from pathlib import Path

from billing.services.event_handlers import HANDLERS

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def test_the_event_types_to_enable_are_the_handled_ones():
    text = GUIDE.read_text()
    listed = text.split("<!-- stripe-event-types", 1)[1].split("<!-- /stripe-event-types -->")[0]
    types = re.findall(r"`([a-z_]+(?:\.[a-z_]+)+)`", listed)

    assert len(types) == len(set(types))
    assert set(types) == set(HANDLERS)
