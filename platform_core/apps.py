from django.apps import AppConfig


class PlatformCoreConfig(AppConfig):
    name = "platform_core"
    verbose_name = "Platform"

    def ready(self) -> None:
        from platform_core.ops.audit import audit_receivers_connect
        from platform_core.ops.telemetry import telemetry_start

        audit_receivers_connect()
        telemetry_start()
