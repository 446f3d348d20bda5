"""The audit log of staff actions: who did what to which object, when and why.

The rule: entries are only ever appended, through `audit_record`, inside the
transaction of the action they describe, so an action that rolls back leaves
no entry and an action that commits always has one.

Where entries come from:
- refunds started by staff and credits granted by staff, through the API or the
  admin, from the rows those services create (`post_save` receivers below: the
  apps cannot import the back office, so the back office listens);
- every change the admin logs (add, change, delete, and what an admin action
  logs, such as a replay), from the admin site's `ModelAdmin.log_*` methods;
- commands and services of the back office (erasure, the replay command) directly.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.db import models
from django.db.models.signals import post_save
from django.http import HttpRequest

from platform_core.models import AuditEntry

# An admin action's log entries are named after what the action does.
_ADMIN_ACTION_NAMES = {
    ("billing.stripeevent", "replay"): "event.replay",
    ("platform_core.apitoken", "revoke"): "token.revoke",
    ("bookings.booking", "cancel_bookings"): "booking.cancel",
}
_FLAG_NAMES = {ADDITION: "admin.add", CHANGE: "admin.change", DELETION: "admin.delete"}


def audit_record(
    *,
    actor_id: int | None,
    action: str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str | int = "",
    object_repr: str = "",
    reason: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry. Give `obj`, or `object_type` (`app_label.model`) and `object_id`."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or obj.pk
        object_repr = object_repr or str(obj)
    return AuditEntry.objects.create(
        actor_id=actor_id,
        action=action[:60],
        object_type=object_type[:100],
        object_id=str(object_id)[:64],
        object_repr=object_repr[:200],
        reason=reason,
        details=details or {},
    )


# --- the admin --------------------------------------------------------------------


def _from_log_entries(request: HttpRequest, entries: list[LogEntry]) -> None:
    admin_action = request.POST.get("action", "") if request.method == "POST" else ""
    for entry in entries:
        object_type = (
            f"{entry.content_type.app_label}.{entry.content_type.model}"
            if entry.content_type_id
            else ""
        )
        action = _ADMIN_ACTION_NAMES.get((object_type, admin_action)) or _FLAG_NAMES.get(
            entry.action_flag, "admin.change"
        )
        audit_record(
            actor_id=entry.user_id,
            action=action,
            object_type=object_type,
            object_id=entry.object_id or "",
            object_repr=entry.object_repr,
            reason=entry.get_change_message(),
            details={"admin_action": admin_action} if admin_action else {},
        )


class AuditedAdminMixin:
    """Mixed into every ModelAdmin by the admin site: what the admin logs is audited too."""

    def log_addition(self, request: HttpRequest, obj, message):
        entry = super().log_addition(request, obj, message)
        _from_log_entries(request, [entry])
        return entry

    def log_change(self, request: HttpRequest, obj, message):
        entry = super().log_change(request, obj, message)
        _from_log_entries(request, [entry])
        return entry

    def log_deletions(self, request: HttpRequest, queryset):
        # Django bulk-creates these (no signal), so they are audited here.
        entries = super().log_deletions(request, queryset)
        if isinstance(entries, LogEntry):
            entries = [entries]
        _from_log_entries(request, list(entries))
        return entries


# --- the apps' own records of staff actions ------------------------------------------


def _refund_created(sender, instance, created: bool, **kwargs) -> None:
    if not created or instance.source != "staff" or instance.initiated_by_id is None:
        return
    audit_record(
        actor_id=instance.initiated_by_id,
        action="refund.create",
        obj=instance,
        reason=instance.reason,
        details={
            "order_id": instance.order_id,
            "amount": instance.amount,
            "currency": instance.currency,
        },
    )


def _ledger_entry_created(sender, instance, created: bool, **kwargs) -> None:
    if not created or instance.created_by_id is None:
        return
    account = instance.account
    audit_record(
        actor_id=instance.created_by_id,
        action="credits.grant" if instance.amount > 0 else "credits.adjust",
        obj=instance,
        reason=instance.memo,
        details={
            "user_id": account.user_id,
            "amount": instance.amount,
            "reference": instance.reference,
            "balance_after": instance.balance_after,
        },
    )


def audit_receivers_connect() -> None:
    """Listen for the rows that record staff actions in the apps (called once, at start-up)."""
    from billing.models import Refund
    from credits.models import CreditTransaction

    post_save.connect(_refund_created, sender=Refund, dispatch_uid="audit-refund")
    post_save.connect(
        _ledger_entry_created, sender=CreditTransaction, dispatch_uid="audit-ledger-entry"
    )
