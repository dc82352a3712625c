"""Record events: what happened to a suggestion, written as audit lines and analytics records.

DESIGN.md §8: the audit log and the analytics stream carry the same events. A `RecordEvent`
is built once, redacted once (`RecordEvent.create` redacts its data), and then serialized to
one JSONL audit line and one analytics record. Nothing in here writes anywhere.
"""

from __future__ import annotations

import hashlib
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
    QUERY_RETRY_SCHEDULED = "query_retry_scheduled"
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
        event_id: str | None = None,
        **data: Any,
    ) -> RecordEvent:
        """A new event with its data redacted (personal data and credential fields).

        `event_id`: one chosen beforehand (so that a retried writer can tell it was written)."""
        return cls(
            event_id=event_id or uuid.uuid4().hex,
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


# --- the hash chain (tamper evidence) ------------------------------------------------------------

GENESIS = "0" * 64
_CHAIN_FIELDS = ("prev_hash", "hash")


def _canonical(record: dict[str, Any]) -> bytes:
    body = {k: v for k, v in record.items() if k not in _CHAIN_FIELDS}
    return json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def chain_hash(prev_hash: str, record: dict[str, Any]) -> str:
    """sha256 over the previous line's hash and this record (without its chain fields)."""
    return hashlib.sha256(prev_hash.encode() + b"\n" + _canonical(record)).hexdigest()


def chained_line(record: dict[str, Any], prev_hash: str) -> tuple[str, str]:
    """(the JSONL line with `prev_hash` and `hash`, its hash)."""
    digest = chain_hash(prev_hash, record)
    line = json.dumps(
        {**record, "prev_hash": prev_hash, "hash": digest},
        separators=(",", ":"),
        sort_keys=True,
        ensure_ascii=False,
    )
    return line + "\n", digest


class ChainBreak(ValueError):
    """Where a chain stops holding: the 1-based line number and why."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


def verify_chain(lines: list[str], prev_hash: str = GENESIS) -> str:
    """Check each line against the one before; returns the last hash or raises `ChainBreak`.

    A line that was edited no longer matches its own hash; a line removed or inserted breaks
    the `prev_hash` of the line after it.
    """
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError:
            raise ChainBreak(number, "not JSON") from None
        if not isinstance(record, dict) or not all(f in record for f in _CHAIN_FIELDS):
            raise ChainBreak(number, "no prev_hash/hash fields")
        if record["prev_hash"] != prev_hash:
            raise ChainBreak(
                number, "prev_hash does not match the previous line (removed or reordered lines)"
            )
        if chain_hash(prev_hash, record) != record["hash"]:
            raise ChainBreak(number, "content does not match its hash (edited line)")
        prev_hash = record["hash"]
    return prev_hash
