"""Start-up check: every configured rate parses, so a typo fails at boot, not at a login."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register

from platform_core.ratelimit.services import RateLimitConfigError, rate_parse


@register()
def rate_limits_check(app_configs, **kwargs) -> list[Error]:
    errors = []
    for scope, value in settings.TOLLGATE.get("RATE_LIMITS", {}).items():
        try:
            rate_parse(value)
        except RateLimitConfigError as exc:
            errors.append(Error(f"TOLLGATE['RATE_LIMITS'][{scope!r}]: {exc}", id="tollgate.E101"))
    return errors
