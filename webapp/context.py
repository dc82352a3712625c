"""Per-request context: a request id, bound log context, and one canonical log line.

The request id comes from a well-formed `X-Request-ID` header or is generated; it is echoed
in the response header and in every error body, and bound to every log line of the request.
"""

from __future__ import annotations

import re
import time
import uuid

import structlog
from flask import Flask, Response, g, request

from assist.logconfig import get_logger

log = get_logger("webapp.request")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,128}$")


def bind(**values: object) -> None:
    """Add fields (e.g. conversation_id) to every later log line of this request."""
    structlog.contextvars.bind_contextvars(**values)


def init_app(app: Flask) -> None:
    @app.before_request
    def bind_request_context() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        g.started = time.perf_counter()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            request_id=g.request_id, method=request.method, path=request.path
        )

    @app.after_request
    def canonical_line(response: Response) -> Response:
        response.headers["X-Request-ID"] = getattr(g, "request_id", "")
        started = getattr(g, "started", None)
        duration_ms = round((time.perf_counter() - started) * 1000, 2) if started else None
        # Event streams are long-lived; their line is written when they open.
        log.info(
            "request",
            status=response.status_code,
            duration_ms=duration_ms,
            endpoint=request.endpoint,
        )
        return response

    @app.teardown_request
    def clear_context(_exc: BaseException | None) -> None:
        structlog.contextvars.clear_contextvars()
