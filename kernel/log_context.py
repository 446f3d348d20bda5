"""Ids that tie log lines to money, bound for the duration of a block.

The rule: only ids go in (an event, an order, a user, a refund), never amounts,
secrets or card data. The platform's log formatter copies them onto every line
written inside the block, so a worker's lines name the event and order they are
about without each call passing them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_ids: ContextVar[dict[str, Any] | None] = ContextVar("tollgate_log_ids", default=None)


@contextmanager
def log_ids(**ids: Any) -> Iterator[None]:
    """Bind these ids (None values are skipped) on top of any already bound.

    Ids first bound inside the block stay bound in the enclosing block when it
    ends (an event's handler finds the order; the line saying the event was
    processed then names it too). Ids the enclosing block already has are kept.
    """
    outer = _ids.get()
    merged = {**(outer or {}), **{k: v for k, v in ids.items() if v is not None}}
    token = _ids.set(merged)
    try:
        yield
    finally:
        _ids.reset(token)
        if outer is not None:
            for key, value in merged.items():
                outer.setdefault(key, value)


def log_ids_bound() -> dict[str, Any]:
    return _ids.get() or {}
