"""The Flask app's input handling, error shape, health endpoints and OpenAPI document.

Redis is the default of make_settings, 127.0.0.1:1, where nothing listens: every case here
is decided before Redis is touched, except the ones that check what happens when it is
unreachable (connection refused on loopback, at once).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from standardwebhooks import Webhook
from werkzeug.test import TestResponse

from assist.settings import Settings
from tests.conftest import AUTH, CALLBACK_SECRET, make_settings
from webapp import create_app
from webapp.services import EXTENSION_KEY

VALID_TRIGGER: dict[str, Any] = {
    "conversation_id": "conv-1",
    "knowledge_source_ids": ["kb-billing"],
    "transcript": "I was charged twice",
}
VALID_FEEDBACK: dict[str, Any] = {
    "conversation_id": "conv-1",
    "suggestion_id": "art-1",
    "agent_id": "agent-7",
    "action": "accepted",
}
OTHER_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def app_factory(settings_factory: Callable[..., Settings]) -> Iterator[Callable[..., Flask]]:
    apps: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        app = create_app(settings_factory(**overrides))
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions[EXTENSION_KEY].close()


@pytest.fixture(scope="module")
def default_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    # Built once: building the services (HTTP client, TLS context) is the slow part.
    app = create_app(make_settings(tmp_path_factory.mktemp("webapp")))
    yield app
    app.extensions[EXTENSION_KEY].close()


@pytest.fixture
def client(default_app: Flask) -> FlaskClient:
    return default_app.test_client()


def error_of(response: TestResponse, status: int, code: str) -> dict[str, Any]:
    """Check the one error shape and return its `error` object."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "request_id", "details"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    assert error["request_id"] and error["request_id"] == response.headers["X-Request-ID"]
    return error


def fields(error: dict[str, Any]) -> list[str]:
    return [detail["field"] for detail in error["details"]]


def trigger(client: FlaskClient, body: Any = None, **kwargs: Any) -> TestResponse:
    headers = {**AUTH, **kwargs.pop("headers", {})}
    return client.post(
        "/v1/suggestions", json=VALID_TRIGGER if body is None else body, headers=headers, **kwargs
    )


# --- authentication --------------------------------------------------------------------------


def test_no_token_is_401(client: FlaskClient) -> None:
    error_of(client.post("/v1/suggestions", json=VALID_TRIGGER), 401, "unauthorized")


def test_a_wrong_token_is_401(client: FlaskClient) -> None:
    response = trigger(client, headers={"Authorization": "Bearer not-the-token"})
    error_of(response, 401, "unauthorized")


def test_the_query_token_is_not_accepted_on_the_rest_api(client: FlaskClient) -> None:
    response = client.post("/v1/suggestions?access_token=desk-test-token", json=VALID_TRIGGER)
    error_of(response, 401, "unauthorized")


def test_authentication_comes_before_body_parsing(client: FlaskClient) -> None:
    response = client.post("/v1/suggestions", data="{not json", content_type="application/json")
    error_of(response, 401, "unauthorized")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v1/suggestions/req_1"),
        ("get", "/v1/conversations/conv-1/suggestions"),
        ("post", "/v1/feedback"),
    ],
)
def test_every_desk_endpoint_needs_a_token(client: FlaskClient, method: str, path: str) -> None:
    error_of(getattr(client, method)(path), 401, "unauthorized")


# --- body parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_non_json_content_type_is_415(client: FlaskClient, content_type: str | None) -> None:
    response = client.post(
        "/v1/suggestions",
        data=json.dumps(VALID_TRIGGER),
        headers=AUTH,
        **({"content_type": content_type} if content_type else {}),
    )
    error_of(response, 415, "unsupported_media_type")


def test_a_json_suffix_media_type_is_accepted(client: FlaskClient) -> None:
    # Reaches field validation (422), so the media type passed.
    response = client.post(
        "/v1/suggestions",
        data=json.dumps({"conversation_id": "conv-1"}),
        headers=AUTH,
        content_type="application/merge-patch+json; charset=utf-8",
    )
    error_of(response, 422, "validation_failed")


@pytest.mark.parametrize("raw", ["{not json", "", '{"a": 1', b"\xff\xfe"])
def test_malformed_json_is_400(client: FlaskClient, raw: str | bytes) -> None:
    response = client.post(
        "/v1/suggestions", data=raw, headers=AUTH, content_type="application/json"
    )
    error_of(response, 400, "malformed_json")


@pytest.mark.parametrize("body", [[VALID_TRIGGER], "a string", 42, None])
def test_a_json_body_that_is_not_an_object_is_400(client: FlaskClient, body: Any) -> None:
    response = client.post(
        "/v1/suggestions", data=json.dumps(body), headers=AUTH, content_type="application/json"
    )
    error_of(response, 400, "malformed_json")


def test_a_body_over_max_body_bytes_is_413(app_factory: Callable[..., Flask]) -> None:
    client = app_factory(max_body_bytes=1024).test_client()
    body = {**VALID_TRIGGER, "transcript": "x" * 1100}
    error_of(trigger(client, body), 413, "payload_too_large")


def test_a_body_just_under_max_body_bytes_is_read(app_factory: Callable[..., Flask]) -> None:
    client = app_factory(max_body_bytes=1024).test_client()
    body = {**VALID_TRIGGER, "transcript": "x" * 900, "unknown": 1}
    assert len(json.dumps(body)) < 1024
    error_of(trigger(client, body), 422, "validation_failed")


def test_a_413_on_the_callback_endpoint_too(app_factory: Callable[..., Flask]) -> None:
    client = app_factory(max_body_bytes=1024).test_client()
    response = client.post("/v1/callbacks/genesys", data=b"{" + b" " * 2000 + b"}")
    error_of(response, 413, "payload_too_large")


# --- field validation ------------------------------------------------------------------------


def test_a_transcript_over_5000_characters_is_422(client: FlaskClient) -> None:
    error = error_of(
        trigger(client, {**VALID_TRIGGER, "transcript": "a" * 5001}), 422, "validation_failed"
    )
    assert fields(error) == ["transcript"]


def test_a_transcript_of_5000_characters_passes_validation(client: FlaskClient) -> None:
    # Valid, so the request reaches Redis, which is unreachable here: 503, not 422.
    response = trigger(client, {**VALID_TRIGGER, "transcript": "a" * 5000})
    error_of(response, 503, "store_unavailable")


@pytest.mark.parametrize("count", [0, 11])
def test_knowledge_source_ids_must_number_1_to_10(client: FlaskClient, count: int) -> None:
    body = {**VALID_TRIGGER, "knowledge_source_ids": [f"kb-{i}" for i in range(count)]}
    error = error_of(trigger(client, body), 422, "validation_failed")
    assert fields(error) == ["knowledge_source_ids"]


def test_a_missing_required_field_is_named(client: FlaskClient) -> None:
    error = error_of(trigger(client, {"transcript": "hi"}), 422, "validation_failed")
    assert sorted(fields(error)) == ["conversation_id", "knowledge_source_ids"]
    assert {d["type"] for d in error["details"]} == {"missing"}


def test_field_paths_are_dotted(client: FlaskClient) -> None:
    body = {**VALID_TRIGGER, "knowledge_source_ids": ["kb-ok", "has space"]}
    error = error_of(trigger(client, body), 422, "validation_failed")
    assert fields(error) == ["knowledge_source_ids.1"]


def test_an_unknown_field_is_422_extra_forbidden(client: FlaskClient) -> None:
    error = error_of(trigger(client, {**VALID_TRIGGER, "colour": "red"}), 422, "validation_failed")
    assert error["details"] == [
        {"field": "colour", "message": error["details"][0]["message"], "type": "extra_forbidden"}
    ]


def test_feedback_with_an_unknown_action_is_422(client: FlaskClient) -> None:
    response = client.post("/v1/feedback", json={**VALID_FEEDBACK, "action": "liked"}, headers=AUTH)
    error = error_of(response, 422, "validation_failed")
    assert fields(error) == ["action"]


# --- Idempotency-Key -------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["has space", "x" * 256, "caf\u00e9", "tab\there"])
def test_a_bad_idempotency_key_is_400(client: FlaskClient, key: str) -> None:
    response = trigger(client, headers={"Idempotency-Key": key})
    error_of(response, 400, "invalid_idempotency_key")


def test_the_idempotency_key_is_checked_after_the_body(client: FlaskClient) -> None:
    response = trigger(client, {"transcript": "hi"}, headers={"Idempotency-Key": "has space"})
    error_of(response, 422, "validation_failed")


def test_a_good_idempotency_key_reaches_the_store(client: FlaskClient) -> None:
    response = trigger(client, headers={"Idempotency-Key": "key-" + "x" * 251})
    error_of(response, 503, "store_unavailable")


# --- callbacks -------------------------------------------------------------------------------


def test_a_callback_without_signature_is_401(client: FlaskClient) -> None:
    response = client.post("/v1/callbacks/genesys", json={"id": "p", "status": "completed"})
    error_of(response, 401, "missing_signature")


def test_a_callback_with_a_bad_signature_is_401(client: FlaskClient) -> None:
    body = json.dumps({"id": "prov-1", "status": "completed"})
    now = datetime.now(UTC)
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(OTHER_SECRET).sign("msg_1", now, body),
    }
    response = client.post(
        "/v1/callbacks/genesys", data=body, headers=headers, content_type="application/json"
    )
    error_of(response, 401, "invalid_signature")


def test_the_callback_signature_is_checked_before_the_body(client: FlaskClient) -> None:
    response = client.post("/v1/callbacks/genesys", data="not json", content_type="text/plain")
    error_of(response, 401, "missing_signature")


def test_a_signed_callback_with_invalid_fields_is_422(client: FlaskClient) -> None:
    body = json.dumps({"id": "prov-1", "status": "done"})
    now = datetime.now(UTC)
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(CALLBACK_SECRET).sign("msg_1", now, body),
    }
    response = client.post(
        "/v1/callbacks/genesys", data=body, headers=headers, content_type="application/json"
    )
    error = error_of(response, 422, "validation_failed")
    assert fields(error) == ["status"]


# --- request ids -----------------------------------------------------------------------------


def test_a_well_formed_request_id_is_echoed(client: FlaskClient) -> None:
    response = client.post(
        "/v1/suggestions", json=VALID_TRIGGER, headers={"X-Request-ID": "trace-abc.123_X"}
    )
    assert error_of(response, 401, "unauthorized")["request_id"] == "trace-abc.123_X"


@pytest.mark.parametrize("incoming", ["short", "bad id with spaces", "x" * 129, "a/b/c/d/e/f"])
def test_a_malformed_request_id_is_replaced(client: FlaskClient, incoming: str) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": incoming})
    generated = response.headers["X-Request-ID"]
    assert generated != incoming
    assert re.fullmatch(r"[0-9a-f]{32}", generated)


def test_each_request_gets_its_own_id(client: FlaskClient) -> None:
    ids = {client.get("/healthz").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3


# --- Redis unreachable -----------------------------------------------------------------------


def test_a_valid_trigger_with_redis_unreachable_is_503(
    app_factory: Callable[..., Flask],
) -> None:
    app = app_factory()
    response = trigger(app.test_client())
    error_of(response, 503, "store_unavailable")
    assert int(response.headers["Retry-After"]) > 0
    # Nothing was recorded as requested.
    assert not Path(app.extensions[EXTENSION_KEY].settings.audit_log_path).exists()


def test_feedback_with_redis_unreachable_is_503(client: FlaskClient) -> None:
    response = client.post("/v1/feedback", json=VALID_FEEDBACK, headers=AUTH)
    error_of(response, 503, "store_unavailable")
    assert response.headers["Retry-After"]


# --- routing errors --------------------------------------------------------------------------


def test_an_unknown_route_is_404_in_the_error_shape(client: FlaskClient) -> None:
    error_of(client.get("/v1/nothing-here"), 404, "not_found")


def test_a_wrong_method_is_405_in_the_error_shape(client: FlaskClient) -> None:
    response = client.get("/v1/feedback", headers=AUTH)
    error_of(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


# --- health ----------------------------------------------------------------------------------


def test_healthz_is_200(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"


def test_readyz_is_503_when_redis_is_unreachable(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["checks"]["redis"].startswith("unreachable")
    assert response.headers["Retry-After"]


# --- OpenAPI ---------------------------------------------------------------------------------

API_PATHS = {
    "/v1/suggestions",
    "/v1/suggestions/{request_id}",
    "/v1/conversations/{conversation_id}/suggestions",
    "/v1/feedback",
    "/v1/callbacks/genesys",
    "/healthz",
    "/readyz",
    "/metrics",
}


@pytest.fixture
def openapi(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.get_json()
    return document


def test_openapi_is_3_1(openapi: dict[str, Any]) -> None:
    assert re.fullmatch(r"3\.1\.\d+", openapi["openapi"])


def test_openapi_lists_every_api_path(openapi: dict[str, Any]) -> None:
    assert set(openapi["paths"]) >= API_PATHS


def test_every_documented_operation_is_served(openapi: dict[str, Any], client: FlaskClient) -> None:
    app = client.application
    served = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
    }
    documented = {(path, method) for path, ops in openapi["paths"].items() for method in ops}
    assert documented <= served


def _schema(openapi: dict[str, Any], ref_or_schema: dict[str, Any]) -> dict[str, Any]:
    ref = ref_or_schema.get("$ref")
    if ref is None:
        return ref_or_schema
    schema: dict[str, Any] = openapi["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return schema


def _string_branch(prop: dict[str, Any]) -> dict[str, Any]:
    if prop.get("type") == "string":
        return prop
    (string,) = [p for p in prop.get("anyOf", []) if p.get("type") == "string"]
    return string


def test_trigger_schema_comes_from_the_validating_model(openapi: dict[str, Any]) -> None:
    body = openapi["paths"]["/v1/suggestions"]["post"]["requestBody"]
    trigger_body = _schema(openapi, body["content"]["application/json"]["schema"])
    assert trigger_body["title"] == "TriggerBody"
    properties = trigger_body["properties"]
    assert _string_branch(properties["transcript"])["maxLength"] == 5000
    assert properties["knowledge_source_ids"]["minItems"] == 1
    assert properties["knowledge_source_ids"]["maxItems"] == 10
    assert trigger_body.get("additionalProperties") is False
    assert set(trigger_body["required"]) == {"conversation_id", "knowledge_source_ids"}


def test_feedback_schema_lists_the_actions(openapi: dict[str, Any]) -> None:
    body = openapi["paths"]["/v1/feedback"]["post"]["requestBody"]
    feedback = _schema(openapi, body["content"]["application/json"]["schema"])
    action = _schema(openapi, feedback["properties"]["action"])
    assert set(action["enum"]) == {
        "displayed",
        "opened",
        "copied",
        "accepted",
        "dismissed",
        "rejected",
    }


def test_error_responses_use_the_error_shape(openapi: dict[str, Any]) -> None:
    responses = openapi["paths"]["/v1/suggestions"]["post"]["responses"]
    assert {"400", "401", "413", "415", "422", "503"} <= set(responses)
    error_body = _schema(openapi, responses["422"]["content"]["application/json"]["schema"])
    error_info = _schema(openapi, error_body["properties"]["error"])
    assert set(error_info["properties"]) == {"code", "message", "request_id", "details"}
