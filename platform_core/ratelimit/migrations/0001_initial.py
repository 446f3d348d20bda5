from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="RateLimitWindow",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("key", models.CharField(max_length=64)),
                ("window_start", models.BigIntegerField()),
                ("expires_at", models.BigIntegerField(db_index=True)),
                ("hits", models.PositiveIntegerField(default=1)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("key", "window_start"), name="rate_limit_window_unique")
                ],
            },
        ),
    ]
