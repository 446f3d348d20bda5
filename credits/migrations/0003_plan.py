"""Subscription plans join the credits app, beside credit packs.

Nothing in the database moves: the table keeps its name (`purchasables_plan`),
only Django's state says the model is `credits.Plan` now. Its content type is
renamed in place, so the permissions on it, the staff groups that hold them and
the admin's history keep pointing at the same rows.

This runs after the staff-group migrations, so a new database grants the
groups the plan permissions first, and they follow the content type here.
"""

from django.db import migrations, models


def content_type_move(apps, schema_editor, *, old: str, new: str) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    manager = ContentType.objects.db_manager(schema_editor.connection.alias)
    if manager.filter(app_label=new, model="plan").exists():
        return
    manager.filter(app_label=old, model="plan").update(app_label=new)


def content_type_forwards(apps, schema_editor) -> None:
    content_type_move(apps, schema_editor, old="purchasables", new="credits")


def content_type_backwards(apps, schema_editor) -> None:
    content_type_move(apps, schema_editor, old="credits", new="purchasables")


class Migration(migrations.Migration):
    dependencies = [
        ("credits", "0002_frozen_credits"),
        ("purchasables", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("platform_core", "0005_staff_view_disputes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Plan",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("name", models.CharField(max_length=100)),
                        ("stripe_price_id", models.CharField(max_length=255, unique=True)),
                        (
                            "amount",
                            models.PositiveBigIntegerField(
                                help_text="Per cycle, in the currency's minor unit."
                            ),
                        ),
                        ("currency", models.CharField(default="usd", max_length=3)),
                        (
                            "interval",
                            models.CharField(
                                choices=[
                                    ("day", "Daily"),
                                    ("week", "Weekly"),
                                    ("month", "Monthly"),
                                    ("year", "Yearly"),
                                ],
                                default="month",
                                max_length=10,
                            ),
                        ),
                        ("interval_count", models.PositiveSmallIntegerField(default=1)),
                        ("credits_per_cycle", models.PositiveIntegerField()),
                        ("active", models.BooleanField(default=True)),
                        ("sort_order", models.PositiveSmallIntegerField(default=0)),
                    ],
                    options={
                        "db_table": "purchasables_plan",
                        "ordering": ["sort_order", "id"],
                        "constraints": [
                            models.CheckConstraint(
                                condition=models.Q(("amount__gt", 0)), name="plan_amount_positive"
                            ),
                            models.CheckConstraint(
                                condition=models.Q(("credits_per_cycle__gt", 0)),
                                name="plan_credits_positive",
                            ),
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(content_type_forwards, content_type_backwards),
    ]
