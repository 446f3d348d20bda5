"""Cells of the admin's lists: short dates, and long values cut to their column.

The rule: a cut value keeps its whole text in the cell's tooltip, and the CSS
that cuts it (`.tg-clip` in the admin site's stylesheet) is the only thing that
shortens it, so a search or a copy still sees all of it.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString


def clipped(value: object, *, wide: bool = False) -> SafeString:
    """`value` as text cut with an ellipsis to its column, whole in the tooltip."""
    text = "" if value is None else str(value)
    return format_html(
        '<span class="tg-clip{}" title="{}">{}</span>', " tg-wide" if wide else "", text, text
    )


def short_datetime(value: datetime | None) -> str:
    """`2026-12-04 12:53` in the admin's time zone: a list's date in little room."""
    if value is None:
        return "—"
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M")
