"""The operations API: the staff dashboard and a user's own data export. Thin: parse,
call one selector, render."""

from __future__ import annotations

from datetime import date

from django.http import HttpRequest
from django.utils import timezone
from ninja import Router

from backoffice.dashboard import Dashboard, dashboard_get, money_display, period_parse
from backoffice.data_rights import user_data_export
from backoffice.schemas import DashboardOut, UserExportOut
from kernel.errors import PermissionDeniedError
from kernel.schemas import ErrorOut
from platform_core.auth import staff_auth, user_auth

router = Router(tags=["operations"])


def _dashboard_out(board: Dashboard) -> dict:
    return {
        "period": {
            "start": board.period.start,
            "end": board.period.end,
            "days": board.period.days,
        },
        "revenue": [
            {
                "currency": r.currency,
                "orders": r.orders,
                "gross": r.gross,
                "refunded": r.refunded,
                "net": r.net,
                "gross_display": money_display(r.gross, r.currency),
                "refunded_display": money_display(r.refunded, r.currency),
                "net_display": money_display(r.net, r.currency),
            }
            for r in board.revenue
        ],
        "revenue_days": [
            {
                "date": d.day,
                "currency": d.currency,
                "gross": d.gross,
                "refunded": d.refunded,
                "net": d.net,
            }
            for d in board.revenue_days
        ],
        "payments": {
            "orders": board.payments.orders,
            "succeeded": board.payments.succeeded,
            "failed": board.payments.failed,
            "canceled": board.payments.canceled,
            "open": board.payments.open,
            "success_rate": board.payments.success_rate,
            "failure_rate": board.payments.failure_rate,
        },
        "refunds": [
            {"currency": r.currency, "count": r.count, "amount": r.amount, "display": r.display}
            for r in board.refunds
        ],
        "credits": vars(board.credits),
        "subscriptions": {
            "active": board.subscriptions.active,
            "unpriced": board.subscriptions.unpriced,
            "mrr": [
                {"currency": m.currency, "amount": m.amount, "display": m.display}
                for m in board.subscriptions.mrr
            ],
        },
        "webhooks": vars(board.webhooks),
        "disputes": [
            {**vars(d), "open_display": d.open_display, "lost_display": d.lost_display}
            for d in board.disputes
        ],
    }


@router.get(
    "/admin/dashboard/",
    auth=staff_auth,
    response={200: DashboardOut, 401: ErrorOut, 403: ErrorOut, 422: ErrorOut},
)
def admin_dashboard(request: HttpRequest, start: date | None = None, end: date | None = None):
    """Staff with the dashboard permission: the period's figures (default: the last 30 days)."""
    if not request.user.has_perm("platform_core.view_dashboard"):
        raise PermissionDeniedError("The dashboard needs the finance role.")
    period = period_parse(start=start, end=end, today=timezone.now().date())
    return _dashboard_out(dashboard_get(period=period))


@router.get("/me/export/", auth=user_auth, response={200: UserExportOut, 401: ErrorOut})
def me_export(request: HttpRequest):
    """Everything the platform holds about me, as JSON."""
    return user_data_export(user_id=request.user.pk)
