"""Every error handler, and the one JSON error shape of the API:

    {"error": {"code": "...", "message": "...", "request_id": "...", "details": [...]}}

`AssistError`s carry their status and code; werkzeug's HTTP errors (404 route, 405, 413) are
re-rendered in the same shape; a rate limit is a 429 with `Retry-After` (whole seconds);
Redis being unreachable is a 503 with `Retry-After`, so no caller ever gets a 2xx for
something that was not stored; anything else is logged with its traceback and answered with
a bare 500.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, g, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from assist.errors import (
    AssistError,
    FieldValidationError,
    RateLimitedError,
    ServiceUnavailableError,
)
from assist.logconfig import get_logger
from assist.stores.redis_client import REDIS_UNAVAILABLE_ERRORS

log = get_logger(__name__)

_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
REDIS_RETRY_AFTER_S = 5


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = {
        "error": {
            "code": code,
            "message": message,
            "request_id": getattr(g, "request_id", ""),
            "details": details or [],
        }
    }
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def validation_details(exc: ValidationError, *, prefix: str = "") -> list[dict[str, Any]]:
    """Pydantic errors as `{field, message, type}` with dotted field paths."""
    details = []
    for error in exc.errors(include_url=False, include_input=False):
        path = ".".join(str(part) for part in error["loc"])
        details.append(
            {
                "field": f"{prefix}{path}" if path else prefix.rstrip(".") or None,
                "message": error["msg"],
                "type": error["type"],
            }
        )
    return details


def field_error(exc: ValidationError, *, prefix: str = "") -> FieldValidationError:
    return FieldValidationError(
        "request body failed validation", details=validation_details(exc, prefix=prefix)
    )


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(AssistError)
    def handle_assist_error(exc: AssistError) -> Response:
        headers = {}
        if isinstance(exc, ServiceUnavailableError | RateLimitedError):
            headers["Retry-After"] = str(exc.retry_after_s)
        return error_response(exc.status_code, exc.code, exc.message, exc.details, headers)

    @app.errorhandler(HTTPException)
    def handle_http_exception(exc: HTTPException) -> Response:
        status = exc.code or 500
        response = error_response(
            status, _HTTP_CODES.get(status, "http_error"), exc.description or exc.name
        )
        if status == 405 and exc.response is None:
            allowed = getattr(exc, "valid_methods", None)
            if allowed:
                response.headers["Allow"] = ", ".join(allowed)
        return response

    for error_class in REDIS_UNAVAILABLE_ERRORS:

        @app.errorhandler(error_class)
        def handle_redis_unavailable(exc: Exception) -> Response:
            log.error("redis.unavailable", error=repr(exc))
            return error_response(
                503,
                "store_unavailable",
                "the suggestion store is unreachable; nothing was stored, retry later",
                headers={"Retry-After": str(REDIS_RETRY_AFTER_S)},
            )

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception) -> Response:
        log.exception("request.unhandled_error")
        return error_response(500, "internal_error", "internal server error")
