"""`POST /v1/callbacks/genesys`: signed provider callbacks.

Order of checks: size (413, while reading; 408 when the body is too slow to arrive) ->
signature on the raw bytes (401, before any parsing) -> media type (415) -> JSON (400) ->
fields (422) -> request lookup (404). Only then is anything written, and the answer is sent
after the ranking job is in Redis.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from assist.services.suggestions import CallbackPayload, receive_callback
from webapp.context import bind
from webapp.inputs import parse_json_object, read_body
from webapp.services import services

bp = Blueprint("callbacks", __name__)


@bp.post("/v1/callbacks/genesys")
def genesys_callback() -> tuple[Response, int]:
    svc = services()
    raw = read_body()
    verified = svc.callback_verifier.verify(raw, dict(request.headers))
    payload = parse_json_object(CallbackPayload, raw)
    outcome = receive_callback(
        svc, payload, verified, request_id_hint=request.args.get("request_id")
    )
    bind(suggestion_request_id=outcome.body.get("request_id"), callback_status=payload.status)
    return jsonify(outcome.body), outcome.status_code
