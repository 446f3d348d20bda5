from django.apps import AppConfig


class PlatformCoreConfig(AppConfig):
    name = "platform_core"
    verbose_name = "Platform"

    def ready(self) -> None:
        from platform_core.ops.telemetry import telemetry_start

        telemetry_start()
