"""One counter per rate-limited key and fixed time window."""

from __future__ import annotations

from django.db import models


class RateLimitWindow(models.Model):
    # A SHA-256 of the scope and the client's identity (IP, username or user id):
    # the table never holds who asked in clear.
    key = models.CharField(max_length=64)
    # The window, as Unix seconds: [window_start, expires_at).
    window_start = models.BigIntegerField()
    expires_at = models.BigIntegerField(db_index=True)
    hits = models.PositiveIntegerField(default=1)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key", "window_start"], name="rate_limit_window_unique")
        ]

    def __str__(self) -> str:
        return f"{self.key[:12]}… {self.hits} hits from {self.window_start}"
