"""Reading what a caller sent: desk authentication and JSON bodies, with the API's errors.

413  body over ASSIST_MAX_BODY_BYTES (werkzeug raises it while reading, before reading a
     body whose Content-Length already says so)
408  the body did not arrive within ASSIST_BODY_READ_TIMEOUT_S (a slow or stalled upload)
400  the body ended before its Content-Length (`incomplete_body`), or is not acceptable JSON
415  Content-Type is not JSON
422  the object fails the model, with dotted field paths in `details`

Acceptable JSON is stricter than Python's `json` module: UTF-8 (a leading BOM is allowed),
no `NaN`/`Infinity` literals, numbers that fit a double and at most 100 characters long
(Python refuses to convert integers of more than 4300 digits, and a long one costs quadratic
time), no duplicate keys in an object (which of the two would count is a guess), no lone
UTF-16 surrogate escapes (they cannot be stored or logged as UTF-8), and at most 32 levels
of nesting. Every refusal is a 400 `malformed_json` that says which rule the body broke.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any, TypeVar

from flask import g, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from assist.bootstrap import Services
from assist.errors import InvalidInputError
from webapp.errors import field_error
from webapp.services import services

M = TypeVar("M", bound=BaseModel)

MAX_JSON_DEPTH = 32
MAX_NUMBER_CHARS = 100
_SURROGATE = re.compile("[\ud800-\udfff]")


class UnsupportedMediaTypeError(InvalidInputError):
    status_code = 415
    code = "unsupported_media_type"


class RequestTimeoutError(InvalidInputError):
    status_code = 408
    code = "request_timeout"


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


def _cooperative() -> bool:
    """Whether sockets are gevent's (gunicorn's gevent worker), so a gevent.Timeout can
    interrupt a read that waits for the client."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("socket"))


def _receive() -> bytes:
    body = request.get_data(cache=True)
    expected = request.content_length
    if expected is not None and len(body) != expected:
        # The client closed its side early: what arrived is not the body it announced.
        raise InvalidInputError(
            f"the body ended after {len(body)} of its {expected} bytes (Content-Length)",
            code="incomplete_body",
        )
    limit = request.max_content_length
    # werkzeug stops reading a streamed (chunked) body at the limit without a word: one
    # more byte means the body is larger than that.
    streamed_to_limit = expected is None and limit is not None and len(body) >= limit
    if streamed_to_limit and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()
    return body


def read_body() -> bytes:
    """The raw request body, read once (413 when too large, 408 when too slow, 400 when it
    ends before its Content-Length)."""
    cached: bytes | None = getattr(g, "raw_body", None)
    if cached is not None:
        return cached
    timeout_s = services().settings.body_read_timeout_s
    if _cooperative():
        from gevent import Timeout

        too_slow = RequestTimeoutError(f"the request body was not received within {timeout_s:g} s")
        with Timeout(timeout_s, too_slow):
            body = _receive()
    else:
        body = _receive()
    g.raw_body = body
    return body


class _Refused(ValueError):
    """A body that is JSON by syntax but not by this API's rules."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Refused(f"duplicate key {key[:64]!r} in an object")
        result[key] = value
    return result


def _number_text(text: str) -> str:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Refused(f"a number of more than {MAX_NUMBER_CHARS} characters")
    return text


def _float(text: str) -> float:
    value = float(_number_text(text))
    if not math.isfinite(value):
        raise _Refused(f"number {text[:32]} is out of range")
    return value


def _int(text: str) -> int:
    return int(_number_text(text))


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(
    object_pairs_hook=_object, parse_float=_float, parse_int=_int, parse_constant=_constant
)


def _check_tree(data: Any) -> None:
    """Nesting depth and strings (lone surrogates), without recursion."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise _Refused("a string with a lone UTF-16 surrogate escape")
            continue
        if isinstance(value, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise _Refused(f"nested more than {MAX_JSON_DEPTH} levels deep")
            items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
            for key, item in items:
                if key is not None and _SURROGATE.search(key):
                    raise _Refused("a key with a lone UTF-16 surrogate escape")
                stack.append((item, depth + 1))


def _may_break_tree_rules(text: str) -> bool:
    """Whether `_check_tree` could refuse what `text` parses to. Text decoded from UTF-8 holds
    no surrogates, so a lone one can only come from a `\\u` escape; and a container nested
    32 deep needs 32 opening brackets (those inside strings only make the count larger)."""
    return "\\u" in text or text.count("{") + text.count("[") > MAX_JSON_DEPTH


def load_json(raw: bytes) -> Any:
    """Parse a body by the rules above; raises a 400 `InvalidInputError`."""
    try:
        text = raw.decode("utf-8-sig")
        data = _DECODER.decode(text)
        if _may_break_tree_rules(text):
            _check_tree(data)
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"malformed JSON: not UTF-8 ({exc.reason} at byte {exc.start})", code="malformed_json"
        ) from exc
    except RecursionError as exc:
        raise InvalidInputError(
            f"malformed JSON: nested more than {MAX_JSON_DEPTH} levels deep",
            code="malformed_json",
        ) from exc
    except ValueError as exc:  # JSONDecodeError, _Refused
        raise InvalidInputError(f"malformed JSON: {exc}", code="malformed_json") from exc
    return data


def parse_json_object(model: type[M], raw: bytes | None = None) -> M:
    """Parse and validate the request body (or the given raw bytes) as `model`."""
    require_json_content_type()
    data = load_json(read_body() if raw is None else raw)
    if not isinstance(data, dict):
        raise InvalidInputError("the JSON body must be an object", code="malformed_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise field_error(exc) from exc
