"""A pytest plugin that records which tests execute each line of the mutated modules.

    python -m pytest -p bench.mutation.tracer ...  (MUTATION_TRACE_FILES, MUTATION_TRACE_OUT)

`MUTATION_TRACE_FILES` names the files to watch (os.pathsep-separated, absolute);
the map written to `MUTATION_TRACE_OUT` (JSON) is `{file: {line: [test node id, ...]}}`,
plus `{"tests": [node id, ...]}` in the order the tests ran and `{"seconds": {node id:
seconds}}`, how long each took (traced, so slower than it runs untraced), and
`{"failed": [node id, ...]}`. A line executed while no
test runs (at import, during collection) is recorded under `IMPORT`: whatever it
defines may be used by any test, so a mutant there runs every test of its module.

The rule: it traces only frames of the watched files (every other call returns at
once), and threads too, since the API tests serve requests from a thread.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

IMPORT = "<import>"

_watched: set[str] = set()
_lines: dict[str, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
_order: list[str] = []
_durations: dict[str, float] = {}
_failed: set[str] = set()
_context = IMPORT


def _local(frame, event, arg):
    if event == "line":
        _lines[frame.f_code.co_filename][frame.f_lineno].add(_context)
    return _local


def _global(frame, event, arg):
    if frame.f_code.co_filename in _watched:
        _lines[frame.f_code.co_filename][frame.f_lineno].add(_context)
        return _local
    return None


def pytest_configure(config: pytest.Config) -> None:
    files = os.environ.get("MUTATION_TRACE_FILES", "")
    _watched.update(str(Path(f).resolve()) for f in files.split(os.pathsep) if f)
    sys.settrace(_global)
    threading.settrace(_global)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Import every watched module now, so a module a test imports lazily has its
    module-level lines recorded as run at import, not by that one test."""
    root = Path.cwd().resolve()
    for path in sorted(_watched):
        try:
            rel = Path(path).relative_to(root)
        except ValueError:
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        importlib.import_module(".".join(parts))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    global _context
    _context = item.nodeid
    _order.append(item.nodeid)
    sys.settrace(_global)  # a test may have replaced it (a debugger, hypothesis' explain)
    began = time.monotonic()
    try:
        yield
    finally:
        _durations[item.nodeid] = round(time.monotonic() - began, 3)
        _context = IMPORT


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        _failed.add(report.nodeid)


def pytest_unconfigure(config: pytest.Config) -> None:
    sys.settrace(None)
    threading.settrace(None)  # type: ignore[arg-type]
    out = os.environ.get("MUTATION_TRACE_OUT")
    if not out:
        return
    data = {
        "tests": _order,
        "seconds": _durations,
        "failed": sorted(_failed),
        "lines": {
            path: {str(line): sorted(tests) for line, tests in sorted(lines.items())}
            for path, lines in _lines.items()
        },
    }
    Path(out).write_text(json.dumps(data))
