"""`make mutate`: mutation testing of the money path with cosmic-ray; prints the kill rate
and the surviving mutants.

    python -m bench.mutation [credits|billing|bookings] [--limit N] [--workers N] [--recheck]

Each target mutates one part of the money path and runs the money path's tests that
execute the mutated line; a mutant those tests still pass is a rule nothing checks.
cosmic-ray makes the mutants and keeps the session (resumable: run again to go on) in
`var/mutation/<target>/session.sqlite`; everything works on a copy of the tracked
files in `var/mutation/<target>/tree`, never on the checkout.

Two paths test a mutant:
- the workers (`bench.mutation.worker`, one per core): each is a pytest session set
  up once that forks a child per mutant and swaps the mutated function's code in
  (`bench.mutation.swap`); a mutant compiling to the same bytecode as the original is
  recorded as equivalent;
- the slow path (`bench.mutation.slowpath`), for what cannot be swapped in (a
  module's constant, a decorator, a class attribute) or failed for another reason: the
  file is written and pytest started afresh.

`--limit` tests that many untested mutants, drawn at random (cosmic-ray's order);
`--recheck`, after tests were added or changed, traces those test files and tests
the survivors again; `--retest-kills-by TEXT` tests again the kills a test named TEXT
made (or that hung).

The rule: it never touches the working tree, and it is not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

from bench.mutation.equivalent import skip_equivalent

ROOT = Path(__file__).resolve().parents[2]
# What each target mutates, and the tests that may cover it (the trace says which do).
MONEY_PATH_TESTS = [
    "tests/billing",
    "tests/credits",
    "tests/bookings",
    "tests/purchasables",
    "tests/properties",
    "tests/security",
]
TARGETS = {
    "credits": (["credits/services.py"], MONEY_PATH_TESTS),
    "billing": (["billing/services"], MONEY_PATH_TESTS),
    "bookings": (["bookings/services"], MONEY_PATH_TESTS),
}
TEST_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "mutation-secret-key-not-for-production",
    "ALLOWED_HOSTS": "*",
    "CONN_MAX_AGE": "0",
    "SECURE_SSL_REDIRECT": "0",
    "STRIPE_SECRET_KEY": "sk_test_localstripe",
    "STRIPE_PUBLISHABLE_KEY": "pk_test_localstripe",
    "STRIPE_WEBHOOK_SECRET": "whsec_test_primary,whsec_test_rotated",
    "STRIPE_API_BASE": "http://127.0.0.1:8420",
    "CI": "1",  # the property tests replay their fixed examples
}


def _copy_tree(dest: Path) -> None:
    """The tracked files, as they are in the checkout now, copied to `dest`."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    shutil.rmtree(dest, ignore_errors=True)
    for raw in files:
        if not raw:
            continue
        rel = raw.decode()
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / rel).is_file():
            shutil.copy2(ROOT / rel, target)


def _runtests(home: Path, *flags: str) -> list[str]:
    """`bench.mutation.runtests` for `home`, inside the suite's database wrapper."""
    python = sys.executable
    return [
        python, "-m", "devstack.database", "run", "--for", "tests", "--",
        python, "-m", "bench.mutation.runtests", str(home), *flags,
    ]  # fmt: skip


def _config(target: str, home: Path, path: Path) -> None:
    modules, _ = TARGETS[target]
    command = " ".join(_runtests(home))
    path.write_text(
        f"[cosmic-ray]\nmodule-path = {modules!r}\n".replace("'", '"')
        + f"timeout = 300.0\nexcluded-modules = []\ntest-command = {command!r}\n".replace("'", '"')
        + '\n[cosmic-ray.distributor]\nname = "local"\n'
    )


def _module_files(target: str, root: Path) -> list[Path]:
    """The target's Python files, relative to `root`."""
    out: list[Path] = []
    for module in TARGETS[target][0]:
        path = root / module
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return [p.relative_to(root) for p in out]


def _pristine_keep(target: str, home: Path, tree: Path) -> None:
    """The target's files as cosmic-ray found them: what a mutant is compared with."""
    pristine = home / "pristine"
    shutil.rmtree(pristine, ignore_errors=True)
    for rel in _module_files(target, tree):
        (pristine / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(tree / rel, pristine / rel)
    (home / "tests.json").write_text(json.dumps(TARGETS[target][1]))


def _pristine_restore(home: Path, tree: Path) -> None:
    """Undo a mutation left behind by a run that was stopped in the middle of one."""
    pristine = home / "pristine"
    for original in pristine.rglob("*.py"):
        shutil.copy2(original, tree / original.relative_to(pristine))


def _counts(session: Path) -> tuple[int, int, int]:
    """(mutants tested, killed, survived) from cosmic-ray's session; a skipped mutant
    (`bench.mutation.equivalent`) was not tested."""
    with sqlite3.connect(session) as db:
        rows = db.execute(
            "SELECT test_outcome FROM work_results WHERE test_outcome IS NOT NULL"
        ).fetchall()
    outcomes = [str(o).lower() for (o,) in rows]
    killed = outcomes.count("killed")
    survived = outcomes.count("survived")
    return len(rows), killed, survived


def _skipped(session: Path) -> dict[str, int]:
    with sqlite3.connect(session) as db:
        rows = db.execute(
            "SELECT output, count(*) FROM work_results WHERE worker_outcome = 'SKIPPED' GROUP BY 1"
        ).fetchall()
    return {str(why): n for why, n in rows}


def _changed_tests(tree: Path) -> list[str]:
    """The checkout's test files that the tree does not hold as they are (added or
    changed since the session began), relative to the tree."""
    out = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        rel = path.relative_to(ROOT)
        copy = tree / rel
        if not copy.exists() or copy.read_bytes() != path.read_bytes():
            out.append(str(rel))
    return out


def _trace_merge(home: Path) -> list[str]:
    """Add `trace-more.json` (the added or changed tests) to the session's trace, but
    for the tests that failed there; answers those."""
    trace = json.loads((home / "trace.json").read_text())
    more = json.loads((home / "trace-more.json").read_text())
    failed = set(more.get("failed", []))
    for path, lines in more["lines"].items():
        mine = trace["lines"].setdefault(path, {})
        for line, tests in lines.items():
            mine[line] = sorted(set(mine.get(line, [])) | set(tests))
    for lines in trace["lines"].values():
        for line, tests in lines.items():
            lines[line] = [t for t in tests if t not in failed]
    trace["tests"] += [t for t in more["tests"] if t not in set(trace["tests"])]
    trace.setdefault("seconds", {}).update(more.get("seconds", {}))
    (home / "trace.json").write_text(json.dumps(trace))
    (home / "trace-more.json").unlink()
    return sorted(failed)


def _queue(
    session: Path, *, survivors: bool, limit: int, kills_by: list[str] | None = None
) -> list[dict]:
    """The mutants of this run: the untested ones in cosmic-ray's (random) order, or the
    survivors and the killed ones whose verdict names one of `kills_by`; at most `limit`."""
    with use_db(str(session), WorkDB.Mode.open) as db:
        if kills_by or survivors:
            items = [
                item for item, result in db.completed_work_items
                if (survivors and result.test_outcome == TestOutcome.SURVIVED)
                or (
                    result.test_outcome == TestOutcome.KILLED
                    and any(text in (result.output or "") for text in kills_by or [])
                )
            ]  # fmt: skip
        else:
            items = list(db.pending_work_items)
    items = [item for item in items if len(item.mutations) == 1]
    if limit:
        items = items[:limit]
    return [
        {
            "job_id": item.job_id,
            "module": str(item.mutations[0].module_path),
            "operator": item.mutations[0].operator_name,
            "args": item.mutations[0].operator_args or {},
            "occurrence": item.mutations[0].occurrence,
        }
        for item in items
    ]


_RESULTS = {
    "killed": (WorkerOutcome.NORMAL, TestOutcome.KILLED),
    "survived": (WorkerOutcome.NORMAL, TestOutcome.SURVIVED),
    "equivalent": (WorkerOutcome.SKIPPED, None),
}


def _verdicts(home: Path) -> list[dict]:
    out = []
    for path in sorted(home.glob("results-w*.jsonl")):
        out += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return out


def _merge(home: Path, session: Path) -> list[str]:
    """Write the workers' verdicts into cosmic-ray's session; answers the job ids left
    for the slow path."""
    fallbacks = []
    with use_db(str(session), WorkDB.Mode.open) as db:
        for verdict in _verdicts(home):
            if verdict["outcome"] == "fallback":
                fallbacks.append(verdict["job_id"])
                continue
            worker_outcome, test_outcome = _RESULTS[verdict["outcome"]]
            why = verdict["why"]
            if verdict["outcome"] == "equivalent":
                why = "read by the compiler: it " + why
            db.set_result(
                verdict["job_id"],
                WorkResult(
                    worker_outcome=worker_outcome,
                    test_outcome=test_outcome,
                    output=why,
                    diff=verdict.get("diff"),
                ),
            )
    for path in home.glob("results-w*.jsonl"):
        path.unlink()
    return fallbacks


def _progress(home: Path, total: int, began: float) -> str:
    verdicts = _verdicts(home)
    counts = {k: sum(v["outcome"] == k for v in verdicts) for k in (*_RESULTS, "fallback")}
    per = (time.monotonic() - began) / len(verdicts) if verdicts else 0.0
    return (
        f"==> {len(verdicts)}/{total} mutants: {counts['killed']} killed, "
        f"{counts['survived']} survived, {counts['equivalent']} equivalent, "
        f"{counts['fallback']} for the slow path ({per:.1f} s per mutant)"
    )


def _workers(home: Path, tree: Path, env: dict, queue: list[dict], workers: int) -> None:
    """Test the queue in `workers` forking workers (`bench.mutation.worker`)."""
    (home / "queue.json").write_text(json.dumps(queue))
    claims = home / "claims.sqlite"
    claims.unlink(missing_ok=True)
    with sqlite3.connect(claims) as db:
        db.execute("CREATE TABLE claims (job_id TEXT PRIMARY KEY, worker TEXT)")
    python = sys.executable
    procs = []
    for n in range(workers):
        log = (home / f"worker-w{n}.log").open("w")
        cmd = [
            python, "-m", "devstack.database", "run", "--for", "tests", "--",
            python, "-m", "bench.mutation.worker", str(home), str(n),
        ]  # fmt: skip
        procs.append(subprocess.Popen(cmd, cwd=tree, env=env, stdout=log, stderr=log))
    began, last = time.monotonic(), 0.0
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(1)
            if time.monotonic() - last > 30:
                last = time.monotonic()
                print(_progress(home, len(queue), began), flush=True)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=60)
    print(_progress(home, len(queue), began), flush=True)
    failed = [n for n, p in enumerate(procs) if p.returncode not in (0, 5)]
    if failed:
        print(f"==> worker(s) {failed} stopped early: see {home}/worker-w*.log", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make mutate", description=__doc__)
    parser.add_argument("target", nargs="?", default="credits", choices=sorted(TARGETS))
    parser.add_argument("--limit", type=int, default=0, help="stop after this many mutants")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="forking workers (the cores)"
    )
    parser.add_argument(
        "--recheck",
        action="store_true",
        help="after adding tests: copy the checkout's tests in, trace the added or changed "
        "test files, and test only the surviving mutants again",
    )
    parser.add_argument(
        "--retest-kills-by",
        action="append",
        metavar="TEXT",
        help="test again the killed mutants whose verdict names TEXT (a test, 'hung')",
    )
    args = parser.parse_args(argv)
    home = ROOT / "var" / "mutation" / args.target
    tree, session, config = home / "tree", home / "session.sqlite", home / "config.toml"
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **TEST_ENV, "PYTHONPATH": str(tree)}
    # pytest caches the modules it rewrites only where bytecode may be written; without
    # it, every start rewrites the plugins again.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    cosmic = [sys.executable, "-m", "cosmic_ray.cli"]
    if not session.exists():
        _copy_tree(tree)
        _pristine_keep(args.target, home, tree)
        _config(args.target, home, config)
        subprocess.run([*cosmic, "init", str(config), str(session)], cwd=tree, env=env, check=True)
    _pristine_restore(home, tree)
    shared = ROOT.parent / "shared"  # what the tests read beside the checkout (Stripe's fixtures)
    if shared.is_dir() and not (home / "shared").exists():
        (home / "shared").symlink_to(shared)
    # What a stopped run had done goes in first: the equivalents read from the source
    # then overrule a verdict it gave one of them.
    leftover = _merge(home, session)
    skip_equivalent(session, home / "pristine")
    for tool in (ROOT / "bench" / "mutation").glob("*.py"):  # the tools as they are now
        shutil.copy2(tool, tree / "bench" / "mutation" / tool.name)
    retrace: list[str] = []
    if args.recheck:
        retrace = _changed_tests(tree)
        shutil.rmtree(tree / "tests")
        shutil.copytree(
            ROOT / "tests", tree / "tests", ignore=shutil.ignore_patterns("__pycache__")
        )
    subprocess.run(_runtests(home, "--prepare"), cwd=tree, env=env, check=True)
    if not (home / "trace.json").exists():
        # Which tests run each line of the target: each mutant then runs only those.
        print("==> tracing which tests run each line (once per session)", flush=True)
        t0 = time.monotonic()
        traced = subprocess.run(_runtests(home, "--trace"), cwd=tree, env=env, check=False)
        if traced.returncode:
            (home / "trace.json").unlink(missing_ok=True)
            print("==> the unmutated tests fail; fix them first", flush=True)
            return 1
        print(f"==> traced in {time.monotonic() - t0:.0f} s", flush=True)
    if retrace and (home / "trace.json").exists():
        print(f"==> tracing the {len(retrace)} test files added or changed", flush=True)
        subprocess.run(_runtests(home, "--trace", *retrace), cwd=tree, env=env)
        if not (home / "trace-more.json").exists():
            print("==> the added or changed tests could not be traced", flush=True)
            return 1
        for test in _trace_merge(home):
            # A test of a fix made after the session began fails on the session's code.
            print(f"==> fails without a mutant, so judges none: {test}", flush=True)
    # A recheck tests the survivors alone; a stopped run's slow mutants wait for the next run.
    fallbacks = [] if args.recheck or args.retest_kills_by else leftover
    queue = _queue(session, survivors=args.recheck, limit=args.limit, kills_by=args.retest_kills_by)
    print(
        f"==> mutating {', '.join(TARGETS[args.target][0])}: {len(queue)} mutants "
        f"with {args.workers} workers (session {session})",
        flush=True,
    )
    began = time.monotonic()
    if queue:
        _workers(home, tree, env, queue, args.workers)
    fallbacks += _merge(home, session)
    if fallbacks:
        print(f"==> {len(fallbacks)} mutants on the slow path", flush=True)
        jobs = home / "slow.txt"
        jobs.write_text("\n".join(fallbacks) + "\n")
        slow = [
            sys.executable,
            "-m",
            "bench.mutation.slowpath",
            str(session),
            str(config),
            str(jobs),
        ]
        subprocess.run(slow, cwd=tree, env=env, check=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "cosmic_ray.tools.report",
            "--surviving-only",
            "--show-diff",
            str(session),
        ],
        cwd=tree,
        env=env,
    )
    tested, killed, survived = _counts(session)
    for why, n in sorted(_skipped(session).items()):
        print(f"==> skipped, {why}: {n}")
    if queue:
        per = (time.monotonic() - began) / len(queue)
        print(f"==> {len(queue)} mutants in this run, {per:.1f} s per mutant")
    rate = f"{100 * killed / tested:.1f}%" if tested else "n/a"
    print(
        f"==> {args.target}: {tested} mutants tested, {killed} killed, {survived} survived; "
        f"kill rate {rate}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
