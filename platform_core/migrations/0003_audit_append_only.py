"""The database refuses to change or delete an audit entry.

A row trigger, so a raw query cannot rewrite the log either. TRUNCATE (how a
test database is emptied) does not fire row triggers.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION platform_core_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only (% refused)', TG_OP;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS platform_core_auditentry_append_only ON platform_core_auditentry;
CREATE TRIGGER platform_core_auditentry_append_only
    BEFORE UPDATE OR DELETE ON platform_core_auditentry
    FOR EACH ROW EXECUTE FUNCTION platform_core_audit_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS platform_core_auditentry_append_only ON platform_core_auditentry;
DROP FUNCTION IF EXISTS platform_core_audit_append_only();
"""


def _run(sql):
    def run(apps, schema_editor):
        schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("platform_core", "0002_audit_log")]

    operations = [migrations.RunPython(_run(CREATE), _run(DROP))]
