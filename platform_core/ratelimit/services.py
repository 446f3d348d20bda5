"""Count a client's requests per fixed window and refuse past the configured rate.

Windows are fixed (aligned to the epoch), so a client may get up to twice its
rate across one window boundary; that bounds a password guesser to 20 tries a
minute at the default 10/min, and costs one row per client and window instead
of one row per request.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest

from kernel.errors import DomainError, ErrorCode
from platform_core.ratelimit import sql

_PERIODS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*")
_OFF = {"", "off", "none", "0"}


class RateLimitConfigError(ValueError):
    pass


class RateLimitedError(DomainError):
    code = ErrorCode.RATE_LIMITED
    status = 429

    def __init__(self, message: str, *, retry_after: int, **extra) -> None:
        super().__init__(message, retry_after=retry_after, **extra)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Rate:
    limit: int
    period: int  # seconds


def rate_parse(value: str | None) -> Rate | None:
    """`"10/min"`, `"30/minute"`, `"100/10m"`, `"5/s"`; None for `"off"` (no limit)."""
    text = (value or "").strip().lower()
    if text in _OFF:
        return None
    match = _RATE.fullmatch(text)
    if not match or match.group(3) not in _PERIODS:
        raise RateLimitConfigError(
            f"{value!r} is not a rate such as '10/min', '100/10m', '5/s' or 'off'."
        )
    limit = int(match.group(1))
    period = int(match.group(2) or 1) * _PERIODS[match.group(3)]
    if limit < 1 or period < 1:
        raise RateLimitConfigError(f"{value!r}: the count and the period must be positive.")
    return Rate(limit=limit, period=period)


def client_ip(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or the one the trusted proxies in front saw.

    With `TOLLGATE["TRUSTED_PROXIES"] = n`, the n-th address from the right of
    X-Forwarded-For is the client (each trusted proxy appends the address it saw);
    anything left of it was written by the client and is not believed.
    """
    proxies = settings.TOLLGATE.get("TRUSTED_PROXIES", 0)
    if proxies:
        forwarded = [
            part.strip()
            for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
            if part.strip()
        ]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def rate_limit_hit(*, scope: str, identity: str) -> None:
    """Count one request of `identity` for `scope`; raise `RateLimitedError` past the rate.

    The rate is `TOLLGATE["RATE_LIMITS"][scope]`, read on every call so that a
    change of settings (or a test's) takes effect at once. Refused requests are
    counted too: they are requests.
    """
    rate = rate_parse(settings.TOLLGATE.get("RATE_LIMITS", {}).get(scope))
    if rate is None:
        return
    now = time.time()
    window_start = int(now) // rate.period * rate.period
    expires_at = window_start + rate.period
    key = hashlib.sha256(f"{scope}\n{identity}".encode()).hexdigest()
    if sql.window_hit(key=key, window_start=window_start, expires_at=expires_at) > rate.limit:
        retry_after = max(1, math.ceil(expires_at - now))
        raise RateLimitedError(
            f"Too many requests; try again in {retry_after} seconds.",
            retry_after=retry_after,
            limit=rate.limit,
            period=rate.period,
        )
