"""The admin site's own pages: the financial dashboard and the plugins loaded.

The rule: each page checks its permission (`platform_core.view_dashboard`,
`platform_core.view_plugins`) itself; being staff is not enough.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from backoffice.charts import (
    AMBER,
    BLUE,
    GREEN,
    GREY,
    RED,
    Bar,
    DayValue,
    daily_bars,
    horizontal_bars,
    stacked_bar,
)
from backoffice.dashboard import Dashboard, dashboard_get, money_display, period_parse
from backoffice.plugins import plugins_loaded
from kernel.errors import InvalidInputError


def _require(request: HttpRequest, permission: str) -> None:
    if not request.user.has_perm(permission):
        raise PermissionDenied


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def dashboard_charts(board: Dashboard) -> dict:
    """The SVG charts of a dashboard: net revenue per day for each currency, and the rest."""
    revenue = []
    for total in board.revenue:
        days = [d for d in board.revenue_days if d.currency == total.currency]
        peak = max((d.gross for d in days), default=0)
        revenue.append(
            {
                "currency": total.currency.upper(),
                "total": total,
                "net_display": money_display(total.net, total.currency),
                "gross_display": money_display(total.gross, total.currency),
                "refunded_display": money_display(total.refunded, total.currency),
                "svg": daily_bars(
                    f"Revenue per day, {total.currency.upper()}: paid above, refunded below",
                    [
                        DayValue(
                            d.day,
                            d.gross,
                            d.refunded,
                            f"{d.day}: {money_display(d.net, d.currency)} net "
                            f"({money_display(d.gross, d.currency)} paid, "
                            f"{money_display(d.refunded, d.currency)} refunded)",
                        )
                        for d in days
                    ],
                    top_label=f"paid, busiest day {money_display(peak, total.currency)}; "
                    "refunds in red below the line",
                ),
            }
        )
    p = board.payments
    payments = stacked_bar(
        "Orders by outcome",
        [
            Bar("paid", p.succeeded, str(p.succeeded), GREEN),
            Bar("failed", p.failed, str(p.failed), RED),
            Bar("canceled", p.canceled, str(p.canceled), GREY),
            Bar("open", p.open, str(p.open), AMBER),
        ],
    )
    c = board.credits
    credits = horizontal_bars(
        "Credits",
        [
            Bar("issued", c.issued, f"{c.issued:,}", GREEN),
            Bar("spent", c.spent, f"{c.spent:,}", BLUE),
            Bar("reversed", c.reversed, f"{c.reversed:,}", RED),
            Bar("expired", c.expired, f"{c.expired:,}", RED),
            Bar("outstanding", c.outstanding, f"{c.outstanding:,}", GREY),
        ],
    )
    w = board.webhooks
    lag = horizontal_bars(
        "Webhook lag",
        [
            Bar("p50", w.lag_p50_seconds or 0, _seconds(w.lag_p50_seconds), BLUE),
            Bar("p95", w.lag_p95_seconds or 0, _seconds(w.lag_p95_seconds), AMBER),
        ],
    )
    return {"revenue": revenue, "payments": payments, "credits": credits, "lag": lag}


def dashboard_page(request: HttpRequest) -> TemplateResponse:
    _require(request, "platform_core.view_dashboard")
    today = timezone.now().date()
    try:
        period = period_parse(
            start=request.GET.get("start"), end=request.GET.get("end"), today=today
        )
    except InvalidInputError as exc:
        messages.error(request, exc.message)
        period = period_parse(start=None, end=None, today=today)
    board = dashboard_get(period=period)
    context = {
        **admin.site.each_context(request),
        "title": "Financial dashboard",
        "board": board,
        "charts": dashboard_charts(board),
        "success_rate": _percent(board.payments.success_rate),
        "failure_rate": _percent(board.payments.failure_rate),
        "lag_p50": _seconds(board.webhooks.lag_p50_seconds),
        "lag_p95": _seconds(board.webhooks.lag_p95_seconds),
        "open_disputes": sum(d.open for d in board.disputes),
    }
    return TemplateResponse(request, "ops/dashboard.html", context)


def plugins_page(request: HttpRequest) -> TemplateResponse:
    _require(request, "platform_core.view_plugins")
    context = {
        **admin.site.each_context(request),
        "title": "Plugins",
        "plugins": plugins_loaded(),
    }
    return TemplateResponse(request, "ops/plugins.html", context)
