"""Queued drains: events stored while a drain task waits ride on it instead of each
enqueuing a task of their own (see `billing.services.events`)."""

import django.db.models.functions.datetime
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0009_reconcile_schedule"),
    ]

    operations = [
        migrations.CreateModel(
            name="QueuedDrain",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "created_at",
                    models.DateTimeField(db_default=django.db.models.functions.datetime.Now()),
                ),
                ("open_until", models.DateTimeField(null=True)),
            ],
        ),
    ]
