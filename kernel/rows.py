"""Model instances from the rows of hand-written SQL, and the signals `save()` sends.

The hottest statements of the money path are written out as SQL compiled once,
because the ORM spends longer compiling them on every call than PostgreSQL
spends running them. The rule: their rows become instances only through
`instance_from_row`, which applies the converters the ORM would, and their
writes are announced through `saving` and `saved`, so signal listeners (the
audit trail among them) see what `save()` would have shown them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, TypeVar

from django.db import connections
from django.db.models import Model
from django.db.models.signals import post_save, pre_save

M = TypeVar("M", bound=Model)


@functools.cache
def _converters(model: type[Model], attnames: tuple[str, ...], alias: str) -> list[tuple]:
    """Per column: the backend's and the field's converters, and the column they expect."""
    connection = connections[alias]
    by_attname = {f.attname: f for f in model._meta.concrete_fields}
    found = []
    for name in attnames:
        field = by_attname[name]
        col = field.get_col(model._meta.db_table)
        converters = (*connection.ops.get_db_converters(col), *field.get_db_converters(connection))
        found.append((converters, col))
    return found


def instance_from_row(
    model: type[M], values: Sequence[Any], *, alias: str, attnames: Sequence[str] | None = None
) -> M:
    """An instance of `model` from raw column values, as a queryset would build it.

    `attnames` names the columns in order; by default all concrete fields in
    `model._meta` order (what `SELECT <every column>` returns).
    """
    names = tuple(attnames or (f.attname for f in model._meta.concrete_fields))
    connection = connections[alias]
    converted = []
    for value, (converters, col) in zip(values, _converters(model, names, alias), strict=True):
        for convert in converters:
            value = convert(value, col, connection)
        converted.append(value)
    return model.from_db(alias, list(names), converted)


def saving(instance: Model, *, using: str, update_fields: frozenset[str] | None = None) -> None:
    """`pre_save`, as `save()` sends it."""
    pre_save.send(
        sender=type(instance),
        instance=instance,
        raw=False,
        using=using,
        update_fields=update_fields,
    )


def saved(
    instance: Model, *, using: str, created: bool, update_fields: frozenset[str] | None = None
) -> None:
    """`post_save`, as `save()` sends it."""
    post_save.send(
        sender=type(instance),
        instance=instance,
        created=created,
        update_fields=update_fields,
        raw=False,
        using=using,
    )
