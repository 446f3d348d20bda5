from django.apps import AppConfig


class RateLimitConfig(AppConfig):
    name = "platform_core.ratelimit"
    label = "ratelimit"
    verbose_name = "Rate limits"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from platform_core.ratelimit import checks  # noqa: F401  (registers the system check)
