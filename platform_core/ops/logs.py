"""Structured logs: one JSON object a line, with the ids that tie a line to money.

The rule: a log line never carries a secret or card data. Only the known id
fields below are copied from a record (`extra=`) or from the request's context;
the message and any traceback are scrubbed of API keys, webhook secrets, bearer
tokens, client secrets and anything shaped like a card number.

Loaded by the logging configuration before Django's apps, so it imports no model.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject, empty

from kernel.log_context import log_ids_bound

# Ids a line may carry, from `extra=` or the request context, in this order.
CONTEXT_FIELDS = (
    "request_id",
    "user_id",
    "order_id",
    "event_id",
    "stripe_event_id",
    "event_type",
    "refund_id",
    "payment_intent_id",
    "subscription_id",
)

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "tollgate_log_context", default=None
)

_SECRETS = re.compile(
    r"\b(?:sk|rk)_(?:test|live)_[A-Za-z0-9]+"  # Stripe secret and restricted keys
    r"|\bwhsec_[A-Za-z0-9_]+"  # webhook signing secrets
    r"|\btg_[A-Za-z0-9_\-]{16,}"  # our bearer tokens
    r"|\b(?:pi|seti|cs)_[A-Za-z0-9]+_secret_[A-Za-z0-9]+"  # client secrets
    r"|(?i:bearer)\s+[A-Za-z0-9._\-]+"
)
_DIGIT_RUN = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for n, ch in enumerate(reversed(digits)):
        d = int(ch)
        if n % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_masked(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group(0))
    return "[card]" if 13 <= len(digits) <= 19 and _luhn_ok(digits) else match.group(0)


# Every secret above holds one of these marks (in lower case) and every card number
# 13 digits: a text with neither is returned without running the expressions, which
# cost more than the rest of a line together.
_CARD_MIN_DIGITS = 13
_DIGITS = "0123456789"


def _may_hold_secret(low: str) -> bool:
    return (
        "k_test_" in low
        or "k_live_" in low
        or "whsec_" in low
        or "tg_" in low
        or "_secret_" in low
        or "bearer" in low
    )


def scrub(text: str) -> str:
    """The text with secrets and card numbers replaced."""
    if _may_hold_secret(text.lower()):
        text = _SECRETS.sub("[redacted]", text)
    if sum(map(text.count, _DIGITS)) >= _CARD_MIN_DIGITS:
        text = _DIGIT_RUN.sub(_card_masked, text)
    return text


# The last second formatted, and its text: one tuple, so that a thread reading it
# while another replaces it sees one pair or the other, never a mix.
_second: tuple[int, str] = (-1, "")


def _timestamp(created: float) -> str:
    """`2026-01-31T12:00:00.123+00:00` for a `time.time()` value; the date part is made
    once a second."""
    global _second
    second = int(created)
    cached = _second
    if cached[0] != second:
        cached = _second = (
            second,
            datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        )
    millis = min(int((created - second) * 1_000_000 + 0.5) // 1000, 999)
    return f"{cached[1]}.{millis:03d}+00:00"


# One encoder for every line (`json.dumps` with an argument builds a new one per call).
_ENCODER = json.JSONEncoder(default=str)
_quoted = json.encoder.encode_basestring_ascii


def _request_user_id(request: HttpRequest | None) -> int | None:
    """The request's user id if authentication has already run (never runs it)."""
    if request is None:
        return None
    user = request.__dict__.get("user")
    if isinstance(user, SimpleLazyObject):
        user = user._wrapped
        if user is empty:
            return None
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user.pk


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        # The record's own ids, then those the money path bound (kernel.log_context),
        # then the request's.
        given = record.__dict__
        bound = log_ids_bound()
        request = _context.get() or {}
        for key in CONTEXT_FIELDS:
            value = given.get(key)
            if value is None:
                value = bound.get(key)
                if value is None:
                    value = request.get(key)
                    if value is None and key == "user_id":
                        value = _request_user_id(request.get("request"))
            if value is not None:
                line[key] = value if isinstance(value, int | bool) else scrub(str(value))
        if request.get("path"):
            line["http"] = {"method": request.get("method"), "path": request["path"]}
        if record.exc_info:
            line["exc"] = scrub(self.formatException(record.exc_info))
        return _ENCODER.encode(line)


def forwarded_client(remote_addr: str, forwarded_for: str, proxies: int) -> str:
    """The client's address when `proxies` trusted proxies each appended to X-Forwarded-For."""
    if proxies:
        forwarded = [part.strip() for part in forwarded_for.split(",") if part.strip()]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return remote_addr or "unknown"


def trusted_proxies() -> int:
    """How many proxies in front append to X-Forwarded-For (TOLLGATE_TRUSTED_PROXIES)."""
    return int(os.environ.get("TOLLGATE_TRUSTED_PROXIES") or 0)


def access_line(
    *,
    created: float,
    method: str,
    path: str,
    status: int | str,
    duration_ms: float,
    sent: int | None,
    request_id: str | None,
    client_ip: str,
    user_agent: str,
) -> str:
    """One access line, as `json.dumps` would print it, written out in one f-string."""
    message = _quoted(f"{method} {path} {status}")
    request = f'"request_id": {_quoted(request_id)}, ' if request_id else ""
    status_json = status if isinstance(status, int) else _quoted(status)
    return (
        f'{{"ts": "{_timestamp(created)}", "level": "INFO", "logger": "gunicorn.access", '
        f'"message": {message}, {request}"client_ip": {_quoted(client_ip)}, '
        f'"http": {{"method": {_quoted(method)}, "path": {_quoted(path)}, '
        f'"status": {status_json}, "duration_ms": {round(duration_ms, 1)!r}, '
        f'"bytes": {"null" if sent is None else int(sent)}, '
        f'"user_agent": {_quoted(scrub(user_agent))}}}}}'
    )


class AccessJsonFormatter(logging.Formatter):
    """gunicorn's access line as JSON.

    A line `access_log.AccessLogger` rendered passes as it is; with gunicorn's own
    logger the record's args are the request's atoms, and the line is built from them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trusted_proxies = trusted_proxies()

    def format(self, record: logging.LogRecord) -> str:
        if record.__dict__.get("access_line_rendered"):
            return record.msg
        atoms = record.args
        if not hasattr(atoms, "get"):
            return JsonFormatter().format(record)
        request_id = atoms.get("{x-request-id}o")
        status = str(atoms.get("s"))
        return access_line(
            created=record.created,
            method=str(atoms.get("m")),
            path=str(atoms.get("U")),
            status=int(status) if status.isdigit() else status,
            duration_ms=float(atoms.get("L") or 0) * 1000,
            sent=atoms.get("B") if isinstance(atoms.get("B"), int) else None,
            request_id=request_id if request_id and request_id != "-" else None,
            client_ip=forwarded_client(
                str(atoms.get("h") or ""),
                str(atoms.get("{x-forwarded-for}i") or ""),
                self.trusted_proxies,
            ),
            user_agent=str(atoms.get("a") or ""),
        )


_REQUEST_ID = re.compile(r"[A-Za-z0-9\-]{8,64}")


class LogContextMiddleware:
    """Give every request an id (the client's `X-Request-ID` if sane) for its log lines."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # request.META, not request.headers: the latter copies every header first.
        given = request.META.get("HTTP_X_REQUEST_ID")
        # 32 random hex digits, as uuid4().hex without building a UUID.
        request_id = given if given and _REQUEST_ID.fullmatch(given) else os.urandom(16).hex()
        token = _context.set(
            {
                "request_id": request_id,
                "method": request.method,
                "path": request.path,
                "request": request,
            }
        )
        try:
            response = self.get_response(request)
        finally:
            _context.reset(token)
        response["X-Request-ID"] = request_id
        return response
