"""Progress on a terminal for long management commands (erasure, replays)."""

from __future__ import annotations

from collections.abc import Callable

from django.core.management.base import OutputWrapper


def progress_bar(out: OutputWrapper, label: str) -> Callable[[int, int], None]:
    """A one-line bar, redrawn in place: `label [#####.....] 5/10`; a newline when done."""

    def show(done: int, total: int) -> None:
        filled = int(30 * done / total) if total else 30
        out.write(f"\r{label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}", ending="")
        if done >= total:
            out.write("")
        out.flush()

    return show
