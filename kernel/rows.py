"""Model instances from the rows of hand-written SQL.

An app's SQL module (`billing.sql`, `platform_core.sql`, …) reads rows with a
cursor; `instance_from_row` turns them into the instances a queryset would
have built, applying the converters the ORM would (the backend's, then the
field's) and `Model.from_db`. That leans on Django internals, so the rule: only
the apps' SQL modules import this module (an import-linter contract holds it),
and the tests of this module show, against the ORM's own reads, that it still
builds the same instances after a Django upgrade.

`saved` sends `post_save` as `save()` sends it. Every SQL module announces each
row it inserts with it, as `create()` would (the audit trail listens for the
credit ledger's staff entries), and announces nothing it updates or deletes, as
`QuerySet.update()` announces nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, TypeVar

from django.db import connections
from django.db.models import Model
from django.db.models.signals import post_save

M = TypeVar("M", bound=Model)


@functools.cache
def _reading(
    model: type[Model], attnames: tuple[str, ...], alias: str
) -> tuple[list[tuple], tuple[int, ...] | None, list[str]]:
    """How to read columns named `attnames`: per column the backend's and the field's
    converters and the column they expect; the order that puts the values in
    `model._meta` order (None when they are in it); and the names in that order."""
    connection = connections[alias]
    fields = model._meta.concrete_fields
    by_attname = {f.attname: f for f in fields}
    if len(set(attnames)) != len(attnames):
        raise ValueError(f"{model.__name__}: a column is named twice in {attnames}")
    converters = []
    for name in attnames:
        field = by_attname[name]
        col = field.get_col(model._meta.db_table)
        found = (*connection.ops.get_db_converters(col), *field.get_db_converters(connection))
        converters.append((found, col))
    position = {f.attname: i for i, f in enumerate(fields)}
    order = tuple(sorted(range(len(attnames)), key=lambda i: position[attnames[i]]))
    in_order = order == tuple(range(len(attnames)))
    return converters, None if in_order else order, [attnames[i] for i in order]


def instance_from_row(
    model: type[M], values: Sequence[Any], *, alias: str, attnames: Sequence[str] | None = None
) -> M:
    """An instance of `model` from raw column values, as a queryset would build it.

    `attnames` names the columns in order, in any order; by default all concrete
    fields in `model._meta` order (what `SELECT <every column>` returns). Fields
    not named are deferred, as `only()` defers them. A row with more or fewer
    values than names is refused.
    """
    names = tuple(attnames or (f.attname for f in model._meta.concrete_fields))
    converters, order, model_names = _reading(model, names, alias)
    connection = connections[alias]
    converted = []
    for value, (found, col) in zip(values, converters, strict=True):
        for convert in found:
            value = convert(value, col, connection)
        converted.append(value)
    # `Model.from_db` takes the values of a partial row in `model._meta` order.
    if order is not None:
        converted = [converted[i] for i in order]
    return model.from_db(alias, model_names, converted)


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
