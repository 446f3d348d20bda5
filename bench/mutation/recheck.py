"""Run the session's surviving mutants again (cwd: the tree), after tests were added.

    python -m bench.mutation.recheck SESSION CONFIG

Each survivor is applied and tested as `cosmic-ray exec` would, with the config's
test command, and its result replaced by the new one.

The rule: only survivors are run again; a killed mutant stays killed.
"""

from __future__ import annotations

import sys

from cosmic_ray.config import load_config
from cosmic_ray.mutating import mutate_and_test
from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome


def main(argv: list[str]) -> int:
    session, config_path = argv[0], argv[1]
    config = load_config(config_path)
    with use_db(session, WorkDB.Mode.open) as db:
        survivors = [
            item for item, result in db.completed_work_items
            if result.test_outcome == TestOutcome.SURVIVED
        ]  # fmt: skip
        for item in survivors:
            result = mutate_and_test(item.mutations, config.test_command, config.timeout)
            db.set_result(item.job_id, result)
            m = item.mutations[0]
            print(
                f"{m.module_path}:{m.start_pos[0]} {m.operator_name}: {result.test_outcome}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
