"""Operations: what staff run the business with.

The admin site and its pages (dashboard, plugins), the audit log, data rights
(export, erasure), health checks and structured logs. This package belongs to
the composition root, so it may import every app; no app imports it.
"""
