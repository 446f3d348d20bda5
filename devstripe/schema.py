"""What Stripe accepts at the pinned API version, read from stripe-python itself.

stripe-python ships, for its pinned API version, a service method per endpoint
(`stripe/**/_*_service.py`: the HTTP method, the path template and the name of its
parameter type) and the parameter types themselves (`stripe/params/**`, TypedDicts
generated from Stripe's OpenAPI description). This module joins the two: `params_for`
finds the parameter type of a request's method and path, and `violations` checks a
request's parameters, decoded from the form or query string as Stripe decodes them
(`a[b][0]=…`), against that type: unknown names, missing required ones, wrong types
and values outside an enum.

The rule: the judge is stripe-python's types, never localstripe. A parameter the
pinned version does not have is a violation even when localstripe takes it.
"""

from __future__ import annotations

import ast
import functools
import importlib
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import typing_extensions

# Keys a Stripe.js stand-in adds to its browser-side requests (publishable-key auth).
CLIENT_SIDE_KEYS = frozenset({"key", "payment_user_agent", "referrer", "client_secret"})


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    module: str
    params: str

    @property
    def placeholders(self) -> int:
        return self.template.count("{")


def _params_name(annotation: ast.expr | None) -> str | None:
    """`"FooParams"` or `Optional["FooParams"]` → `FooParams`."""
    if annotation is None:
        return None
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        return annotation.value
    if isinstance(annotation, ast.Subscript):
        return _params_name(annotation.slice)
    return None


def _request_target(call: ast.Call) -> tuple[str, str] | None:
    """The (method, path template) of a `self._request("post", "/v1/…".format(…))` call."""
    if len(call.args) < 2:
        return None
    method, path = call.args[0], call.args[1]
    if isinstance(path, ast.Call) and isinstance(path.func, ast.Attribute):
        path = path.func.value  # "/v1/…/{id}".format(...)
    if not (
        isinstance(method, ast.Constant)
        and isinstance(path, ast.Constant)
        and isinstance(path.value, str)
    ):
        return None
    return str(method.value).upper(), path.value


def _routes_of(source: Path) -> Iterable[Route]:
    tree = ast.parse(source.read_text(encoding="utf-8"))
    imports = {
        alias.asname or alias.name: node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and ".params" in node.module
        for alias in node.names
    }
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef):  # the async twins say the same
            continue
        args = {a.arg: a for a in node.args.args + node.args.kwonlyargs}
        name = _params_name(args["params"].annotation) if "params" in args else None
        if name is None or name not in imports:
            continue
        for call in ast.walk(node):
            if (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr == "_request"
                and (target := _request_target(call))
                and target[1].startswith("/v1/")
            ):
                method, template = target
                regex = re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(template))
                yield Route(method, template, re.compile(f"^{regex}$"), imports[name], name)


@functools.cache
def routes() -> tuple[Route, ...]:
    """Every v1 endpoint stripe-python knows, literal paths before templated ones."""
    import stripe

    root = Path(stripe.__file__).parent
    found = {
        (r.method, r.template): r
        for source in sorted(root.rglob("_*_service.py"))
        if "params" not in source.parts
        for r in _routes_of(source)
    }
    return tuple(sorted(found.values(), key=lambda r: (r.placeholders, r.template)))


def route_for(method: str, path: str) -> Route | None:
    for route in routes():
        if route.method == method and route.pattern.match(path):
            return route
    return None


@functools.cache
def params_type(route: Route) -> type:
    return getattr(importlib.import_module(route.module), route.params)


def params_for(method: str, path: str) -> type | None:
    """The pinned version's parameter type for this request, or None (no such endpoint)."""
    route = route_for(method, path)
    return params_type(route) if route else None


@functools.cache
def _request_option_keys() -> frozenset[str]:
    from stripe._request_options import RequestOptions

    return frozenset(RequestOptions.__annotations__)


@functools.cache
def _hints(td: type) -> dict[str, Any]:
    # The request options every parameter type inherits name types stripe-python
    # imports for type checkers only.
    return typing.get_type_hints(td, localns={"StripeContext": object, "Mapping": Mapping})


def _is_typeddict(tp: Any) -> bool:
    return typing_extensions.is_typeddict(tp)


# --- decoding a form or query string as Stripe does -------------------------------------

Tree = str | dict[str, "Tree"] | list["Tree"]


def decode(pairs: Iterable[tuple[str, str]]) -> dict[str, Tree]:
    """`[("a[b][0]", "x"), ("c[]", "y")]` → `{"a": {"b": {"0": "x"}}, "c": {"0": "y"}}`.

    Indexed keys stay dicts with digit keys here; the checker reads them as a list
    where the type says list.
    """
    out: dict[str, Any] = {}
    for key, value in pairs:
        head, _, rest = key.partition("[")
        parts = [head, *re.findall(r"\[([^\[\]]*)\]", "[" + rest)] if rest else [head]
        node = out
        for i, part in enumerate(parts):
            if part == "":  # `c[]`: the next index
                part = str(len(node))
            if i == len(parts) - 1:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = node[part] = {}
                node = child
    return out


# --- checking --------------------------------------------------------------------------


def _as_list(value: Tree) -> list[Tree] | None:
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and all(k.isdigit() for k in value):
        return [value[k] for k in sorted(value, key=int)]
    return None


def _unwrap(tp: Any) -> Any:
    origin = typing_extensions.get_origin(tp)
    if origin in (typing_extensions.NotRequired, typing_extensions.Required):
        return _unwrap(typing_extensions.get_args(tp)[0])
    return tp


def _describe(tp: Any) -> str:
    tp = _unwrap(tp)
    if _is_typeddict(tp):
        return "an object"
    origin = typing_extensions.get_origin(tp)
    if origin is typing_extensions.Literal or origin is typing.Literal:
        return "one of " + ", ".join(repr(v) for v in typing_extensions.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing_extensions.get_args(tp))
    if origin in (list, typing.List):  # noqa: UP006 - what stripe-python writes
        return "a list"
    if origin in (dict, typing.Dict) or _untyped_object(origin):  # noqa: UP006
        return "a hash"
    return getattr(tp, "__name__", str(tp))


def check(value: Tree, tp: Any, name: str) -> list[str]:
    """Why `value` (decoded from a form) is not a `tp`; empty when it is."""
    tp = _unwrap(tp)
    if tp is Any or tp is object:
        return []
    if _is_typeddict(tp):
        if not isinstance(value, dict):
            return [f"{name}: expected an object, got {value!r}"]
        return check_object(value, tp, prefix=name)
    origin = typing_extensions.get_origin(tp)
    args = typing_extensions.get_args(tp)
    if origin is typing_extensions.Literal or origin is typing.Literal:
        allowed = {_form_scalar(a) for a in args}
        if isinstance(value, str) and value in allowed:
            return []
        return [f"{name}: invalid value {value!r}, expected {_describe(tp)}"]
    if origin in (Union, types.UnionType):
        args = _closed(args)
        failures = [check(value, arm, name) for arm in args]
        if any(not f for f in failures):
            return []
        structured = [
            f
            for arm, f in zip(args, failures, strict=True)
            if not isinstance(value, str) and _structured(arm)
        ]
        if len(structured) == 1:
            return structured[0]
        expected = " or ".join(_describe(arm) for arm in args)
        return [f"{name}: invalid value {value!r}, expected {expected}"]
    if origin in (list, typing.List):  # noqa: UP006
        items = _as_list(value)
        if items is None:
            return [f"{name}: expected a list, got {value!r}"]
        return [e for i, item in enumerate(items) for e in check(item, args[0], f"{name}[{i}]")]
    if origin in (dict, typing.Dict) or _untyped_object(origin):  # noqa: UP006
        if _untyped_object(origin):  # a hash of `args[0]` values, as `metadata`
            args = (str, args[0])
        if not isinstance(value, dict):
            return [f"{name}: expected a hash, got {value!r}"]
        return [e for k, v in value.items() for e in check(v, args[1], f"{name}[{k}]")]
    if tp is str:
        return [] if isinstance(value, str) else [f"{name}: expected a string, got {value!r}"]
    if tp is bool:
        ok = value in ("true", "false")
        return [] if ok else [f"{name}: expected a boolean, got {value!r}"]
    if tp is int:
        ok = isinstance(value, str) and re.fullmatch(r"-?\d+", value) is not None
        return [] if ok else [f"{name}: expected an integer, got {value!r}"]
    if tp is float:
        ok = isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value) is not None
        return [] if ok else [f"{name}: expected a number, got {value!r}"]
    return []  # a type the generated code does not use for parameters: not judged


def _closed(arms: tuple[Any, ...]) -> tuple[Any, ...]:
    """An enum as Stripe's API reads it: stripe-python types every enum
    `Literal[…]|str` so that a value added later still type-checks, but Stripe
    refuses a value outside the enum. The `str` arm beside `Literal['']` alone
    (empty to unset, or any string) stays."""
    literals = [
        v
        for arm in arms
        if typing_extensions.get_origin(arm) in (typing_extensions.Literal, typing.Literal)
        for v in typing_extensions.get_args(arm)
    ]
    if str in arms and any(v != "" for v in literals):
        return tuple(arm for arm in arms if arm is not str)
    return arms


def _untyped_object(origin: Any) -> bool:
    from stripe._stripe_object import UntypedStripeObject

    return origin is UntypedStripeObject


def _structured(tp: Any) -> bool:
    tp = _unwrap(tp)
    origin = typing_extensions.get_origin(tp)
    structured = (list, dict, typing.List, typing.Dict)  # noqa: UP006
    return _is_typeddict(tp) or origin in structured or _untyped_object(origin)


def _form_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def check_object(value: dict[str, Tree], td: type, *, prefix: str = "") -> list[str]:
    hints = _hints(td)
    top = not prefix
    known = set(hints) - (_request_option_keys() if top else set())
    errors = []
    for key, item in value.items():
        name = f"{prefix}[{key}]" if prefix else key
        if key not in known:
            errors.append(f"{name}: unknown parameter")
            continue
        errors.extend(check(item, hints[key], name))
    required = getattr(td, "__required_keys__", frozenset()) & known
    errors.extend(
        f"{f'{prefix}[{key}]' if prefix else key}: missing required parameter"
        for key in sorted(required - set(value))
    )
    return errors


def violations(method: str, path: str, params: dict[str, Tree]) -> list[str]:
    """Each way this request breaks the pinned version's parameters; [] when it is valid.

    A `/v1/` path stripe-python has no endpoint for is one violation.
    """
    td = params_for(method, path)
    if td is None:
        return [f"{method} {path}: no such endpoint at this API version"]
    known = _hints(td)
    sent = {k: v for k, v in params.items() if k in known or k not in CLIENT_SIDE_KEYS}
    return check_object(sent, td)
