"""The OpenAPI 3.1 document, generated with openapi-pydantic from the API's pydantic models.

Operations are listed once below; their bodies and responses are the classes in
`webapp.schemas` that the handlers validate and serialize with, so the document and the
server cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from openapi_pydantic import OpenAPI
from openapi_pydantic.util import PydanticSchema, construct_open_api_with_schema_class
from pydantic import BaseModel

from webapp.schemas import (
    AcceptanceView,
    AnalyticsSummaryView,
    CallbackAck,
    CallbackPayload,
    ConversationSuggestionsView,
    DismissedView,
    ErrorBody,
    FeedbackAccepted,
    FeedbackBody,
    HealthView,
    LatencyView,
    RequestView,
    TriggerAccepted,
    TriggerBody,
    VolumeView,
)

_ERRORS = {
    400: "Malformed JSON (not UTF-8, bad syntax, NaN/Infinity, a number out of range or over "
    "100 characters, a duplicate key, a lone surrogate escape, nesting deeper than 32), a body "
    "shorter than its Content-Length, or a malformed header",
    401: "Missing or invalid credentials",
    404: "Unknown id",
    408: "The body was not received within ASSIST_BODY_READ_TIMEOUT_S (a slow or stalled upload)",
    409: "Idempotency-Key reused with another body",
    413: "Body too large",
    415: "Body is not JSON",
    422: "Field errors, with field paths",
    429: "Rate limit of the agent desk or the client address exceeded; retry after Retry-After "
    "seconds",
    503: "Redis unreachable; retry after Retry-After seconds",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
_REQUEST_ID = {
    "X-Request-ID": {
        "description": "The request id (a well-formed incoming X-Request-ID, else generated); "
        "also in every error body",
        "required": True,
        "schema": {"type": "string", "minLength": 1},
    }
}
_LOCATION = {
    "Location": {
        "description": "The status URL of the request (as status_url)",
        "required": True,
        "schema": {"type": "string"},
    }
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    responses: dict[int, type[BaseModel] | None]
    errors: tuple[int, ...] = ()
    body: type[BaseModel] | None = None
    security: str | None = "desk"
    parameters: list[dict[str, Any]] = field(default_factory=list)
    content_type: str = "application/json"
    success_headers: dict[str, Any] = field(default_factory=dict)


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


_RANGE_PARAMS = [
    {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "string", "format": "date-time"},
    }
    for name, description in (
        ("from", "Start, with a time zone, 2000-9000 (default: 24 h before 'to')"),
        ("to", "End, with a time zone, 2000-9000 (default: now)"),
    )
]


OPERATIONS = [
    Operation(
        "post",
        "/v1/suggestions",
        "Ask for suggestions (answers at once; poll status_url)",
        "suggestions",
        {202: TriggerAccepted},
        (400, 401, 408, 409, 413, 415, 422, 429, 503),
        TriggerBody,
        success_headers=_LOCATION,
        parameters=[
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "maxLength": 255},
            }
        ],
    ),
    Operation(
        "get",
        "/v1/suggestions/{request_id}",
        "A suggestion request and its ranked result",
        "suggestions",
        {200: RequestView},
        (401, 404, 503),
        parameters=[_path_param("request_id")],
    ),
    Operation(
        "get",
        "/v1/conversations/{conversation_id}/suggestions",
        "Latest ranked suggestions of a conversation, all sources merged",
        "suggestions",
        {200: ConversationSuggestionsView},
        (401, 404, 503),
        parameters=[_path_param("conversation_id")],
    ),
    Operation(
        "post",
        "/v1/feedback",
        "Record what an agent did with a suggestion",
        "feedback",
        {202: FeedbackAccepted},
        (400, 401, 404, 408, 413, 415, 422, 429, 503),
        FeedbackBody,
    ),
    Operation(
        "post",
        "/v1/callbacks/genesys",
        "Provider callback, signed with Standard Webhooks (webhook-id/-timestamp/-signature)",
        "callbacks",
        {202: CallbackAck, 200: CallbackAck},
        (400, 401, 404, 408, 413, 415, 422, 503),
        CallbackPayload,
        security="standardWebhooks",
        parameters=[
            {"name": h, "in": "header", "required": True, "schema": {"type": "string"}}
            for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
        ],
    ),
    Operation(
        "get",
        "/v1/conversations/{conversation_id}/events",
        "Live feed of ranked suggestions (Server-Sent Events; resumes with Last-Event-ID)",
        "suggestions",
        {200: None},
        (400, 401),
        content_type="text/event-stream",
        parameters=[
            _path_param("conversation_id"),
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
            },
            {
                "name": "access_token",
                "in": "query",
                "required": False,
                "description": "The desk token, for EventSource (which cannot send headers)",
                "schema": {"type": "string"},
            },
        ],
    ),
    *[
        Operation(
            "get",
            f"/v1/analytics/{part}",
            summary,
            "analytics",
            {200: model},
            (401, 422, 503),
            parameters=[*_RANGE_PARAMS, *extra],
        )
        for part, summary, model, extra in (
            ("summary", "Every dashboard figure for a time range", AnalyticsSummaryView, []),
            (
                "acceptance",
                "Acceptance rate (accepted / displayed) by a grouping",
                AcceptanceView,
                [
                    {
                        "name": "by",
                        "in": "query",
                        "required": False,
                        "schema": {"enum": ["knowledge_source", "article", "skill"]},
                    }
                ],
            ),
            ("volume", "Suggestion volume over time", VolumeView, []),
            ("latency", "Latency per stage from the trigger, p50/p95", LatencyView, []),
            ("dismissed", "Most dismissed articles (the knowledge-gap list)", DismissedView, []),
        )
    ],
    Operation("get", "/healthz", "Liveness", "operations", {200: HealthView}, security=None),
    Operation(
        "get",
        "/readyz",
        "Readiness (Redis and queue)",
        "operations",
        {200: HealthView, 503: HealthView},
        security=None,
    ),
    Operation(
        "get",
        "/openapi.json",
        "This document (OpenAPI 3.1)",
        "operations",
        {200: None},
        security=None,
    ),
    Operation(
        "get",
        "/metrics",
        "Prometheus metrics (text format)",
        "operations",
        {200: None},
        security=None,
        content_type="text/plain",
    ),
]


def _response(model: type[BaseModel] | None, description: str, content_type: str) -> dict[str, Any]:
    if model is None:
        schema = {"type": "object" if content_type == "application/json" else "string"}
        return {"description": description, "content": {content_type: {"schema": schema}}}
    return {
        "description": description,
        "content": {"application/json": {"schema": PydanticSchema(schema_class=model)}},
    }


def _operation_id(op: Operation) -> str:
    words = op.path.strip("/").replace("{", "").replace("}", "").replace("/", "_")
    return f"{op.method}_{words}"


@lru_cache(maxsize=1)
def build_openapi() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        responses = {
            str(status): _response(model, "OK", op.content_type)
            for status, model in op.responses.items()
        }
        for status in op.errors:
            responses[str(status)] = _response(ErrorBody, _ERRORS[status], "application/json")
        for code, response in responses.items():
            headers = dict(_REQUEST_ID)
            if code in ("429", "503"):
                headers.update(_RETRY_AFTER)
            if code.startswith("2"):
                headers.update(op.success_headers)
            response["headers"] = headers
        operation: dict[str, Any] = {
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": _operation_id(op),
            "responses": responses,
        }
        if op.parameters:
            operation["parameters"] = op.parameters
        if op.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": PydanticSchema(schema_class=op.body)}},
            }
        if op.security:
            operation["security"] = [{op.security: []}]
        paths.setdefault(op.path, {})[op.method] = operation
    document = OpenAPI.model_validate(
        {
            "info": {
                "title": "genesys-assist",
                "version": "1",
                "description": "Agent Assist suggestion server for Genesys Cloud.",
            },
            "paths": paths,
            "components": {
                "securitySchemes": {
                    "desk": {"type": "http", "scheme": "bearer"},
                    "standardWebhooks": {
                        "type": "apiKey",
                        "in": "header",
                        "name": "webhook-signature",
                    },
                }
            },
        }
    )
    built = construct_open_api_with_schema_class(document)
    result: dict[str, Any] = built.model_dump(mode="json", by_alias=True, exclude_none=True)
    return result
