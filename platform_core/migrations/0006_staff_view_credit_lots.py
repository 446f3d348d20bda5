"""Staff groups see credit lots and what each ledger entry drew from them: the
groups are made again as `0004_staff_groups` defines them, now that those models
exist, with the plan permission under the app plans moved to (`credits`)."""

import importlib

from django.db import migrations

staff_groups = importlib.import_module("platform_core.migrations.0004_staff_groups")

# Models that moved app after the groups were defined: (app then, codename) -> app now.
MOVED = {("purchasables", "view_plan"): "credits"}


def groups_refresh(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    staff_groups.groups_create(apps, schema_editor)  # makes the new models' permissions
    for name, wanted in staff_groups.GROUPS.items():
        group = Group.objects.get(name=name)
        found = [
            Permission.objects.filter(
                content_type__app_label=MOVED.get((app, codename), app), codename=codename
            ).first()
            for app, codename in wanted
        ]
        group.permissions.set([p for p in found if p is not None])


class Migration(migrations.Migration):
    dependencies = [
        ("platform_core", "0005_staff_view_disputes"),
        ("credits", "0004_lots"),
        ("purchasables", "0002_plan_to_credits"),
    ]

    operations = [migrations.RunPython(groups_refresh, migrations.RunPython.noop)]
