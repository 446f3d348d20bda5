"""The platform's own records: API tokens, the audit log, and staff-only operations.

The rule: an `AuditEntry` is written once and never changed or removed. Its
`save` refuses an update, its `delete` and its queryset's `update`/`delete`
refuse outright, and the database refuses both through a trigger (migration
0003), so even a raw query cannot rewrite what staff did.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    # A token is 32 random bytes, so a fast digest is enough: there is nothing
    # to brute-force that a slow password hash would protect.
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(
        max_length=12, help_text="The first characters, to tell tokens apart."
    )
    name = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class AuditLogImmutableError(Exception):
    """Something tried to change or remove an audit entry."""


class AuditEntryQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AuditLogImmutableError("The audit log is append-only.")

    def delete(self):
        raise AuditLogImmutableError("The audit log is append-only.")


class AuditEntry(models.Model):
    """One staff action: who did what to which object, when and why."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # PROTECT: staff accounts are anonymised, never deleted, while they have entries.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Empty for the system or a command run without a user.",
    )
    # Dotted and stable: `refund.create`, `credits.grant`, `event.replay`,
    # `user.erase`, `admin.change`, …
    action = models.CharField(max_length=60, db_index=True)
    object_type = models.CharField(max_length=100, help_text="app_label.model")
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    reason = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        default_permissions = ("view",)
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object_idx")]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type}:{self.object_id}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise AuditLogImmutableError("The audit log is append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditLogImmutableError("The audit log is append-only.")


class StaffOperation(models.Model):
    """No table: the holder of permissions for staff pages that are not about one model."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_dashboard", "Can view the financial dashboard"),
            ("view_plugins", "Can view the loaded plugins"),
            ("erase_user", "Can erase a user's personal data"),
        ]

    def __str__(self) -> str:
        return "staff operation"
