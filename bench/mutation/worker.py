"""A mutation worker: one pytest session that collects the target's tests and sets up
the session's fixtures (the database, the development Stripe) once, then tests each
mutant in a forked child of itself.

    python -m bench.mutation.worker HOME N   (cwd: the tree; HOME: var/mutation/<target>)

The queue is `HOME/queue.json` (the mutants of this run, written by `make mutate`);
workers take mutants from it through `HOME/claims.sqlite`, so each is tested once, and
append each verdict to `HOME/results-wN.jsonl`. For each mutant:
1. its source is made (cosmic-ray's operator) and compared with the pristine file
   (`bench.mutation.swap`): the same bytecode is a verdict of its own (equivalent); a
   change outside function bodies goes to the slow path (`fallback`), which writes the
   file and starts pytest afresh;
2. the tests that run the changed lines (`trace.json`) are chosen, fastest first; none:
   it survives, since no test can tell it apart;
3. the worker's database is put back as the migrations left it, when the last child
   ran a test that commits;
4. a child is forked; it swaps the mutant's code into the live functions and runs the
   chosen tests until one fails; the parent waits, and kills it at the deadline;
5. a failure is checked: the failing test runs alone in a child with the mutant, and
   must fail again, and alone without it, and must pass; a hang is checked: the same
   tests without the mutant must finish in time. A test that fails with the mutant
   but passes alone with it (a fuzz test's new inputs, a busy machine) judges
   nothing: the tests after it go on. Any other doubt sends the mutant to the slow
   path.

The rule: a mutant is killed only by a test that fails with it, alone too, and passes
without it (or by tests that hang with it and finish without it); the parent process never runs
a mutant.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import json
import os
import signal
import sqlite3
import sys
import time
import traceback
from pathlib import Path

import pytest

from bench.mutation.runtests import changed_lines, fresh_test_db, reset, tests_for
from bench.mutation.swap import SAME, live_functions, swap, swap_plan

# Tests that commit (and so leave rows, or flush the migrations' rows): after a child
# ran one, the database is put back before the next.
_COMMITTING = {"transactional_db", "live_server", "django_db_reset_sequences"}


class _SessionOnly:
    """A stand-in `nextitem` whose chain is the session alone: tearing down to it ends
    every module's and test's fixtures and keeps the session's."""

    nodeid = "<between mutants>"

    def __init__(self, session: pytest.Session) -> None:
        self._chain = [session]

    def listchain(self) -> list:
        return self._chain


def _deadline(seconds) -> float:
    """How long a child may take: three times what its tests took when traced (tracing
    slows them already), and half a minute for a slow moment of a shared machine."""
    return 30 + 3 * sum(seconds)


def _commits(item: pytest.Item) -> bool:
    marker = item.get_closest_marker("django_db")
    if marker is not None and marker.kwargs.get("transaction"):
        return True
    return bool(_COMMITTING & set(getattr(item, "fixturenames", ())))


def _claim(db: sqlite3.Connection, job_id: str, worker: str) -> bool:
    try:
        with db:
            db.execute("INSERT INTO claims (job_id, worker) VALUES (?, ?)", [job_id, worker])
    except sqlite3.IntegrityError:
        return False
    return True


def _mutated_source(job: dict, pristine: str) -> str | None:
    import cosmic_ray.plugins
    from cosmic_ray.mutating import mutate_code

    operator = cosmic_ray.plugins.get_operator(job["operator"])(**(job.get("args") or {}))
    return mutate_code(pristine, operator, job["occurrence"])


class Worker:
    def __init__(self, home: Path, number: str, session: pytest.Session) -> None:
        self.home, self.number, self.session = home, number, session
        self.tree = Path.cwd().resolve()
        self.trace = json.loads((home / "trace.json").read_text())
        self.seconds: dict[str, float] = self.trace.get("seconds", {})
        self.items = {item.nodeid: item for item in session.items}
        self.between = _SessionOnly(session)
        self.url = os.environ["DATABASE_URL"]
        self.test_db = "test_" + self.url.rsplit("/", 1)[1].split("?")[0]
        self.dirty = True
        self.live: dict[str, dict] = {}
        self.out = home / f"results-w{number}.jsonl"
        self.child_file = home / f"child-w{number}.json"
        self.log = home / f"worker-w{number}.log"

    # --- the parent's side -----------------------------------------------------------

    def warm_up(self) -> None:
        """Set up the session's fixtures here, once, by running one test that needs
        them all; every child finds them made."""
        from _pytest.runner import runtestprotocol

        for original in (self.home / "pristine").rglob("*.py"):
            parts = list(original.relative_to(self.home / "pristine").with_suffix("").parts)
            importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
        needs = {"stripe_server", "db"}
        warm = next(
            (i for i in self.session.items if needs <= set(getattr(i, "fixturenames", ()))),
            None,
        ) or next(iter(self.session.items))
        reports = runtestprotocol(warm, nextitem=self.between, log=False)  # type: ignore[arg-type]
        if any(r.failed for r in reports):
            raise SystemExit(f"the warm-up test {warm.nodeid} fails without a mutant")
        self._close_connections()

    @staticmethod
    def _close_connections() -> None:
        from django.db import connections

        connections.close_all()

    def _functions(self, path: str) -> dict:
        if path not in self.live:
            self.live[path] = live_functions(path)
        return self.live[path]

    def _fork(self, tests: list[str], plan, path: str, deadline: float) -> dict:
        """Run `tests` in a child (with `plan` swapped in, when given); its report."""
        self.child_file.unlink(missing_ok=True)
        if self.dirty:
            reset(self.home, self.url, self.test_db)
        self._close_connections()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 3
            try:
                os.setpgid(0, 0)
                log = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                os.dup2(log, 1)
                os.dup2(log, 2)
                code = self._child(tests, plan, path)
            except BaseException:  # reported through the file
                self.child_file.write_text(json.dumps({"error": traceback.format_exc()}))
            finally:
                os._exit(code)
        began, timed_out = time.monotonic(), False
        while True:
            done, _status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() - began > deadline:
                timed_out = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.02)
        self.dirty = True  # unless the child says it ran nothing that commits
        try:
            report = json.loads(self.child_file.read_text())
        except (OSError, ValueError):
            report = {"error": "the child ended without a report"}
        report["timed_out"] = timed_out
        report["seconds"] = round(time.monotonic() - began, 2)
        if "ran" in report and not timed_out:
            self.dirty = report["dirty"]
        return report

    def _child(self, tests: list[str], plan, path: str) -> int:
        from _pytest.runner import runtestprotocol

        if plan is not None:
            swap(plan, self._functions(path))
        items = [self.items[t] for t in tests]
        failed, ran, dirty = None, 0, False
        for i, item in enumerate(items):
            nextitem = items[i + 1] if i + 1 < len(items) else self.between
            dirty = dirty or _commits(item)
            reports = runtestprotocol(item, nextitem=nextitem, log=False)  # type: ignore[arg-type]
            ran += 1
            if any(r.failed for r in reports):
                failed = item.nodeid
                if nextitem is not self.between:
                    item.session._setupstate.teardown_exact(self.between)  # type: ignore[arg-type]
                break
        self.child_file.write_text(json.dumps({"failed": failed, "ran": ran, "dirty": dirty}))
        return 1 if failed else 0

    def test(self, job: dict) -> dict:
        """The verdict on one mutant."""
        rel = job["module"]
        path = str((self.tree / rel).resolve())
        pristine = (self.home / "pristine" / rel).read_text()
        mutated = _mutated_source(job, pristine)
        verdict = {"job_id": job["job_id"]}
        if mutated is not None:
            verdict["diff"] = "".join(
                difflib.unified_diff(
                    pristine.splitlines(keepends=True),
                    mutated.splitlines(keepends=True),
                    f"a/{rel}",
                    f"b/{rel}",
                    n=1,
                )
            )
        if mutated is None:
            return {**verdict, "outcome": "fallback", "why": "the operator applied nothing"}
        plan = swap_plan(pristine, mutated, path)
        if plan == SAME:
            return {**verdict, "outcome": "equivalent", "why": "compiles to the same bytecode"}
        if plan is None:
            return {**verdict, "outcome": "fallback", "why": "outside a function body"}
        try:
            missing = [key for key, _ in plan if not self._functions(path).get(key)]
            if any("<locals>" not in key[0] for key in missing):
                raise LookupError(f"no live function {missing[0]}")
        except LookupError as exc:
            return {**verdict, "outcome": "fallback", "why": str(exc)}
        lines = changed_lines(pristine, mutated)
        tests = [t for t in tests_for(self.trace, path, lines, pristine) if t in self.items]
        if not tests:
            return {**verdict, "outcome": "survived", "why": "no test runs the mutated line"}
        tests.sort(key=lambda t: self.seconds.get(t, 1.0))
        unrepeated: list[str] = []
        while True:
            deadline = _deadline(self.seconds.get(t, 1.0) for t in tests)
            report = self._fork(tests, plan, path, deadline)
            verdict["seconds"] = verdict.get("seconds", 0.0) + report["seconds"]
            if report["timed_out"]:
                # A slow moment of the machine is not a hang: the same tests without the
                # mutant must finish in the same time.
                control = self._fork(tests, None, path, deadline)
                if control["timed_out"] or control.get("failed") is not None or "error" in control:
                    return {**verdict, "outcome": "fallback", "why": "slow without the mutant too"}
                return {**verdict, "outcome": "killed", "why": f"hung past {deadline:.0f} s"}
            if "error" in report:
                return {**verdict, "outcome": "fallback", "why": report["error"][-300:]}
            failed = report["failed"]
            if failed is None:
                why = f"{report['ran']} tests passed"
                if unrepeated:
                    why += "; failed once but passed alone with it: " + ", ".join(unrepeated)
                return {**verdict, "outcome": "survived", "why": why}
            alone = _deadline([self.seconds.get(failed, 1.0)])
            # The failing test, alone, must fail with the mutant (a failure a busy machine
            # or an earlier test caused would not) and pass without it.
            again = self._fork([failed], plan, path, alone)
            if again.get("failed") == failed or again["timed_out"]:
                break
            # Not a kill: the tests after it judge the mutant.
            unrepeated.append(failed)
            tests = tests[tests.index(failed) + 1 :]
            if not tests:
                why = "failed once but passed alone with it: " + ", ".join(unrepeated)
                return {**verdict, "outcome": "survived", "why": why}
        control = self._fork([failed], None, path, alone)
        if control.get("failed") is not None or "error" in control or control["timed_out"]:
            return {**verdict, "outcome": "fallback", "why": f"{failed} fails alone without it"}
        return {**verdict, "outcome": "killed", "why": f"{failed} failed"}

    def run(self) -> None:
        queue = json.loads((self.home / "queue.json").read_text())
        claims = sqlite3.connect(self.home / "claims.sqlite", timeout=60)
        self.warm_up()
        with self.out.open("a") as out:
            for job in queue:
                if not _claim(claims, job["job_id"], self.number):
                    continue
                try:
                    verdict = self.test(job)
                except Exception:  # this mutant goes to the slow path
                    verdict = {
                        "job_id": job["job_id"],
                        "outcome": "fallback",
                        "why": traceback.format_exc()[-300:],
                    }
                out.write(json.dumps(verdict) + "\n")
                out.flush()


class _Plugin:
    def __init__(self, home: Path, number: str) -> None:
        self.home, self.number = home, number

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        Worker(self.home, self.number, session).run()
        return True


def main(argv: list[str]) -> int:
    home, number = Path(argv[0]).resolve(), argv[1]
    os.environ["DATABASE_URL"] = fresh_test_db(home, number)
    tests = json.loads((home / "tests.json").read_text())
    args = ["-q", "-p", "no:cacheprovider", "-p", "no:randomly", "--reuse-db", *tests]
    return int(pytest.main(args, plugins=[_Plugin(home, number)]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
