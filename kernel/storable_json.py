"""JSON from outside (a client's body, a Stripe event), read once and checked once for PostgreSQL.

Python's JSON reader accepts what PostgreSQL's text and jsonb refuse: U+0000,
lone UTF-16 surrogates (written as escapes such as `\\ud800`, or as raw bytes
that Python's reader lets through), and the numbers NaN and ±Infinity (written
as such, or as a float too large to hold, `1e999`). Nesting deeper than
`MAX_DEPTH` is refused too: no real request or event comes near it, and
serialising it again for the database runs out of Python's stack.

The rule: every JSON body that may be stored is read with `storable_json_loads`,
which refuses these with `UnstorableJsonError` (422) before anything is written,
so nothing downstream checks again. The walk over the parsed value runs only
when the raw bytes say one of these could be there (an escape, a byte that
may start a surrogate, more brackets than `MAX_DEPTH`, another encoding than
UTF-8), so an ordinary body costs a few byte scans.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any, NoReturn

from pydantic import AfterValidator

from kernel.errors import InvalidInputError

MAX_DEPTH = 64


class UnstorableJsonError(InvalidInputError):
    """JSON that PostgreSQL cannot store, or nested past `MAX_DEPTH`."""


def _non_finite(name: str) -> NoReturn:
    raise UnstorableJsonError(
        f"JSON numbers must be finite; {name} is not a number that can be stored.", value=name
    )


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        _non_finite(text)
    return value


def _text_check(text: str, path: list[Any]) -> None:
    if "\x00" in text:
        raise UnstorableJsonError("Text may not contain the character U+0000.", path=_dotted(path))
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise UnstorableJsonError(
                "Text may not contain a lone UTF-16 surrogate (such as \\ud800): it is "
                "not a character.",
                path=_dotted(path),
            ) from None


def _dotted(path: list[Any]) -> str:
    return ".".join(str(part) for part in path)


def storable_json_check(value: Any) -> None:
    """Refuse, with `UnstorableJsonError`, a parsed JSON value PostgreSQL cannot store."""
    # Iterative, so a deep value fails on the depth rule and not on Python's stack.
    stack: list[tuple[Any, list[Any]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            _text_check(item, path)
        elif isinstance(item, dict):
            if len(path) >= MAX_DEPTH:
                raise UnstorableJsonError(
                    f"JSON may nest at most {MAX_DEPTH} levels deep.", limit=MAX_DEPTH
                )
            for key, child in item.items():
                _text_check(key, [*path, key])
                stack.append((child, [*path, key]))
        elif isinstance(item, list):
            if len(path) >= MAX_DEPTH:
                raise UnstorableJsonError(
                    f"JSON may nest at most {MAX_DEPTH} levels deep.", limit=MAX_DEPTH
                )
            stack.extend((child, [*path, i]) for i, child in enumerate(item))
        elif (isinstance(item, float) and not math.isfinite(item)) or (
            isinstance(item, Decimal) and not item.is_finite()
        ):
            _non_finite(str(item))


def _decimals_as_floats(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _finite_float(str(value))
    if isinstance(value, dict):
        return {key: _decimals_as_floats(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decimals_as_floats(item) for item in value]
    return value


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    try:
        return _decimals_as_floats(value)
    except UnstorableJsonError as exc:
        raise ValueError(exc.message) from None


# A free-form JSON object from a client, to be stored as jsonb: the API reads every
# number with a fraction as an exact `Decimal` (for amounts), which JSON cannot
# write back; here such numbers are what any JSON reader makes of them, floats.
JsonObject = Annotated[dict[str, Any], AfterValidator(_json_object)]


def _may_hold_unstorable(raw: bytes) -> bool:
    return (
        # U+0000 and lone surrogates can only be written as escapes in UTF-8 (a search
        # for one byte is the fast one)…
        (b"\\" in raw and b"\\u" in raw)
        # …or as the bytes of a surrogate, which Python's reader lets through
        or b"\xed" in raw
        or json.detect_encoding(raw) != "utf-8"
        or raw.count(b"{") + raw.count(b"[") > MAX_DEPTH
    )


def storable_json_loads(raw: bytes, *, parse_float: Callable[[str], Any] | None = None) -> Any:
    """Parse `raw` as JSON PostgreSQL can store.

    :param parse_float: as `json.loads`'s (`Decimal` keeps amounts exact); by
        default a float, refused when it does not fit one.
    :raises ValueError: not JSON.
    :raises UnstorableJsonError: JSON, but not storable (see the module docstring).
    """
    try:
        value = json.loads(
            raw, parse_float=parse_float or _finite_float, parse_constant=_non_finite
        )
    except RecursionError:
        raise UnstorableJsonError(
            f"JSON may nest at most {MAX_DEPTH} levels deep.", limit=MAX_DEPTH
        ) from None
    if _may_hold_unstorable(raw):
        storable_json_check(value)
    return value
