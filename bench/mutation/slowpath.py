"""The slow path: the listed mutants tested as cosmic-ray tests them, each written into
the tree's file with pytest started afresh on the config's test command
(`bench.mutation.runtests`). For the mutants a worker cannot swap in
(`bench.mutation.worker`).

    python -m bench.mutation.slowpath SESSION CONFIG JOBS   (cwd: the tree)

JOBS is a file of job ids, one per line; each one's result in the session is replaced
by the new one.

The rule: the file is written back as it was after each mutant, even when its test
command fails or hangs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cosmic_ray.config import load_config
from cosmic_ray.mutating import mutate_and_test
from cosmic_ray.work_db import WorkDB, use_db


def main(argv: list[str]) -> int:
    session, config_path, jobs = argv[0], argv[1], Path(argv[2])
    wanted = [line.strip() for line in jobs.read_text().splitlines() if line.strip()]
    config = load_config(config_path)
    began = time.monotonic()
    with use_db(session, WorkDB.Mode.open) as db:
        items = {item.job_id: item for item in db.work_items}
        for n, job_id in enumerate(wanted, 1):
            item = items[job_id]
            result = mutate_and_test(item.mutations, config.test_command, config.timeout)
            db.set_result(item.job_id, result)
            m = item.mutations[0]
            per = (time.monotonic() - began) / n
            print(
                f"==> slow path {n}/{len(wanted)}: {m.module_path}:{m.start_pos[0]} "
                f"{m.operator_name}: {result.test_outcome} ({per:.0f} s per mutant)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
