"""Charts as server-side SVG: readable at a glance, no JavaScript, nothing to build.

The rule: every piece of text that reaches the SVG goes through `escape`, so a
plugin's or a user's text cannot inject markup; the result is then marked safe
once, here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from html import escape

from django.utils.safestring import SafeString, mark_safe

GREEN = "#2e7d32"
RED = "#c62828"
GREY = "#9e9e9e"
BLUE = "#1565c0"
AMBER = "#ef6c00"


@dataclass(frozen=True)
class DayValue:
    day: date
    up: int  # drawn above the axis (money in)
    down: int  # drawn below it (money given back)
    label: str  # shown on hover, e.g. "2025-01-02: 12.50 USD net"


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    shown: str  # the figure printed beside the bar
    colour: str = BLUE


def _svg(width: int, height: int, title: str, body: list[str]) -> SafeString:
    return mark_safe(  # noqa: S308 - every dynamic text below is escaped
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>' + "".join(body) + "</svg>"
    )


def daily_bars(
    title: str, days: list[DayValue], *, top_label: str, width: int = 720, height: int = 200
) -> SafeString:
    """One column per day: what came in, in green above the axis, and what was given
    back, in red below it, on one scale."""
    left, right, top, bottom = 8, 8, 22, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    highest = max((d.up for d in days), default=0)
    deepest = max((d.down for d in days), default=0)
    scale = plot_h / (highest + deepest) if highest + deepest else 0
    axis_y = top + (highest * scale if highest + deepest else plot_h)
    slot = plot_w / max(len(days), 1)
    bar_w = max(min(slot * 0.75, 48), 1)
    body = [
        f'<text x="{left}" y="14" font-size="12" fill="#333">{escape(top_label)}</text>',
        f'<line x1="{left}" y1="{axis_y:.1f}" x2="{width - right}" y2="{axis_y:.1f}" '
        'stroke="#999" stroke-width="1"/>',
    ]
    for n, d in enumerate(days):
        x = left + n * slot + (slot - bar_w) / 2
        for value, y_of, colour in (
            (d.up, lambda h: axis_y - h, GREEN),
            (d.down, lambda h: axis_y, RED),
        ):
            if value <= 0:
                continue
            h = value * scale
            body.append(
                f'<rect class="bar" x="{x:.1f}" y="{y_of(h):.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{escape(d.label)}</title></rect>'
            )
    if days:
        body.append(
            f'<text x="{left}" y="{height - 6}" font-size="11" fill="#555">'
            f"{escape(days[0].day.isoformat())}</text>"
        )
        body.append(
            f'<text x="{width - right}" y="{height - 6}" font-size="11" fill="#555" '
            f'text-anchor="end">{escape(days[-1].day.isoformat())}</text>'
        )
    return _svg(width, height, title, body)


def horizontal_bars(title: str, bars: list[Bar], *, width: int = 420) -> SafeString:
    """Labelled horizontal bars scaled to the largest, each with its figure printed."""
    row, label_w, figure_w = 26, 110, 120
    height = row * max(len(bars), 1) + 8
    plot_w = width - label_w - figure_w
    peak = max((abs(b.value) for b in bars), default=0)
    body = []
    for n, b in enumerate(bars):
        y = 4 + n * row
        w = (abs(b.value) / peak * plot_w) if peak else 0
        body.append(f'<text x="0" y="{y + 16}" font-size="12" fill="#333">{escape(b.label)}</text>')
        if w:
            body.append(
                f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{w:.1f}" '
                f'height="{row - 8}" fill="{b.colour}">'
                f"<title>{escape(b.label)}: {escape(b.shown)}</title></rect>"
            )
        body.append(
            f'<text x="{label_w + w + 6:.1f}" y="{y + 16}" font-size="12" fill="#111">'
            f"{escape(b.shown)}</text>"
        )
    return _svg(width, height, title, body)


def stacked_bar(title: str, parts: list[Bar], *, width: int = 420) -> SafeString:
    """One bar split into parts (payment outcomes), with a legend underneath."""
    height, bar_h = 64, 24
    total = sum(p.value for p in parts)
    body = []
    x = 0.0
    for p in parts:
        w = (p.value / total * width) if total else 0
        if w:
            body.append(
                f'<rect class="bar" x="{x:.1f}" y="4" width="{w:.1f}" height="{bar_h}" '
                f'fill="{p.colour}"><title>{escape(p.label)}: {escape(p.shown)}</title></rect>'
            )
        x += w
    if not total:
        body.append(
            f'<rect x="0" y="4" width="{width}" height="{bar_h}" fill="#eee"/>'
            '<text x="8" y="21" font-size="12" fill="#555">no orders</text>'
        )
    step = width / max(len(parts), 1)
    for n, p in enumerate(parts):
        lx = n * step
        body.append(
            f'<rect x="{lx:.1f}" y="40" width="10" height="10" fill="{p.colour}"/>'
            f'<text x="{lx + 14:.1f}" y="50" font-size="12" fill="#333">'
            f"{escape(p.label)} {escape(p.shown)}</text>"
        )
    return _svg(width, height, title, body)
