"""Known defects that schemathesis finds in code this directory's owner may not change.

Each is reported to its owner; the mark is not strict because generated inputs
find a defect only when they happen to reach it. Delete the entry with the fix:
an XPASS in the summary says it is time.
"""

from __future__ import annotations

import pytest

KNOWN_DEFECTS = {
    "GET /api/v1/bookings/": (
        "bookings/api.py paginates with no upper bound on `page`: ?page=10**20 makes an "
        "OFFSET past PostgreSQL's bigint and a 500"
    ),
    "GET /api/v1/admin/dashboard/": (
        "platform_core/ops: ?end=0001-01-01 makes the default start fall before date.min and a 500"
    ),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "test_schemathesis.py" not in item.nodeid:
            continue
        for operation, defect in KNOWN_DEFECTS.items():
            if item.name.endswith(f"[{operation}]"):
                item.add_marker(pytest.mark.xfail(reason=defect, strict=False))
