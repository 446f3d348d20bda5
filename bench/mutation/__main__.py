"""`make mutate`: mutation testing of the money path with cosmic-ray; prints the kill rate
and the surviving mutants.

    python -m bench.mutation [credits|billing|bookings] [--limit N]

Each target mutates one part of the money path and runs the tests that cover it after
every mutation; a mutant the tests still pass is a rule nothing checks. cosmic-ray
changes files in place, so it works on a copy of the tracked files in
`var/mutation/<target>/tree`, never on the checkout, and its session (resumable:
run again to go on) is `var/mutation/<target>/session.sqlite`. `--limit` stops after
that many mutants (a sample, in cosmic-ray's order).

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

from bench.mutation.equivalent import skip_equivalent

ROOT = Path(__file__).resolve().parents[2]
# What each target mutates, and the tests that cover it.
TARGETS = {
    "credits": (["credits/services.py"], ["tests/credits", "tests/properties"]),
    "billing": (["billing/services"], ["tests/billing", "tests/properties", "tests/purchasables"]),
    "bookings": (["bookings/services"], ["tests/bookings", "tests/purchasables"]),
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make mutate", description=__doc__)
    parser.add_argument("target", nargs="?", default="credits", choices=sorted(TARGETS))
    parser.add_argument("--limit", type=int, default=0, help="stop after this many mutants")
    parser.add_argument(
        "--recheck",
        action="store_true",
        help="after adding tests: copy the checkout's tests in, trace again, and run only "
        "the surviving mutants again",
    )
    args = parser.parse_args(argv)
    home = ROOT / "var" / "mutation" / args.target
    tree, session, config = home / "tree", home / "session.sqlite", home / "config.toml"
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **TEST_ENV, "PYTHONPATH": str(tree)}
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
    skip_equivalent(session, home / "pristine")
    if args.recheck:
        shutil.rmtree(tree / "tests")
        for tool in (ROOT / "bench" / "mutation").glob("*.py"):
            shutil.copy2(tool, tree / "bench" / "mutation" / tool.name)
        shutil.copytree(
            ROOT / "tests", tree / "tests", ignore=shutil.ignore_patterns("__pycache__")
        )
        (home / "trace.json").unlink(missing_ok=True)
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
    print(f"==> mutating {', '.join(TARGETS[args.target][0])} (session {session})", flush=True)
    exec_cmd = [*cosmic, "exec", str(config), str(session)]
    if args.recheck:
        exec_cmd = [sys.executable, "-m", "bench.mutation.recheck", str(session), str(config)]
    done_before, began = _counts(session)[0], time.monotonic()
    if args.limit and not args.recheck:
        proc = subprocess.Popen(exec_cmd, cwd=tree, env=env)
        try:
            while proc.poll() is None:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    if _counts(session)[0] >= args.limit:
                        proc.terminate()
                        proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    else:
        subprocess.run(exec_cmd, cwd=tree, env=env, check=True)
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
    if tested > done_before:
        per = (time.monotonic() - began) / (tested - done_before)
        print(f"==> {tested - done_before} mutants in this run, {per:.1f} s per mutant")
    rate = f"{100 * killed / tested:.1f}%" if tested else "n/a"
    print(
        f"==> {args.target}: {tested} mutants tested, {killed} killed, {survived} survived; "
        f"kill rate {rate}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
