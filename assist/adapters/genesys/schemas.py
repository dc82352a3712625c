"""Wire models of the Genesys Cloud Notifications API (reference/genesys-cloud.md §2-3).

Every field keeps its exact JSON name as an alias. Unknown fields are ignored (Genesys adds
fields over time), but the fields we read are strictly typed: `"isFinal": "yes"`,
`"offsetMs": "10"` or `"confidence": "high"` are rejected, never coerced, so a malformed frame
is dropped and counted instead of being half understood. Date-times are the one lax type:
they arrive as ISO-8601 strings.

The schemas mirror the official SDK models, where every field is optional; which ids a
message must carry to be usable (a conversation id, an utterance id) is decided by the code
that consumes it, not here.

- `NotificationEnvelope`: `{topicName, version, eventBody, metadata}`, every socket message.
- `ChannelMetadata`: the `channel.metadata` body (heartbeat, pong).
- `SystemMessage`: the `v2.system.*` bodies (`SystemMessageSystemMessage`).
- `TranscriptionMessage`: `TranscriptionTopicTranscriptionMessage` of
  `v2.conversations.{id}.transcription`, with `TranscriptResult`, `TranscriptAlternative`,
  `TranscriptWord` and `TranscriptionStatus`.
- `QueueConversationEvent`: `QueueConversationEventTopicConversation` of
  `v2.routing.queues.{id}.conversations`, with its participants.
- `Channel`, `ChannelTopicListing`: REST replies of channel creation and subscription calls.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

HEARTBEAT_TOPIC = "channel.metadata"
SOCKET_CLOSING_TOPIC = "v2.system.socket_closing"
SYSTEM_TOPIC_PREFIX = "v2.system."

_TRANSCRIPTION_TOPIC = re.compile(r"^v2\.conversations\.([^.\s]+)\.transcription$")
_QUEUE_TOPIC = re.compile(r"^v2\.routing\.queues\.([^.\s]+)\.conversations$")


def transcription_topic(conversation_id: str) -> str:
    return f"v2.conversations.{conversation_id}.transcription"


def queue_conversations_topic(queue_id: str) -> str:
    return f"v2.routing.queues.{queue_id}.conversations"


def transcription_conversation_id(topic: str) -> str | None:
    """The conversation id of a transcription topic, or None for any other topic."""
    match = _TRANSCRIPTION_TOPIC.match(topic)
    return match.group(1) if match else None


def queue_id_of(topic: str) -> str | None:
    """The queue id of a queue conversations topic, or None for any other topic."""
    match = _QUEUE_TOPIC.match(topic)
    return match.group(1) if match else None


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


# --- the socket envelope ---------------------------------------------------------------


class NotificationEnvelope(_Wire):
    topic_name: StrictStr = Field(alias="topicName", min_length=1)
    version: StrictStr | StrictInt | None = None
    event_body: dict[str, Any] | None = Field(default=None, alias="eventBody")
    metadata: dict[str, Any] | None = None

    @property
    def correlation_id(self) -> str | None:
        value = (self.metadata or {}).get("CorrelationId")
        return value if isinstance(value, str) else None


class ChannelMetadata(_Wire):
    """`channel.metadata`: `{"message": "WebSocket Heartbeat"}` or `{"message": "pong"}`."""

    message: StrictStr | None = None


class SystemMessage(_Wire):
    """`SystemMessageSystemMessage`, the body of `v2.system.*` topics."""

    channel_id: StrictStr | None = Field(default=None, alias="channelId")
    system_topic_type: StrictStr | None = Field(default=None, alias="systemTopicType")
    correlation_id: StrictStr | None = Field(default=None, alias="correlationId")
    organization_id: StrictStr | None = Field(default=None, alias="organizationId")
    user_id: StrictStr | None = Field(default=None, alias="userId")
    oauth_client_id: StrictStr | None = Field(default=None, alias="oauthClientId")
    reason: StrictStr | None = None
    message: StrictStr | None = None
    data: dict[str, Any] | None = None


# --- v2.conversations.{id}.transcription -----------------------------------------------


class TranscriptChannel(StrEnum):
    UNKNOWN = "UNKNOWN"
    INTERNAL = "INTERNAL"  # the agent side
    EXTERNAL = "EXTERNAL"  # the customer side
    BOTH = "BOTH"


class SessionStatus(StrEnum):
    UNKNOWN = "UNKNOWN"
    SESSION_ONGOING = "SESSION_ONGOING"
    SESSION_ENDED = "SESSION_ENDED"


class TranscriptWord(_Wire):
    confidence: StrictFloat | None = None
    start_time_ms: StrictInt | None = Field(default=None, alias="startTimeMs")
    offset_ms: StrictInt | None = Field(default=None, alias="offsetMs")
    duration_ms: StrictInt | None = Field(default=None, alias="durationMs")
    word: StrictStr | None = None


class TranscriptAlternative(_Wire):
    confidence: StrictFloat | None = Field(default=None, ge=0, le=1)
    offset_ms: StrictInt | None = Field(default=None, alias="offsetMs", ge=0)
    duration_ms: StrictInt | None = Field(default=None, alias="durationMs", ge=0)
    transcript: StrictStr | None = None
    words: list[TranscriptWord] | None = None
    decorated_transcript: StrictStr | None = Field(default=None, alias="decoratedTranscript")
    decorated_words: list[TranscriptWord] | None = Field(default=None, alias="decoratedWords")


class AudioQuality(_Wire):
    """`audioQuality: {"score": 0..1}`, an optional figure some engines attach to a result.

    Not part of the published `TranscriptResult` schema: it is read only when present, and
    the gate applies only then (`assist.core.gates.poor_audio`).
    """

    score: StrictFloat | None = Field(default=None, ge=0, le=1)


class TranscriptResult(_Wire):
    utterance_id: StrictStr | None = Field(default=None, alias="utteranceId")
    is_final: StrictBool | None = Field(default=None, alias="isFinal")
    channel: TranscriptChannel | None = None
    alternatives: list[TranscriptAlternative] | None = None
    agent_assistant_id: StrictStr | None = Field(default=None, alias="agentAssistantId")
    engine_provider: StrictStr | None = Field(default=None, alias="engineProvider")
    engine_id: StrictStr | None = Field(default=None, alias="engineId")
    engine_name: StrictStr | None = Field(default=None, alias="engineName")
    dialect: StrictStr | None = None
    speech_text_analytics_program_id: StrictStr | None = Field(
        default=None, alias="speechTextAnalyticsProgramId"
    )
    agent_assist_enabled: StrictBool | None = Field(default=None, alias="agentAssistEnabled")
    voice_transcription_enabled: StrictBool | None = Field(
        default=None, alias="voiceTranscriptionEnabled"
    )
    # Not in the published schema (optional extension; see AudioQuality).
    audio_quality: AudioQuality | None = Field(default=None, alias="audioQuality")

    @property
    def best(self) -> TranscriptAlternative | None:
        """The alternative Genesys ranks first (`alternatives[0]`), if any."""
        return self.alternatives[0] if self.alternatives else None


class TranscriptionStatus(_Wire):
    offset_ms: StrictInt | None = Field(default=None, alias="offsetMs")
    status: SessionStatus | None = None


class TranscriptionMessage(_Wire):
    """`TranscriptionTopicTranscriptionMessage`, the eventBody of the transcription topic."""

    event_time: datetime | None = Field(default=None, alias="eventTime")
    organization_id: StrictStr | None = Field(default=None, alias="organizationId")
    conversation_id: StrictStr | None = Field(default=None, alias="conversationId")
    communication_id: StrictStr | None = Field(default=None, alias="communicationId")
    session_start_time_ms: StrictInt | None = Field(default=None, alias="sessionStartTimeMs")
    transcription_start_time_ms: StrictInt | None = Field(
        default=None, alias="transcriptionStartTimeMs"
    )
    transcripts: list[TranscriptResult] = Field(default_factory=list)
    status: TranscriptionStatus | None = None
    speech_text_analytics_program_id: StrictStr | None = Field(
        default=None, alias="speechTextAnalyticsProgramId"
    )

    @property
    def session_ended(self) -> bool:
        return self.status is not None and self.status.status is SessionStatus.SESSION_ENDED


# --- v2.routing.queues.{id}.conversations ----------------------------------------------

#: Media lists of a `QueueConversationEventTopicParticipant`; `calls` is voice.
MEDIA_FIELDS = (
    "calls",
    "callbacks",
    "chats",
    "cobrowsesessions",
    "emails",
    "messages",
    "screenshares",
    "socialExpressions",
    "videos",
)


class QueueConversationParticipant(_Wire):
    id: StrictStr | None = None
    user_id: StrictStr | None = Field(default=None, alias="userId")
    queue_id: StrictStr | None = Field(default=None, alias="queueId")
    purpose: StrictStr | None = None
    connected_time: datetime | None = Field(default=None, alias="connectedTime")
    end_time: datetime | None = Field(default=None, alias="endTime")
    calls: list[dict[str, Any]] | None = None
    callbacks: list[dict[str, Any]] | None = None
    chats: list[dict[str, Any]] | None = None
    cobrowsesessions: list[dict[str, Any]] | None = None
    emails: list[dict[str, Any]] | None = None
    messages: list[dict[str, Any]] | None = None
    screenshares: list[dict[str, Any]] | None = None
    social_expressions: list[dict[str, Any]] | None = Field(default=None, alias="socialExpressions")
    videos: list[dict[str, Any]] | None = None

    def media(self) -> dict[str, int]:
        """Media kind (JSON name) -> number of sessions, for the media lists present."""
        present: dict[str, int] = {}
        for name in MEDIA_FIELDS:
            attribute = "social_expressions" if name == "socialExpressions" else name
            value = getattr(self, attribute)
            if value is not None:
                present[name] = len(value)
        return present


class QueueConversationEvent(_Wire):
    """`QueueConversationEventTopicConversation` (the fields call discovery needs)."""

    id: StrictStr | None = None
    participants: list[QueueConversationParticipant] = Field(default_factory=list)

    @property
    def is_voice(self) -> bool:
        """True when a participant has a call; also when no participant lists any media.

        The real payload always lists media; a payload without any cannot be told apart, and
        subscribing to the transcription of a conversation that has none costs one topic.
        """
        media = [p.media() for p in self.participants]
        if any(m.get("calls") for m in media):
            return True
        return not any(m for m in media)

    @property
    def ended(self) -> bool:
        """Every participant has left (an `endTime` each)."""
        return bool(self.participants) and all(p.end_time for p in self.participants)


# --- REST replies ----------------------------------------------------------------------


class Channel(_Wire):
    """`POST /api/v2/notifications/channels` -> `{connectUri, id, expires}`."""

    id: StrictStr = Field(min_length=1)
    connect_uri: StrictStr = Field(alias="connectUri", min_length=1)
    expires: datetime | None = None


class ChannelTopic(_Wire):
    id: StrictStr
    state: StrictStr | None = None  # Permitted | Rejected
    rejection_reason: StrictStr | None = Field(default=None, alias="rejectionReason")
    missing_permissions: list[StrictStr] | None = Field(default=None, alias="missingPermissions")


class ChannelTopicListing(_Wire):
    entities: list[ChannelTopic] = Field(default_factory=list)

    def rejected(self) -> list[ChannelTopic]:
        return [topic for topic in self.entities if topic.state == "Rejected"]
