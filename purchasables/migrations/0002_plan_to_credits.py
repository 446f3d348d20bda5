"""Subscription plans now live in the credits app (`credits.Plan`).

State only: the table `purchasables_plan` stays where it is and belongs to
`credits.Plan` from `credits` 0003 on, so nothing here touches the database.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("purchasables", "0001_initial"),
        ("credits", "0003_plan"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="Plan")],
            database_operations=[],
        ),
    ]
