"""The staff groups: "support" reads everything, "finance" also refunds, grants,
replays events and sees the dashboard and the audit log. Superuser is not needed
for daily work. Erasing a user's personal data is in neither group: grant
`platform_core.erase_user` to the person who answers data-rights requests.

Permissions are made here first (Django makes them only after all migrations),
and a codename that does not exist is skipped, so the groups can be created on
any database. Running it again leaves the groups as defined here.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEW_MODELS = {
    "billing": [
        "order",
        "payment",
        "refund",
        "fulfilment",
        "stripeevent",
        "stripecustomer",
        "savedpaymentmethod",
        "cardsetup",
        "subscription",
        "dispute",
    ],
    "credits": [
        "creditaccount",
        "credittransaction",
        "creditpack",
        "creditfreeze",
        "creditlot",
        "creditdraw",
    ],
    "bookings": [
        "service",
        "servicesession",
        "availabilitywindow",
        "packageitem",
        "booking",
        "seathold",
    ],
    "purchasables": ["plan"],
}
SUPPORT = [
    *[(app, f"view_{model}") for app, models in VIEW_MODELS.items() for model in models],
    ("platform_core", "view_plugins"),
]
FINANCE = [
    *SUPPORT,
    ("billing", "add_refund"),
    ("billing", "change_stripeevent"),  # replay
    ("credits", "add_credittransaction"),  # grant or adjust
    ("bookings", "change_booking"),  # cancel
    ("platform_core", "view_dashboard"),
    ("platform_core", "view_auditentry"),
]
GROUPS = {"support": SUPPORT, "finance": FINANCE}


def groups_create(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, wanted in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        found = [
            Permission.objects.filter(
                content_type__app_label=app, codename=codename
            ).first()
            for app, codename in wanted
        ]
        group.permissions.set([p for p in found if p is not None])


def groups_remove(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=GROUPS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("platform_core", "0003_audit_append_only"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("billing", "0009_reconcile_schedule"),
        ("credits", "0001_initial"),
        ("bookings", "0001_initial"),
        ("purchasables", "0001_initial"),
    ]

    operations = [migrations.RunPython(groups_create, groups_remove)]
