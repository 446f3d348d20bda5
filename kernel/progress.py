"""Progress of long management commands (reconcile, replays, erasure), on a terminal or a log.

On a terminal one line is redrawn in place: `label [#####.....] 5/10`, or a count
when the total is not known. Anywhere else (a pipe, a log file, a container's
output) a redraw would pile up on one endless line, so a full line is written
each tenth of the way (each 100 items without a total) and at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Output(Protocol):
    def write(self, msg: str = "", style_func=None, ending: str | None = None) -> None: ...

    def flush(self) -> None: ...

    def isatty(self) -> bool: ...


def progress_bar(out: Output, label: str) -> Callable[[int, int | None], None]:
    """A progress display on `out`, called with (done, total) as work goes; total None
    when it is not known (then the caller ends a terminal's line itself)."""
    tty = out.isatty()
    last_step = -1

    def line(done: int, total: int | None) -> str:
        if not total:
            return f"{label} {done}"
        filled = int(30 * done / total)
        return f"{label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}"

    def show(done: int, total: int | None) -> None:
        nonlocal last_step
        finished = bool(total) and done >= total
        if tty:
            out.write("\r" + line(done, total), ending="\n" if finished else "")
            out.flush()
            return
        step = int(10 * done / total) if total else done // 100
        if step != last_step or finished:
            last_step = step
            out.write(line(done, total))

    return show
