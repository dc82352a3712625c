"""Reading what a caller sent: desk authentication and JSON bodies, with the API's errors.

413  body over ASSIST_MAX_BODY_BYTES (werkzeug raises it while reading)
415  Content-Type is not JSON
400  the bytes are not JSON, or not a JSON object
422  the object fails the model, with dotted field paths in `details`
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from flask import g, request
from pydantic import BaseModel, ValidationError

from assist.bootstrap import Services
from assist.errors import InvalidInputError
from webapp.errors import field_error
from webapp.services import services

M = TypeVar("M", bound=BaseModel)


class UnsupportedMediaTypeError(InvalidInputError):
    status_code = 415
    code = "unsupported_media_type"


def require_desk_token(allow_query_token: bool = False) -> Services:
    """Authenticate the desk caller (raises 401); returns the services for convenience."""
    svc = services()
    query_token = request.args.get("access_token") if allow_query_token else None
    g.caller_scope = svc.desk_auth.authenticate(request.headers.get("Authorization"), query_token)
    return svc


def require_json_content_type() -> None:
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaTypeError(
            f"Content-Type must be application/json, not {request.content_type or 'missing'!r}"
        )


def load_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"malformed JSON: {exc}", code="malformed_json") from exc


def parse_json_object(model: type[M], raw: bytes | None = None) -> M:
    """Parse and validate the request body (or the given raw bytes) as `model`."""
    require_json_content_type()
    data = load_json(request.get_data(cache=True) if raw is None else raw)
    if not isinstance(data, dict):
        raise InvalidInputError("the JSON body must be an object", code="malformed_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise field_error(exc) from exc
