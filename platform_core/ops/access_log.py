"""gunicorn's logger for Tollgate's web process: the JSON access line, built cheaply.

gunicorn's own logger copies every request header, response header and
environment variable into a dict (its atoms) for each request, so that
`access_log_format` can pick from them. The JSON line (`logs.access_line`) needs
six values; this logger reads them from the request and response directly, once
per request. `access_log_format` is not used.

The rule: the line is the one `logs.AccessJsonFormatter` makes from gunicorn's
atoms for the same request, so what operators search for does not depend on which
logger wrote it. Only gunicorn's configuration imports this module.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any

from gunicorn import glogging

from platform_core.ops.logs import access_line, forwarded_client, trusted_proxies


class AccessLogger(glogging.Logger):
    """gunicorn's logger, whose access line is built from the request and response alone."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self.trusted_proxies = trusted_proxies()

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        log = self.access_log
        if not log.handlers or not log.isEnabledFor(logging.INFO):
            return
        try:
            status = getattr(resp, "status_code", None) or str(resp.status).split(None, 1)[0]
            request_id = None
            headers = resp.headers
            for name, value in headers.items() if hasattr(headers, "items") else headers:
                if len(name) == 12 and name.lower() == "x-request-id":
                    request_id = value
            client_ip = environ.get("REMOTE_ADDR") or "unknown"
            if self.trusted_proxies:
                client_ip = forwarded_client(
                    client_ip, environ.get("HTTP_X_FORWARDED_FOR", ""), self.trusted_proxies
                )
            line = access_line(
                created=time.time(),
                method=environ.get("REQUEST_METHOD", "-"),
                path=environ.get("PATH_INFO", "-"),
                status=int(status) if str(status).isdigit() else status,
                duration_ms=request_time.total_seconds() * 1000,
                sent=getattr(resp, "sent", None),
                request_id=request_id,
                client_ip=client_ip,
                user_agent=environ.get("HTTP_USER_AGENT", ""),
            )
        except Exception:
            self.error(traceback.format_exc())
            return
        # Made directly, not through log.info(): that looks up the caller's frame first.
        record = log.makeRecord(log.name, logging.INFO, "", 0, line, None, None)
        record.access_line_rendered = True
        log.handle(record)
