"""`POST /v1/feedback`: agent feedback on a delivered suggestion."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from assist.services.feedback import FeedbackCommand, record_feedback
from webapp import throttle
from webapp.context import bind
from webapp.inputs import parse_json_object, require_desk_token
from webapp.schemas import FeedbackAccepted, FeedbackBody

bp = Blueprint("feedback", __name__)


@bp.post("/v1/feedback")
def post_feedback() -> tuple[Response, int]:
    svc = require_desk_token()
    body = parse_json_object(FeedbackBody)
    bind(conversation_id=body.conversation_id)
    throttle.enforce(
        throttle.FEEDBACK, agent_id=body.agent_id, conversation_id=body.conversation_id
    )
    counted = record_feedback(
        svc,
        FeedbackCommand(
            conversation_id=body.conversation_id,
            suggestion_id=body.suggestion_id,
            agent_id=body.agent_id,
            action=body.action,
            rating=body.rating,
            request_id=body.request_id,
        ),
    )
    return jsonify(FeedbackAccepted(counted=counted).model_dump(mode="json")), 202
