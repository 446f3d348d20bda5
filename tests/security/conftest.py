"""Known defects that schemathesis finds in code this directory's owner may not change.

Each is reported to its owner; the mark is not strict because generated inputs
find a defect only when they happen to reach it. Delete the entry with the fix:
an XPASS in the summary says it is time.
"""

from __future__ import annotations

import pytest

KNOWN_DEFECTS: dict[str, str] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "test_schemathesis.py" not in item.nodeid:
            continue
        for operation, defect in KNOWN_DEFECTS.items():
            if item.name.endswith(f"[{operation}]"):
                item.add_marker(pytest.mark.xfail(reason=defect, strict=False))
