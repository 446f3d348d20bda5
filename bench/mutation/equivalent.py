"""Mutants that cannot change what the program does, or are not Python at all, marked
skipped before they run.

Not Python: the mutated module does not compile (`def f(*, x)` made `def f(-, x)`):
any import fails, so counting it killed would say nothing about the tests.

Equivalent: the mutants in `KNOWN` (a survivor someone read and found cannot
change what the program does, with the reason), and two kinds decided from the
source alone:
- a change inside an annotation, in a module with `from __future__ import
  annotations`: annotations there are strings nobody evaluates (`int | None` made
  `int + None` is still never run);
- the bare `*` that makes the parameters after it keyword-only, made `/` (or
  another operator): every call the program makes names those arguments, so each
  one still binds the same values.

The rule: a mutant is skipped only when its mutated source does not compile, or
its whole span lies in such a place; it is reported apart, never counted killed.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import cosmic_ray.plugins
from cosmic_ray.mutating import mutate_code
from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import WorkerOutcome, WorkResult

Span = tuple[tuple[int, int], tuple[int, int]]

# Survivors read and found equivalent: (module, the line as written, the line as the
# mutant writes it, why). Matched on the lines' text (spaces aside), not on numbers,
# so they follow the code as it moves; a line that changes is examined again.
KNOWN: list[tuple[str, str, str, str]] = [
    *[
        (
            "bookings/services/plans.py",
            "end = start + timedelta(minutes=service.duration_minutes or 0)",
            f"end = start + timedelta(minutes=service.duration_minutes or {n})",
            "only 1-on-1 services have slots, and a check constraint keeps their duration "
            "above 0: the `or` default is never taken",
        )
        for n in (1, -1)
    ],
    (
        "bookings/services/seats.py",
        "@dataclass(frozen=True)",
        "@dataclass(frozen=False)",
        "Slot and SeatNeeds are never hashed nor assigned to after they are made",
    ),
    *[
        (
            path,
            f'list({rows}.values_list("pk", flat=True))',
            f'list({rows}.values_list("pk", flat=False))',
            "the rows are read only to take their locks; the values are thrown away",
        )
        for path, rows in (
            ("bookings/services/seats.py", 'sessions.order_by("pk")'),
            ("bookings/services/seats.py", 'services.order_by("pk")'),
            ("bookings/services/holds.py", "users"),
        )
    ],
    *[
        (
            "billing/services/events.py",
            "DRAIN_TIME_BUDGET = timedelta(seconds=20)",
            f"DRAIN_TIME_BUDGET = timedelta(seconds={n})",
            "a tuning figure, not a rule: a second more or less keeps a drain and one slow "
            "event inside the task's timeout, as 20 s does",
        )
        for n in (19, 21)
    ],
    (
        "billing/services/reconcile.py",
        "if len(batch) == 100:",
        "if not len(batch) == 100:",
        "a batch of one instead of a hundred: every event is still looked up and stored "
        "once; only the number of lookups changes",
    ),
    (
        "bookings/services/plans.py",
        "if parsed.tzinfo is None or parsed.utcoffset() is None:",
        "if parsed.tzinfo is None and parsed.utcoffset() is None:",
        "`datetime.fromisoformat` gives either no tzinfo (and so no offset) or a fixed "
        "offset: the two tests never disagree on what it parses",
    ),
    (
        "bookings/services/plans.py",
        "return upcoming[0]",
        "return upcoming[-1]",
        "exactly one upcoming session is left here: first and last are the same",
    ),
    (
        "bookings/services/plans.py",
        "if service.kind == Kind.WORKSHOP:",
        "if service.kind >= Kind.WORKSHOP:",
        "no kind's value sorts after 'workshop', so only a workshop is >= it",
    ),
    (
        "bookings/services/plans.py",
        "if len(upcoming) > 1:",
        "if len(upcoming) != 1:",
        "the empty list was refused just above, so the length is 1 or 2 here",
    ),
    (
        "bookings/services/plans.py",
        "upcoming = list(ServiceSession.objects.filter(service=service, start__gt=now)[:2])",
        "upcoming = list(ServiceSession.objects.filter(service=service, start__gt=now)[:3])",
        "only whether there is more than one upcoming session is asked: 3 rows or 2 "
        "answer it alike",
    ),
    (
        "credits/services.py",
        "@dataclass(frozen=True)",
        "@dataclass(frozen=False)",
        "a LedgerWrite is never hashed nor assigned to after it is made",
    ),
    (
        "credits/services.py",
        "lot.category != CreditLot.Category.PROMOTIONAL,",
        "lot.category < CreditLot.Category.PROMOTIONAL,",
        "every lot is 'paid' or 'promotional' (a grant checks its category, the opening "
        "lots are paid), and only 'paid' sorts before 'promotional'",
    ),
    *[
        (
            "credits/services.py",
            "if amount <= 0:",
            mutant,
            "the credits left to draw or give back start at zero or more (a refund debit and a "
            "roll-over are above zero, a return's share for its lots is never negative) and "
            "each step takes at most what is left: they never go below zero, and once they are "
            "zero every later lot would be planned at most 0, which the `> 0` test skips",
        )
        for mutant in ("if amount == 0:", "if amount < 0:", "if amount <= -1:")
    ],
    (
        "credits/services.py",
        "break",
        "continue",
        "the loop only stops once nothing is left to draw or give back: going on through the "
        "remaining lots plans nothing more for them",
    ),
    *[
        (
            "credits/services.py",
            "if taken > 0:",
            mutant,
            "both callers pass only lots with `remaining` above zero (`remaining__gt=0`) and "
            "the loop stops once nothing is left to take, so `min(lot.remaining, amount)` is "
            "at least 1",
        )
        for mutant in ("if taken >= 0:", "if taken != 0:", "if taken > -1:")
    ],
    *[
        (
            "credits/services.py",
            "if amount < 0:",
            mutant,
            "`_amount_checked` on the line before refuses zero and anything not an int, and "
            "for a non-zero int `< 0`, `<= 0` and `< 1` agree",
        )
        for mutant in ("if amount <= 0:", "if amount < 1:")
    ],
    *[
        (
            "credits/services.py",
            "if isinstance(amount, int) and not isinstance(amount, bool) and amount < 0:",
            f"if isinstance(amount, int) and not isinstance(amount, bool) and {mutant}:",
            "a zero amount then takes the adjustment branch, whose first step is the same "
            "`_amount_checked(0)` that refuses it on the grant branch, with the same error",
        )
        for mutant in ("amount <= 0", "amount < 1")
    ],
]


def _annotation_spans(tree: ast.Module) -> list[Span]:
    spans: list[Span] = []

    def add(node: ast.AST | None) -> None:
        if node is not None:
            spans.append(
                ((node.lineno, node.col_offset), (node.end_lineno or 0, node.end_col_offset or 0))
            )

    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = node.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
                add(arg.annotation if arg else None)
            add(node.returns)
        elif isinstance(node, ast.AnnAssign):
            add(node.annotation)
    return spans


def _postponed(tree: ast.Module) -> bool:
    return any(
        isinstance(n, ast.ImportFrom)
        and n.module == "__future__"
        and any(a.name == "annotations" for a in n.names)
        for n in tree.body
    )


def _is_keyword_only_marker(lines: list[str], row: int, col: int) -> bool:
    """The `*` at (row, col) stands alone between commas or a parenthesis: the marker."""
    line = lines[row - 1]
    if line[col : col + 1] != "*" or line[col + 1 : col + 2] == "*":
        return False
    after = line[col + 1 :].lstrip()
    before = line[:col].rstrip()
    if not before and row > 1:
        before = lines[row - 2].rstrip()
    return after[:1] in (",", ")") and before[-1:] in ("(", ",")


def _bare(line: str) -> str:
    return "".join(line.split())


def why_equivalent(
    source: str,
    start: tuple[int, int],
    end: tuple[int, int],
    *,
    module: str = "",
    mutated: str = "",
) -> str:
    """Why the mutant spanning `start`..`end` (cosmic-ray's 1-based rows, 0-based
    columns) cannot change behaviour, or "" when it may. `mutated`: the mutant's
    source, for the mutants in `KNOWN`."""
    lines, changed = source.splitlines(), mutated.splitlines()
    if len(lines) == len(changed):
        before, after = _bare(lines[start[0] - 1]), _bare(changed[start[0] - 1])
        for path, text, mutant, why in KNOWN:
            if module == path and before == _bare(text) and after == _bare(mutant):
                return f"read and found equivalent: {why}"
    tree = ast.parse(source)
    if _postponed(tree):
        for lo, hi in _annotation_spans(tree):
            if lo <= start and end <= hi:
                return "inside an annotation, which this module never evaluates"
    if start[0] == end[0] and _is_keyword_only_marker(source.splitlines(), *start):
        return "the keyword-only marker: every call names these arguments"
    return ""


def skip_equivalent(session: Path, root: Path) -> dict[str, int]:
    """Mark the session's equivalent and non-compiling mutants skipped (those run
    already too: the verdict comes from the source, not from a run); answers how many,
    by why."""
    counts: dict[str, int] = {}
    sources: dict[str, str] = {}
    with use_db(str(session), WorkDB.Mode.open) as db:
        skipped: dict[str, list[str]] = {}
        for item in db.work_items:
            if len(item.mutations) != 1:
                continue
            m = item.mutations[0]
            path = str(m.module_path)
            if path not in sources:
                sources[path] = (root / path).read_text()
            operator = cosmic_ray.plugins.get_operator(m.operator_name)(**(m.operator_args or {}))
            mutated = mutate_code(sources[path], operator, m.occurrence)
            try:
                with warnings.catch_warnings():  # `x is 1` compiles, with a warning
                    warnings.simplefilter("ignore")
                    compile(mutated or "", path, "exec")
            except SyntaxError:
                why = "not Python: the mutated module does not compile"
            else:
                why = why_equivalent(
                    sources[path],
                    tuple(m.start_pos),
                    tuple(m.end_pos),
                    module=path,
                    mutated=mutated or "",
                )
            if why:
                skipped.setdefault(why, []).append(item.job_id)
        for why, job_ids in skipped.items():
            db.set_multiple_results(
                job_ids,
                WorkResult(output=why, worker_outcome=WorkerOutcome.SKIPPED),
            )
            counts[why] = len(job_ids)
    return counts
