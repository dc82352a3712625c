"""Live transcript utterances (capability C2), as the rest of the server sees them.

The stream process turns Genesys `v2.conversations.{id}.transcription` events into
`Utterance`s (text already redacted), applies the C2 gates, keeps the rolling transcript
window, and hands final customer utterances that pass the gates to analysis (C3 keyword and
entity detection, auto-trigger rules).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Speaker(StrEnum):
    """Genesys `channel`: INTERNAL is the agent side, EXTERNAL the customer side."""

    AGENT = "agent"
    CUSTOMER = "customer"
    UNKNOWN = "unknown"


class Utterance(BaseModel):
    model_config = ConfigDict(frozen=True)

    conversation_id: str
    utterance_id: str
    speaker: Speaker
    text: str  # redacted
    is_final: bool
    confidence: float | None = None
    dialect: str | None = None
    offset_ms: int | None = None
    duration_ms: int | None = None
    event_time: datetime | None = None
    received_at: datetime
    queue_id: str | None = None
