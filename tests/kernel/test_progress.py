"""Progress of long commands: redrawn in place on a terminal, whole lines in a log."""

from __future__ import annotations

from io import StringIO

from django.core.management.base import OutputWrapper

from kernel.progress import progress_bar


class Terminal(StringIO):
    def isatty(self) -> bool:
        return True


def test_in_a_log_each_tenth_is_a_line_of_its_own():
    log = StringIO()
    show = progress_bar(OutputWrapper(log), "replaying")
    for done in range(1, 1001):
        show(done, 1000)

    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert lines[0] == f"replaying [{'.' * 30}] 1/1000"
    assert len(lines) == 11
    assert lines[-1] == f"replaying [{'#' * 30}] 1000/1000"


def test_in_a_log_without_a_total_a_count_every_hundred():
    log = StringIO()
    show = progress_bar(OutputWrapper(log), "events read")
    for done in range(1, 251):
        show(done, None)

    assert log.getvalue().splitlines() == ["events read 1", "events read 100", "events read 200"]


def test_on_a_terminal_one_line_is_redrawn_and_ended():
    tty = Terminal()
    show = progress_bar(OutputWrapper(tty), "replaying")
    for done in range(1, 4):
        show(done, 3)

    text = tty.getvalue()
    assert text.count("\r") == 3
    assert text.count("\n") == 1 and text.endswith("3/3\n")
