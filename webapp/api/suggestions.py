"""`POST /v1/suggestions`, `GET /v1/suggestions/{id}`, `GET /v1/conversations/{id}/suggestions`."""

from __future__ import annotations

import hashlib
import json
import re

from flask import Blueprint, Response, g, jsonify, request, url_for

from assist.errors import InvalidInputError
from assist.services.suggestions import (
    IdempotencyContext,
    TriggerCommand,
    conversation_suggestions,
    get_request,
    trigger,
)
from webapp import throttle
from webapp.context import bind
from webapp.inputs import parse_json_object, require_desk_token
from webapp.schemas import ConversationSuggestionsView, RequestView, TriggerAccepted, TriggerBody

bp = Blueprint("suggestions", __name__)
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def _idempotency(body: TriggerBody) -> IdempotencyContext | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.match(key):
        raise InvalidInputError(
            "Idempotency-Key must be 1-255 printable ASCII characters without spaces",
            code="invalid_idempotency_key",
        )
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return IdempotencyContext(
        scope=g.caller_scope, key=key, fingerprint=hashlib.sha256(canonical.encode()).hexdigest()
    )


@bp.post("/v1/suggestions")
def create_suggestion_request() -> tuple[Response, int, dict[str, str]]:
    svc = require_desk_token()
    body = parse_json_object(TriggerBody)
    bind(conversation_id=body.conversation_id)
    idempotency = _idempotency(body)
    throttle.enforce(throttle.TRIGGER, agent_id=body.agent_id, conversation_id=body.conversation_id)
    result = trigger(
        svc,
        TriggerCommand(
            conversation_id=body.conversation_id,
            knowledge_source_ids=tuple(body.knowledge_source_ids),
            transcript=body.transcript,
            agent_id=body.agent_id,
            agent_skills=tuple(body.agent_skills),
            max_results=body.max_results,
        ),
        idempotency=idempotency,
    )
    req = result.request
    status_url = url_for("suggestions.get_suggestion_request", request_id=req.request_id)
    accepted = TriggerAccepted(request_id=req.request_id, status=req.status, status_url=status_url)
    headers = {"Location": status_url}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return jsonify(accepted.model_dump(mode="json")), 202, headers


@bp.get("/v1/suggestions/<request_id>")
def get_suggestion_request(request_id: str) -> Response:
    svc = require_desk_token()
    view = RequestView.of(get_request(svc, request_id))
    return jsonify(view.model_dump(mode="json"))


@bp.get("/v1/conversations/<conversation_id>/suggestions")
def get_conversation_suggestions(conversation_id: str) -> Response:
    svc = require_desk_token()
    bind(conversation_id=conversation_id)
    view = ConversationSuggestionsView(
        conversation_id=conversation_id,
        suggestions=conversation_suggestions(svc, conversation_id),
    )
    return jsonify(view.model_dump(mode="json"))
