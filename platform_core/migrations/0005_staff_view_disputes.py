"""Staff groups see disputes and frozen credits: the groups are made again as
`0004_staff_groups` defines them, now that those models exist."""

import importlib

from django.db import migrations

staff_groups = importlib.import_module("platform_core.migrations.0004_staff_groups")


def groups_refresh(apps, schema_editor):
    staff_groups.groups_create(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("platform_core", "0004_staff_groups"),
        ("billing", "0011_dispute"),
        ("credits", "0002_frozen_credits"),
    ]

    operations = [migrations.RunPython(groups_refresh, migrations.RunPython.noop)]
