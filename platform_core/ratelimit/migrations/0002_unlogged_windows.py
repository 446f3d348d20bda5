"""The counters live in an UNLOGGED table: no write-ahead log.

A limited request bumps its counter in a transaction of its own; with a logged
table that commit waits for the log to reach the disk (about half a millisecond
here) on every limited request. The counters are not worth that: after a crash
PostgreSQL empties an unlogged table, which only gives every client a fresh
window, and a standby does not have them, which does the same after a failover.
"""

from django.db import migrations


def _set(logged: bool):
    def run(apps, schema_editor) -> None:
        table = schema_editor.quote_name(
            apps.get_model("ratelimit", "RateLimitWindow")._meta.db_table
        )
        schema_editor.execute(f"ALTER TABLE {table} SET {'LOGGED' if logged else 'UNLOGGED'}")

    return run


class Migration(migrations.Migration):
    dependencies = [("ratelimit", "0001_initial")]

    operations = [migrations.RunPython(_set(logged=False), _set(logged=True), elidable=False)]
