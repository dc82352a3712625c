"""Notification wire models: real payloads validate, unknown fields pass, wrong types do not."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from assist.adapters.genesys.schemas import (
    Channel,
    ChannelTopicListing,
    NotificationEnvelope,
    QueueConversationEvent,
    SessionStatus,
    SystemMessage,
    TranscriptChannel,
    TranscriptionMessage,
    queue_conversations_topic,
    queue_id_of,
    transcription_conversation_id,
    transcription_topic,
)

CONVERSATION_ID = "0b9f8e2a-4c1d-4e5f-9a6b-7c8d9e0f1a2b"

# A transcription eventBody as the SDK's TranscriptionTopicTranscriptionMessage names it.
TRANSCRIPTION: dict[str, Any] = {
    "eventTime": "2026-11-20T10:15:30.123Z",
    "organizationId": "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
    "conversationId": CONVERSATION_ID,
    "communicationId": "c0ffee00-1111-2222-3333-444455556666",
    "sessionStartTimeMs": 1_763_633_700_000,
    "transcriptionStartTimeMs": 1_763_633_700_000,
    "transcripts": [
        {
            "utteranceId": "u-1",
            "isFinal": True,
            "channel": "EXTERNAL",
            "alternatives": [
                {
                    "confidence": 0.91,
                    "offsetMs": 5200,
                    "durationMs": 7000,
                    "transcript": "I've been charged twice",
                    "words": [
                        {
                            "confidence": 0.9,
                            "startTimeMs": 1_763_633_705_200,
                            "offsetMs": 5200,
                            "durationMs": 300,
                            "word": "I've",
                        }
                    ],
                    "decoratedTranscript": "I've been charged twice.",
                }
            ],
            "dialect": "en-US",
            "engineProvider": "GENESYS",
            "engineId": "stt",
            "engineName": "Genesys STT",
            "agentAssistEnabled": True,
            "voiceTranscriptionEnabled": True,
        }
    ],
    "status": {"offsetMs": 12_600, "status": "SESSION_ONGOING"},
    "speechTextAnalyticsProgramId": "p-1",
}


def body(**changes: Any) -> dict[str, Any]:
    value = copy.deepcopy(TRANSCRIPTION)
    value.update(changes)
    return value


def transcript(**changes: Any) -> dict[str, Any]:
    value = body()
    value["transcripts"][0].update(changes)
    return value


def alternative(**changes: Any) -> dict[str, Any]:
    value = body()
    value["transcripts"][0]["alternatives"][0].update(changes)
    return value


# --- the envelope --------------------------------------------------------------------------


def test_an_envelope_parses_with_its_exact_json_names() -> None:
    envelope = NotificationEnvelope.model_validate(
        {
            "topicName": transcription_topic(CONVERSATION_ID),
            "version": "2",
            "eventBody": TRANSCRIPTION,
            "metadata": {"CorrelationId": "corr-1"},
            "somethingNew": {"x": 1},
        }
    )
    assert envelope.topic_name == f"v2.conversations.{CONVERSATION_ID}.transcription"
    assert envelope.version == "2"
    assert envelope.correlation_id == "corr-1"
    assert envelope.event_body is not None


@pytest.mark.parametrize(
    "data",
    [
        {"version": "2", "eventBody": {}},  # no topic
        {"topicName": "", "eventBody": {}},
        {"topicName": 42, "eventBody": {}},
        {"topicName": "channel.metadata", "eventBody": "heartbeat"},
        {"topicName": "channel.metadata", "eventBody": [1, 2]},
    ],
)
def test_a_broken_envelope_is_rejected(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        NotificationEnvelope.model_validate(data)


def test_topic_names_round_trip() -> None:
    assert transcription_conversation_id(transcription_topic("abc-1")) == "abc-1"
    assert queue_id_of(queue_conversations_topic("q-1")) == "q-1"
    assert transcription_conversation_id(queue_conversations_topic("q-1")) is None
    assert queue_id_of("v2.conversations.x.transcription") is None
    assert transcription_conversation_id("v2.conversations.a.b.transcription") is None


# --- transcription -------------------------------------------------------------------------


def test_a_transcription_message_parses() -> None:
    message = TranscriptionMessage.model_validate(TRANSCRIPTION)
    assert message.conversation_id == CONVERSATION_ID
    assert message.session_start_time_ms == 1_763_633_700_000
    assert message.event_time is not None and message.event_time.year == 2026
    result = message.transcripts[0]
    assert result.utterance_id == "u-1"
    assert result.is_final is True
    assert result.channel is TranscriptChannel.EXTERNAL
    assert result.dialect == "en-US"
    best = result.best
    assert best is not None
    assert (best.confidence, best.offset_ms, best.duration_ms) == (0.91, 5200, 7000)
    assert best.transcript == "I've been charged twice"
    assert message.status is not None and message.status.status is SessionStatus.SESSION_ONGOING
    assert not message.session_ended


def test_status_only_and_session_ended_messages_parse() -> None:
    keep_alive = TranscriptionMessage.model_validate(body(transcripts=[]))
    assert keep_alive.transcripts == []
    ended = TranscriptionMessage.model_validate(
        body(transcripts=[], status={"offsetMs": 60_000, "status": "SESSION_ENDED"})
    )
    assert ended.session_ended


def test_every_field_is_optional_as_in_the_sdk() -> None:
    message = TranscriptionMessage.model_validate({})
    assert message.conversation_id is None and message.transcripts == []
    result = TranscriptionMessage.model_validate({"transcripts": [{}]}).transcripts[0]
    assert result.utterance_id is None and result.best is None


def test_unknown_fields_are_tolerated_at_every_level() -> None:
    data = body(newTopLevel=1)
    data["transcripts"][0]["newResultField"] = {"a": 1}
    data["transcripts"][0]["alternatives"][0]["newAlternativeField"] = [1]
    data["status"]["newStatusField"] = True
    message = TranscriptionMessage.model_validate(data)
    assert message.transcripts[0].utterance_id == "u-1"


def test_the_optional_audio_quality_score_is_read_when_present() -> None:
    message = TranscriptionMessage.model_validate(transcript(audioQuality={"score": 0.3}))
    quality = message.transcripts[0].audio_quality
    assert quality is not None and quality.score == 0.3
    assert TranscriptionMessage.model_validate(TRANSCRIPTION).transcripts[0].audio_quality is None


def test_an_integer_confidence_is_a_number() -> None:
    message = TranscriptionMessage.model_validate(alternative(confidence=1))
    best = message.transcripts[0].best
    assert best is not None and best.confidence == 1.0


@pytest.mark.parametrize(
    "data",
    [
        transcript(isFinal="yes"),
        transcript(isFinal=1),
        transcript(utteranceId=7),
        transcript(channel="CUSTOMER"),
        transcript(dialect=["en-US"]),
        transcript(alternatives={"transcript": 42, "confidence": "high"}),
        alternative(confidence="high"),
        alternative(confidence=1.5),
        alternative(offsetMs="5200"),
        alternative(offsetMs=5200.5),
        alternative(durationMs=-1),
        alternative(transcript=42),
        body(sessionStartTimeMs="yesterday"),
        body(conversationId=123),
        body(transcripts={"utteranceId": "u-1"}),
        body(status={"status": "FINISHED"}),
        body(eventTime="not a time"),
    ],
    ids=lambda data: next(iter(data)) if isinstance(data, dict) else str(data),
)
def test_wrong_types_are_rejected_never_coerced(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TranscriptionMessage.model_validate(data)


# --- queue conversations -------------------------------------------------------------------


def queue_event(**participant_changes: Any) -> dict[str, Any]:
    customer: dict[str, Any] = {
        "id": "p-1",
        "purpose": "customer",
        "queueId": "q-1",
        "connectedTime": "2026-11-20T10:15:00.000Z",
    }
    agent: dict[str, Any] = {
        "id": "p-2",
        "purpose": "agent",
        "userId": "user-1",
        "queueId": "q-1",
        "connectedTime": "2026-11-20T10:15:02.000Z",
    }
    customer.update(participant_changes)
    agent.update(participant_changes)
    return {"id": CONVERSATION_ID, "participants": [customer, agent], "recordingState": "none"}


def test_a_queue_conversation_event_parses() -> None:
    event = QueueConversationEvent.model_validate(queue_event())
    assert event.id == CONVERSATION_ID
    agent = event.participants[1]
    assert (agent.user_id, agent.queue_id, agent.purpose) == ("user-1", "q-1", "agent")
    assert agent.connected_time is not None and agent.end_time is None
    assert event.is_voice and not event.ended


def test_a_conversation_ends_when_every_participant_has_left() -> None:
    ended = QueueConversationEvent.model_validate(queue_event(endTime="2026-11-20T10:20:00.000Z"))
    assert ended.ended
    one_left = queue_event()
    one_left["participants"][0]["endTime"] = "2026-11-20T10:20:00.000Z"
    assert not QueueConversationEvent.model_validate(one_left).ended
    assert not QueueConversationEvent.model_validate({"id": "x", "participants": []}).ended


def test_voice_is_told_from_the_media_lists() -> None:
    assert QueueConversationEvent.model_validate(queue_event(calls=[{"id": "call-1"}])).is_voice
    chat = QueueConversationEvent.model_validate(queue_event(chats=[{"id": "chat-1"}]))
    assert not chat.is_voice


def test_queue_event_wrong_types_are_rejected() -> None:
    with pytest.raises(ValidationError):
        QueueConversationEvent.model_validate({"id": 5, "participants": []})
    with pytest.raises(ValidationError):
        QueueConversationEvent.model_validate(queue_event(endTime="soon"))
    with pytest.raises(ValidationError):
        QueueConversationEvent.model_validate({"id": "x", "participants": "all"})


# --- system messages and REST replies ------------------------------------------------------


def test_a_system_message_parses() -> None:
    message = SystemMessage.model_validate(
        {
            "channelId": "ch-1",
            "systemTopicType": "token_revoked",
            "reason": "user_tokens_revoked",
            "oauthClientId": "client",
            "extra": 1,
        }
    )
    assert message.channel_id == "ch-1"
    assert message.system_topic_type == "token_revoked"
    assert message.reason == "user_tokens_revoked"


def test_a_channel_parses_and_requires_its_id_and_uri() -> None:
    channel = Channel.model_validate(
        {
            "connectUri": "wss://streaming.mypurecloud.com/channels/ch-1",
            "id": "ch-1",
            "expires": "2026-11-21T10:15:00.000Z",
        }
    )
    assert channel.connect_uri.endswith("/channels/ch-1")
    assert channel.expires is not None and channel.expires.day == 21
    with pytest.raises(ValidationError):
        Channel.model_validate({"id": "ch-1"})


def test_rejected_topics_are_listed() -> None:
    listing = ChannelTopicListing.model_validate(
        {
            "entities": [
                {"id": "v2.routing.queues.q.conversations", "state": "Permitted"},
                {
                    "id": "v2.users.me.presence",
                    "state": "Rejected",
                    "rejectionReason": "topic not found",
                    "missingPermissions": ["presence:view"],
                },
            ]
        }
    )
    assert [topic.id for topic in listing.rejected()] == ["v2.users.me.presence"]
