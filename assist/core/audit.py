"""Record events: what happened to a suggestion, written as audit lines and analytics records.

DESIGN.md §8: the audit log and the analytics stream carry the same events. A `RecordEvent`
is built once, redacted once (`RecordEvent.create` redacts its data), and then serialized to
one JSONL audit line and one analytics record. Nothing in here writes anywhere.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from assist.core.models import utcnow
from assist.core.redaction import redact_text, redact_value


class EventType(StrEnum):
    QUERY_REQUESTED = "query_requested"
    QUERY_SUBMITTED = "query_submitted"
    QUERY_FAILED = "query_failed"
    CALLBACK_RECEIVED = "callback_received"
    SUGGESTIONS_RANKED = "suggestions_ranked"
    SUGGESTIONS_DELIVERED = "suggestions_delivered"
    REQUEST_EXPIRED = "request_expired"
    FEEDBACK_RECORDED = "feedback_recorded"
    ERROR = "error"
    AUTOTRIGGERED = "autotriggered"
    UTTERANCE_SYNCED = "utterance_synced"
    UTTERANCE_SYNC_FAILED = "utterance_sync_failed"
    UTTERANCE_RECEIVED = "utterance_received"
    KEYWORDS_DETECTED = "keywords_detected"
    KNOWLEDGE_SEARCHED = "knowledge_searched"
    KNOWLEDGE_ANSWER_REPORTED = "knowledge_answer_reported"
    INSIGHT_PROCESSED = "insight_processed"
    INSIGHT_FILTERED = "insight_filtered"
    INSIGHT_SYNC_FAILED = "insight_sync_failed"
    INSIGHT_ENGAGEMENT_REPORTED = "insight_engagement_reported"
    RESULTS_DELIVERED = "results_delivered"
    RESULTS_DELIVERY_FAILED = "results_delivery_failed"


class RecordEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    event_id: str
    type: EventType
    ts: datetime
    request_id: str | None = None
    conversation_id: str | None = None
    agent_id: str | None = None
    data: dict[str, Any]

    @classmethod
    def create(
        cls,
        type: EventType,
        *,
        request_id: str | None = None,
        conversation_id: str | None = None,
        agent_id: str | None = None,
        at: datetime | None = None,
        **data: Any,
    ) -> RecordEvent:
        """A new event with its data redacted (personal data and credential fields)."""
        return cls(
            event_id=uuid.uuid4().hex,
            type=type,
            ts=at or utcnow(),
            request_id=request_id,
            conversation_id=redact_text(conversation_id) if conversation_id else None,
            agent_id=redact_text(agent_id) if agent_id else None,
            data=redact_value(data),
        )

    def to_record(self) -> dict[str, Any]:
        """The JSON-ready analytics record."""
        return self.model_dump(mode="json")

    def to_audit_line(self) -> str:
        """One JSONL line (no newline inside, ending in one)."""
        return json.dumps(self.to_record(), separators=(",", ":"), sort_keys=True) + "\n"
