"""`make mutate`'s own rules: which tests a mutant runs, which mutants are skipped as
equivalent, and how a mutant is put into a running worker. No database: the trace and
the sources are written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.mutation.equivalent import KNOWN, _bare, why_equivalent
from bench.mutation.runtests import select
from bench.mutation.swap import SAME, live_functions, swap, swap_plan
from bench.mutation.tracer import IMPORT

SOURCE = """from __future__ import annotations

LIMIT = 5


def allowed(count: int | None, *, extra: int = 0) -> bool:
    total = (count or 0) + extra
    return total <= LIMIT
"""


def _home(tmp_path: Path, trace: dict[int, list[str]]) -> tuple[Path, Path]:
    home, tree = tmp_path / "home", tmp_path / "tree"
    (home / "pristine" / "pkg").mkdir(parents=True)
    (tree / "pkg").mkdir(parents=True)
    (home / "pristine" / "pkg" / "limits.py").write_text(SOURCE)
    (tree / "pkg" / "limits.py").write_text(SOURCE)
    path = str((tree / "pkg" / "limits.py").resolve())
    (home / "trace.json").write_text(
        json.dumps(
            {
                "tests": ["t::a", "t::b", "t::c"],
                "lines": {path: {str(k): v for k, v in trace.items()}},
            }
        )
    )
    return home, tree


def _mutate(tree: Path, old: str, new: str) -> None:
    path = tree / "pkg" / "limits.py"
    path.write_text(path.read_text().replace(old, new))


TRACE = {3: [IMPORT], 6: [IMPORT], 7: ["t::b", "t::a"], 8: ["t::b"]}


def test_a_mutant_runs_the_tests_that_ran_its_line_in_their_order(tmp_path):
    home, tree = _home(tmp_path, TRACE)
    _mutate(tree, "total <= LIMIT", "total < LIMIT")
    assert select(home, tree) == ["t::b"]
    _mutate(tree, "(count or 0)", "(count and 0)")
    assert select(home, tree) == ["t::a", "t::b"]


SPLIT = """def allowed(count, limit):
    if (count is None
            or count > limit):
        return False
    return True
"""


def test_a_mutant_inside_a_split_condition_runs_every_test_that_ran_its_statement(tmp_path):
    # `count > limit` runs only where count is not None (t::b); made `and`, the line
    # also changes what t::a sees, which ran only the statement's first line.
    home, tree = _home(tmp_path, {2: ["t::a", "t::b"], 3: ["t::b"], 4: ["t::a"], 5: ["t::b"]})
    for where in (home / "pristine", tree):
        (where / "pkg" / "limits.py").write_text(SPLIT)
    _mutate(tree, "or count > limit", "and count > limit")
    assert select(home, tree) == ["t::a", "t::b"]
    (tree / "pkg" / "limits.py").write_text(SPLIT.replace("return True", "return False"))
    assert select(home, tree) == ["t::b"]


def test_a_mutant_of_a_line_run_at_import_runs_every_test_of_its_module(tmp_path):
    home, tree = _home(tmp_path, TRACE)
    _mutate(tree, "LIMIT = 5", "LIMIT = 6")
    assert select(home, tree) == ["t::a", "t::b"]


TWO = """LIMIT = 5


def small(n):
    return n < LIMIT


def large(n, step=1):
    return n + step > LIMIT
"""


def test_a_line_run_at_import_before_the_trace_began_runs_every_test_of_its_module(tmp_path):
    """The module was imported before the tracer started: its constants' and defaults'
    lines are not in the trace at all, yet every test that ran its functions may read
    them (not only the tests of the nearest line traced)."""
    home, tree = _home(tmp_path, {5: ["t::a"], 9: ["t::b"]})
    for where in (home / "pristine", tree):
        (where / "pkg" / "limits.py").write_text(TWO)
    _mutate(tree, "LIMIT = 5", "LIMIT = 6")
    assert select(home, tree) == ["t::a", "t::b"]
    (tree / "pkg" / "limits.py").write_text(TWO.replace("step=1", "step=2"))
    assert select(home, tree) == ["t::a", "t::b"]
    (tree / "pkg" / "limits.py").write_text(TWO.replace("n < LIMIT", "n <= LIMIT"))
    assert select(home, tree) == ["t::a"]


def test_a_mutant_no_test_reaches_runs_nothing_and_without_a_trace_everything(tmp_path):
    home, tree = _home(tmp_path, {3: [IMPORT], 6: [IMPORT], 7: [IMPORT]})
    _mutate(tree, "total <= LIMIT", "total < LIMIT")
    assert select(home, tree) == []
    (home / "trace.json").unlink()
    assert select(home, tree) is None


def test_annotations_and_the_keyword_only_marker_are_equivalent_places(tmp_path):
    at = SOURCE.splitlines().index("def allowed(count: int | None, *, extra: int = 0) -> bool:") + 1
    line = SOURCE.splitlines()[at - 1]
    pipe, star = line.index("|"), line.index("*,")
    assert "annotation" in why_equivalent(SOURCE, (at, pipe), (at, pipe + 1))
    assert "keyword-only" in why_equivalent(SOURCE, (at, star), (at, star + 1))
    default = line.index("= 0") + 2
    assert why_equivalent(SOURCE, (at, default), (at, default + 1)) == ""
    # Without postponed annotations they are evaluated: not equivalent.
    evaluated = SOURCE.replace("from __future__ import annotations\n", "\n")
    assert why_equivalent(evaluated, (at, pipe), (at, pipe + 1)) == ""


def test_every_recorded_equivalent_names_a_line_its_module_has():
    """A line that changed or went away leaves its entry matching nothing: the entry
    goes with it, and the new line is read again."""
    root = Path(__file__).resolve().parent.parent
    lines: dict[str, set[str]] = {}
    for path, text, mutant, _why in KNOWN:
        if path not in lines:
            lines[path] = {_bare(line) for line in (root / path).read_text().splitlines()}
        assert _bare(text) in lines[path], (path, text)
        assert _bare(mutant) != _bare(text), (path, text)


def test_a_known_equivalent_is_matched_on_its_line_before_and_after():
    source = "def f():\n    if len(upcoming) > 1:\n        pass\n"
    known = source.replace("> 1", "!= 1")
    other = source.replace("> 1", ">= 1")
    start, end = (2, 20), (2, 21)
    module = "bookings/services/plans.py"
    assert "1 or 2" in why_equivalent(source, start, end, module=module, mutated=known)
    assert why_equivalent(source, start, end, module=module, mutated=other) == ""
    assert why_equivalent(source, start, end, module="other.py", mutated=known) == ""


# --- putting a mutant into a running process (bench.mutation.swap) ---------------------

LIVE = """import functools

LIMIT = 3


def logged(f):
    @functools.wraps(f)
    def inner(*args):
        return f(*args)

    return inner


@logged
def over(x):
    return x > LIMIT


class Doubler:
    factor = 2

    def apply(self, x):
        def times(z):
            return z * 2

        return times(x) + 1


def fallback(x=5):
    return x
"""


def _live_module(tmp_path: Path):
    import importlib.util

    path = tmp_path / "live_limits.py"
    path.write_text(LIVE)
    spec = importlib.util.spec_from_file_location("live_limits", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, str(path)


def test_a_mutant_in_a_function_body_reaches_every_holder_of_the_function(tmp_path):
    module, path = _live_module(tmp_path)
    imported_by_name = module.over  # what `from live_limits import over` holds: the wrapper
    plan = swap_plan(LIVE, LIVE.replace("x > LIMIT", "x >= LIMIT"), path)
    assert isinstance(plan, list)
    assert [key for key, _ in plan] == [("over", 14)]
    assert imported_by_name(3) is False
    assert swap(plan, live_functions(path)) == 1
    assert imported_by_name(3) is True
    assert module.over(3) is True


def test_a_mutant_in_a_nested_function_is_swapped_through_its_parent(tmp_path):
    module, path = _live_module(tmp_path)
    plan = swap_plan(LIVE, LIVE.replace("z * 2", "z * 3"), path)
    assert isinstance(plan, list)
    assert [key for key, _ in plan] == [
        ("Doubler.apply", 22),
        ("Doubler.apply.<locals>.times", 23),
    ]
    assert module.Doubler().apply(1) == 3
    swap(plan, live_functions(path))
    assert module.Doubler().apply(1) == 4


def test_a_mutant_outside_function_bodies_cannot_be_swapped(tmp_path):
    _module, path = _live_module(tmp_path)
    for old, new in (("LIMIT = 3", "LIMIT = 4"), ("factor = 2", "factor = 3"), ("x=5", "x=6")):
        assert swap_plan(LIVE, LIVE.replace(old, new), path) is None, (old, new)


def test_a_mutant_that_compiles_to_the_same_bytecode_is_told_apart(tmp_path):
    _module, path = _live_module(tmp_path)
    same = LIVE.replace("return x > LIMIT", "return (x > LIMIT)")
    assert swap_plan(LIVE, same, path) == SAME
    assert swap_plan(LIVE, LIVE.replace("x > LIMIT", "x < LIMIT"), path) != SAME


def test_a_plan_for_a_function_with_no_live_object_is_refused(tmp_path):
    _module, path = _live_module(tmp_path)
    plan = swap_plan(LIVE, LIVE.replace("x > LIMIT", "x >= LIMIT"), path)
    with pytest.raises(LookupError):
        swap(plan, {})


def test_a_recheck_adds_the_new_tests_trace_to_the_sessions(tmp_path):
    from bench.mutation.__main__ import _trace_merge

    home, tree = _home(tmp_path, TRACE)
    path = str((tree / "pkg" / "limits.py").resolve())
    (home / "trace-more.json").write_text(
        json.dumps(
            {
                "tests": ["t::new", "t::broken"],
                "seconds": {"t::new": 0.5},
                "lines": {path: {"8": ["t::new", "t::broken"], "3": [IMPORT]}},
                "failed": ["t::broken"],
            }
        )
    )
    assert _trace_merge(home) == ["t::broken"]
    _mutate(tree, "total <= LIMIT", "total < LIMIT")
    assert select(home, tree) == ["t::b", "t::new"]
    assert not (home / "trace-more.json").exists()
