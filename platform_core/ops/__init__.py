"""Operations: what keeps the running platform observable.

Health checks, structured logs, metrics and telemetry. This package belongs to
the composition root, so it may import every app; no app imports it.
"""
