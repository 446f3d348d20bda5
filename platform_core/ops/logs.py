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
import uuid
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


def scrub(text: str) -> str:
    """The text with secrets and card numbers replaced."""
    return _DIGIT_RUN.sub(_card_masked, _SECRETS.sub("[redacted]", text))


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
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        # The request's context, then the ids the money path bound (kernel.log_context).
        context = {**(_context.get() or {}), **log_ids_bound()}
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is None:
                value = context.get(key)
            if value is None and key == "user_id":
                value = _request_user_id(context.get("request"))
            if value is not None:
                line[key] = value if isinstance(value, int | bool) else scrub(str(value))
        if context.get("path"):
            line["http"] = {"method": context.get("method"), "path": context["path"]}
        if record.exc_info:
            line["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(line, default=str)


def forwarded_client(remote_addr: str, forwarded_for: str, proxies: int) -> str:
    """The client's address when `proxies` trusted proxies each appended to X-Forwarded-For."""
    if proxies:
        forwarded = [part.strip() for part in forwarded_for.split(",") if part.strip()]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return remote_addr or "unknown"


class AccessJsonFormatter(logging.Formatter):
    """gunicorn's access line (its record's args are the request's atoms) as JSON."""

    def format(self, record: logging.LogRecord) -> str:
        atoms = record.args
        if not hasattr(atoms, "get"):
            return JsonFormatter().format(record)
        proxies = int(os.environ.get("TOLLGATE_TRUSTED_PROXIES") or 0)
        request_id = atoms.get("{x-request-id}o")
        method, path, status = atoms.get("m"), atoms.get("U"), atoms.get("s")
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": f"{method} {path} {status}",
            "request_id": request_id if request_id and request_id != "-" else None,
            "client_ip": forwarded_client(
                str(atoms.get("h") or ""), str(atoms.get("{x-forwarded-for}i") or ""), proxies
            ),
            "http": {
                "method": method,
                "path": path,
                "status": int(status) if str(status).isdigit() else status,
                "duration_ms": round(float(atoms.get("L") or 0) * 1000, 1),
                "bytes": atoms.get("B"),
                "user_agent": scrub(str(atoms.get("a") or "")),
            },
        }
        return json.dumps({k: v for k, v in line.items() if v is not None}, default=str)


_REQUEST_ID = re.compile(r"[A-Za-z0-9\-]{8,64}")


class LogContextMiddleware:
    """Give every request an id (the client's `X-Request-ID` if sane) for its log lines."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # request.META, not request.headers: the latter copies every header first.
        given = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
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
