"""The platform's hand-written SQL: every statement of `platform_core` not built by the ORM.

(The rate limiter is an app of its own, with its own SQL module.)

What each statement is for:

- `api_token_with_user`: the bearer lookup every API request makes: a live token
  by its digest with its active user, in one indexed read whose SQL is built
  once per database, because building it through the ORM on every request cost
  more than running it (`make bench` measures it).
- `database_ping`: the readiness check's `SELECT 1`.

The rule for model signals, the same in every app's SQL module: each row a
statement here inserts is announced with `post_save` exactly as `create()`
announces it; what a statement updates or deletes is announced by nothing, as
`QuerySet.update()` announces nothing (both statements here only read). Rows
become model instances only through `kernel.rows.instance_from_row`.
"""

from __future__ import annotations

import functools

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model

from kernel.rows import instance_from_row
from platform_core.models import ApiToken

# The models whose rows these statements insert, and those they update or delete.
MODELS_INSERTED: tuple[type[Model], ...] = ()
MODELS_UPDATED: tuple[type[Model], ...] = ()


@functools.cache
def _token_lookup_sql(alias: str) -> str:
    """`SELECT <token columns>, <user columns> … WHERE digest = %s` for a live token of
    an active user."""
    quote = connections[alias].ops.quote_name
    user_model = get_user_model()
    columns = [f"t.{quote(f.column)}" for f in ApiToken._meta.concrete_fields]
    columns += [f"u.{quote(f.column)}" for f in user_model._meta.concrete_fields]
    return (
        f"SELECT {', '.join(columns)} FROM {quote(ApiToken._meta.db_table)} t "  # noqa: S608 - names are ours
        f"JOIN {quote(user_model._meta.db_table)} u ON u.{quote(user_model._meta.pk.column)} = "
        f"t.{quote(ApiToken._meta.get_field('user').column)} "
        f"WHERE t.{quote(ApiToken._meta.get_field('digest').column)} = %s "
        f"AND t.{quote(ApiToken._meta.get_field('revoked_at').column)} IS NULL "
        f"AND u.{quote(user_model._meta.get_field('is_active').column)}"
    )


def api_token_with_user(*, digest: str) -> ApiToken | None:
    """The unrevoked token with this digest, its user loaded (`token.user`), when that
    user is active; None otherwise."""
    alias = ApiToken.objects.db
    with connections[alias].cursor() as cursor:
        cursor.execute(_token_lookup_sql(alias), [digest])
        row = cursor.fetchone()
    if row is None:
        return None
    split = len(ApiToken._meta.concrete_fields)
    token = instance_from_row(ApiToken, row[:split], alias=alias)
    token.user = instance_from_row(get_user_model(), row[split:], alias=alias)
    return token


def database_ping() -> None:
    """Raise if the default database does not answer."""
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT 1")
