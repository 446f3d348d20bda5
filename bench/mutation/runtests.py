"""The test command cosmic-ray runs after each mutation: only the tests that execute the
mutated line, on a fresh copy of a migrated database.

    python -m bench.mutation.runtests HOME            (the test command; cwd: the tree)
    python -m bench.mutation.runtests HOME --prepare  (the template database, once)
    python -m bench.mutation.runtests HOME --trace    (record which tests run each line)
    python -m bench.mutation.runtests HOME --trace PATH...  (the same for these tests
                                                        only, into trace-more.json)

HOME is `var/mutation/<target>`; it holds `pristine/` (the target's files as they
were when the session began), `tests.json` (the target's test paths) and, after
`--trace`, `trace.json` (`bench.mutation.tracer`). The mutated file and line are
found by comparing the tree with `pristine/`. A line run by some tests runs those;
a line run at import (a constant, a default, a decorator) runs every test that
touched the module, recorded at import or not (a module imported before the trace
began); a line no test ever ran needs no run: no test can see it.

The database: the suite's server (DATABASE_URL), with a database of the target's
own (`tollgate_mutation_<target>`). Its test database is cloned once from a
migrated template, and before every run emptied and given back the rows the
migrations wrote (a transactional test's flush deletes them), so `--reuse-db`
skips the migrations and no run sees rows or flushes left by the one before.

The rule: without a trace, or when the mutated file cannot be told, it runs every
test of the target, never fewer.
"""

from __future__ import annotations

import ast
import difflib
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench.mutation.tracer import IMPORT


def _db_urls(home: Path, worker: str = "") -> tuple[str, str, str]:
    """(the target's DATABASE_URL, its test database's name, the template's name); a
    worker (`bench.mutation.worker`) has a database of its own."""
    url = urlsplit(os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/tollgate")
    base = f"tollgate_mutation_{home.name}"
    name = f"{base}_w{worker}" if worker else base
    return urlunsplit(url._replace(path="/" + name)), f"test_{name}", f"test_{base}_tpl"


def _admin(url: str):
    import psycopg

    return psycopg.connect(urlunsplit(urlsplit(url)._replace(path="/postgres")), autocommit=True)


def prepare(home: Path) -> None:
    """Make the migrated template database, unless it exists."""
    url, _, template = _db_urls(home)
    with _admin(url) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [template]).fetchone():
            return
        conn.execute(f'CREATE DATABASE "{template}"')
    env = {**os.environ, "DATABASE_URL": urlunsplit(urlsplit(url)._replace(path="/" + template))}
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env=env, check=False
    )
    if done.returncode:
        with _admin(url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
        raise SystemExit(f"migrating the template database {template} failed")


def _connect(url: str, name: str):
    import psycopg

    return psycopg.connect(urlunsplit(urlsplit(url)._replace(path="/" + name)))


def _seed_keep(home: Path, url: str, template: str) -> None:
    """The rows the migrations wrote (content types, permissions, groups, schedules),
    as COPY data, and every table's name: what a reset puts back."""
    seed = home / "seed"
    seed.mkdir(exist_ok=True)
    with _connect(url, template) as conn:
        tables = [
            t
            for (t,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'django_migrations' ORDER BY 1"
            )
        ]
        for table in tables:
            data = bytearray()
            with conn.cursor().copy(f'COPY "{table}" TO STDOUT') as copy:
                for chunk in copy:
                    data += chunk
            if data:
                (seed / f"{table}.copy").write_bytes(bytes(data))
    (seed / "tables.json").write_text(json.dumps(tables))


def reset(home: Path, url: str, test_db: str) -> None:
    """Put the test database back as the migrations left it, in one transaction:
    every table emptied, then the migrations' rows copied back (a clone of the
    template costs seconds; this, a fraction of one)."""
    from psycopg import sql

    seed = home / "seed"
    tables = json.loads((seed / "tables.json").read_text())
    with _connect(url, test_db) as conn:
        conn.execute(
            "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"
        )
        for path in sorted(seed.glob("*.copy")):
            table = path.stem
            with conn.cursor().copy(f'COPY "{table}" FROM STDIN') as copy:
                copy.write(path.read_bytes())
            has_id = conn.execute(
                "SELECT 1 FROM information_schema.columns WHERE table_name = %s "
                "AND column_name = 'id'",
                [table],
            ).fetchone()
            if has_id:
                conn.execute(
                    sql.SQL(
                        "SELECT setval(pg_get_serial_sequence({}, 'id'), (SELECT max(id) FROM {}))"
                    ).format(sql.Literal(f'"{table}"'), sql.Identifier(table))
                )


def fresh_test_db(home: Path, worker: str = "") -> str:
    """The target's (or a worker's) test database as the migrations left it; its
    DATABASE_URL."""
    url, test_db, template = _db_urls(home, worker)
    if not (home / "seed" / "tables.json").exists():
        _seed_keep(home, url, template)
    with _admin(url) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [test_db])
        if exists.fetchone() is None:
            conn.execute(f'CREATE DATABASE "{test_db}" TEMPLATE "{template}"')
            return url
    reset(home, url, test_db)
    return url


def changed_lines(before: str, after: str) -> list[int]:
    """The lines of `before` that `after` changed (a pure insertion: the line before it)."""
    lines: set[int] = set()
    matcher = difflib.SequenceMatcher(a=before.splitlines(), b=after.splitlines(), autojunk=False)
    for tag, i1, i2, _j1, _j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        lines.update(range(i1 + 1, i2 + 1) if i2 > i1 else [max(1, i1)])
    return sorted(lines)


def _changed_lines(home: Path, tree: Path) -> dict[str, list[int]]:
    """{absolute path in the tree: lines of the pristine file the mutation changed}."""
    pristine = home / "pristine"
    out: dict[str, list[int]] = {}
    for original in sorted(pristine.rglob("*.py")):
        rel = original.relative_to(pristine)
        before, now = original.read_text(), (tree / rel).read_text()
        if before != now:
            out[str((tree / rel).resolve())] = changed_lines(before, now)
    return out


def statement_starts(source: str, lines: list[int]) -> set[int]:
    """The first line of the innermost statement (or compound statement's header) that
    spans each of `lines`.

    A line in the middle of a statement runs in fewer tests than its first line: the
    rest of `a or b`, split over two lines, runs only where `a` is false, and a mutant
    there (`a and b`) changes what every test that ran the statement sees.
    """
    spans = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.stmt):
            continue
        body = getattr(node, "body", None)
        end = body[0].lineno - 1 if isinstance(body, list) and body else node.end_lineno
        spans.append((node.lineno, max(node.lineno, end or node.lineno)))
    starts = set()
    for line in lines:
        inside = [start for start, end in spans if start <= line <= end]
        if inside:
            starts.add(max(inside))
    return starts


def function_body_lines(source: str) -> set[int]:
    """The lines inside function bodies: every other line (a constant, a default, a
    decorator, a class attribute) runs when the module is imported."""
    inside: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno:
            inside.update(range(node.body[0].lineno, node.end_lineno + 1))
    return inside


def tests_for(trace: dict, path: str, lines: list[int], source: str | None = None) -> list[str]:
    """The traced tests that run any of `lines` of `path`, or the first line of the
    statement around it (`source`, the unmutated file, says where each begins), in the
    order they ran."""
    order = {test: i for i, test in enumerate(trace["tests"])}
    recorded = {int(k): set(v) for k, v in trace["lines"].get(path, {}).items()}
    wanted: set[str] = set()
    starts = statement_starts(source, lines) if source is not None else set()
    in_bodies = function_body_lines(source) if source is not None else None
    for line in sorted({*lines, *starts}):
        found = recorded.get(line)
        if found is None and in_bodies is not None and line not in in_bodies:
            # Run at import, before the trace began (the module was imported first).
            found = {IMPORT}
        if found is None:
            # Not a line the tracer stops at (the middle of a multi-line statement, a
            # comment): take the recorded lines around it.
            before = [n for n in recorded if n < line]
            after = [n for n in recorded if n > line]
            found = set()
            if before:
                found |= recorded[max(before)]
            if after:
                found |= recorded[min(after)]
        if IMPORT in found:
            found = set().union(*recorded.values())
        wanted |= found
    wanted.discard(IMPORT)
    return sorted(wanted, key=lambda t: order.get(t, len(order)))


def select(home: Path, tree: Path) -> list[str] | None:
    """The tests to run for the mutant in `tree` (None: all of the target's)."""
    trace_file = home / "trace.json"
    if not trace_file.exists():
        return None
    changed = _changed_lines(home, tree)
    if len(changed) != 1:
        return None
    [(path, lines)] = changed.items()
    source = (home / "pristine" / Path(path).relative_to(tree.resolve())).read_text()
    return tests_for(json.loads(trace_file.read_text()), path, lines, source)


def _pytest_args() -> list[str]:
    args = ["-x", "-q", "-p", "no:cacheprovider", "--reuse-db"]
    try:
        import pytest_randomly  # noqa: F401
    except ImportError:
        pass
    else:
        args += ["-p", "no:randomly"]
    return args


def run(home: Path, *, trace: bool = False, only: list[str] | None = None) -> int:
    """The test command (or, with `trace`, the trace of `only` those test paths, or of
    all the target's tests, into `trace.json`)."""
    tree = Path.cwd()
    tests = only or json.loads((home / "tests.json").read_text())
    chosen = None if trace else select(home, tree)
    if chosen == []:
        print("no test runs the mutated line: nothing can tell the mutant apart")
        return 0
    env = {**os.environ, "DATABASE_URL": fresh_test_db(home)}
    cmd = [sys.executable, "-m", "pytest", *_pytest_args()]
    if trace:
        files = [
            str((tree / p.relative_to(home / "pristine")).resolve())
            for p in sorted((home / "pristine").rglob("*.py"))
        ]
        env["MUTATION_TRACE_FILES"] = os.pathsep.join(files)
        env["MUTATION_TRACE_OUT"] = str(home / ("trace-more.json" if only else "trace.json"))
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--reuse-db",
            "-p",
            "bench.mutation.tracer",
        ]
    cmd += tests if chosen is None else chosen
    return subprocess.run(cmd, env=env, check=False).returncode


def main(argv: list[str]) -> int:
    home = Path(argv[0]).resolve()
    if "--prepare" in argv:
        prepare(home)
        return 0
    if "--trace" in argv:
        return run(home, trace=True, only=argv[argv.index("--trace") + 1 :])
    return run(home)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
