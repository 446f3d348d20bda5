"""The error body every API operation declares for its failures."""

from typing import Any

from ninja import Schema


class ErrorOut(Schema):
    code: str
    message: str
    extra: dict[str, Any] = {}
