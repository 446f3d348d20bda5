"""Error reports to Sentry and traces over OpenTelemetry, each on when configured.

- `SENTRY_DSN` set: sentry-sdk (the `sentry` extra) with its Django integration.
- `OTEL_EXPORTER_OTLP_ENDPOINT` set: Django requests and database calls traced
  and sent over OTLP/HTTP (the `otel` extra); the exporter reads the standard
  `OTEL_*` variables (service name, headers, sampling).

The rule: both are optional. Unset, nothing is imported; set without its extra
installed, start-up stops with the extra to install rather than running blind.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def telemetry_start() -> None:
    if settings.SENTRY_DSN:
        try:
            import sentry_sdk
        except ImportError as exc:
            raise ImproperlyConfigured(
                "SENTRY_DSN is set but sentry-sdk is not installed: pip install 'tollgate[sentry]'"
            ) from exc
        # No request bodies or personal data: webhook bodies and card details stay here.
        sentry_sdk.init(
            dsn=settings.SENTRY_DSN, send_default_pii=False, max_request_body_size="never"
        )
    if settings.OTEL_EXPORTER_OTLP_ENDPOINT:
        try:
            from opentelemetry import trace
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.instrumentation.django import DjangoInstrumentor
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:
            raise ImproperlyConfigured(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry packages are not "
                "installed: pip install 'tollgate[otel]'"
            ) from exc
        provider = TracerProvider(resource=Resource.create({"service.name": "tollgate"}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        DjangoInstrumentor().instrument()
