"""The error tree shared by services, web handlers and jobs.

    AssistError                  base; carries an HTTP status and a machine code
    ├── InvalidInputError        400 (malformed input that is not a field error)
    ├── AuthenticationError      401
    ├── NotFoundError            404
    ├── ConflictError            409
    ├── FieldValidationError     422, with field paths in `details`
    ├── RateLimitedError         429, with a Retry-After hint
    └── ServiceUnavailableError  503, with a Retry-After hint

`webapp/errors.py` renders every one of them in the one JSON error shape of DESIGN.md §4.
Adapters have their own trees (`assist.adapters.genesys.errors`) and services translate the
cases a caller must see.
"""

from __future__ import annotations

from typing import Any


class AssistError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(
        self, message: str, *, code: str | None = None, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details or []


class InvalidInputError(AssistError):
    status_code = 400
    code = "invalid_request"


class AuthenticationError(AssistError):
    status_code = 401
    code = "unauthorized"


class NotFoundError(AssistError):
    status_code = 404
    code = "not_found"


class ConflictError(AssistError):
    status_code = 409
    code = "conflict"


class FieldValidationError(AssistError):
    status_code = 422
    code = "validation_failed"


class RateLimitedError(AssistError):
    status_code = 429
    code = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: int,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s


class ServiceUnavailableError(AssistError):
    status_code = 503
    code = "service_unavailable"

    def __init__(self, message: str, *, retry_after_s: int = 5, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s
