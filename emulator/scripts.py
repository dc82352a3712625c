"""Scripted conversations and the notification messages a replay of one produces.

A script (`emulator/data/conversations/<name>.json`) is a queue, a language, an agent and a
list of utterances, each with a speaker (`customer` is the `EXTERNAL` channel, `agent` the
`INTERNAL` one), its text, the recogniser's confidence and where it sits in the call
(`offset_ms`, `duration_ms`). Utterances of the two speakers may overlap: that is how an
interruption is scripted.

`plan_transcription` turns a script into the `TranscriptionTopicTranscriptionMessage`
bodies of one replay, each with the script time at which it is due:

* a status-only message (no transcripts, `SESSION_ONGOING`) at the start and every
  `STATUS_INTERVAL_MS` while the session lasts, as Genesys sends them;
* per utterance one or more partials (`isFinal` false, the text growing word by word, shown
  while the speaker is still talking) and then the final (same `utteranceId`, with words);
* a last status-only message with `SESSION_ENDED`.

Field names are exactly those of the SDK models (`shared/reference/genesys-cloud.md`, section
3). The module also builds queue conversation events and the bad frames of the
`malformed_frames_next` and `oversized_frame_next` faults. Nothing here does I/O except
`load_scripts`.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from emulator.notifications import ORGANIZATION_ID, envelope, iso, transcription_topic

#: Status-only messages repeat this often while a session lasts (Genesys: every 5 minutes).
STATUS_INTERVAL_MS = 300_000
#: How long after the speech a partial is published (recogniser latency).
PARTIAL_LATENCY_MS = 150
#: How long after the end of an utterance its final is published.
FINAL_LATENCY_MS = 400
#: How long after the last final the `SESSION_ENDED` message comes.
END_AFTER_MS = 1200
#: Size of an oversized frame (the `oversized_frame_next` fault).
OVERSIZED_FRAME_BYTES = 100_000

ENGINE = {
    "engineProvider": "GENESYS",
    "engineId": "genesys-emulator-stt",
    "engineName": "Genesys Cloud emulator speech-to-text",
}

Speaker = Literal["customer", "agent"]
CHANNELS: Mapping[Speaker, str] = {"customer": "EXTERNAL", "agent": "INTERNAL"}


class ScriptUtterance(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    speaker: Speaker
    text: str = Field(min_length=1)
    offset_ms: int = Field(ge=0)
    duration_ms: int = Field(gt=0)
    confidence: float = Field(ge=0.0, le=1.0)
    #: Overrides the script's language for this utterance (e.g. a customer switching to es-ES).
    dialect: str | None = None
    #: Number of partials before the final; by default one per ~1.5 s of speech, 1 to 3.
    partials: int | None = Field(default=None, ge=1, le=10)

    @property
    def end_ms(self) -> int:
        return self.offset_ms + self.duration_ms


class ScriptAgent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: str = Field(min_length=1)
    name: str = ""


class Script(BaseModel):
    """One scripted conversation (the JSON file, validated)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9-]+$")
    title: str = ""
    queue_id: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    queue_name: str = ""
    language: str = "en-US"
    agent: ScriptAgent
    customer_name: str = ""
    utterances: tuple[ScriptUtterance, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _in_order(self) -> Script:
        offsets = [u.offset_ms for u in self.utterances]
        if offsets != sorted(offsets):
            raise ValueError("utterances must be listed in the order they start (offset_ms)")
        return self

    @property
    def end_ms(self) -> int:
        return max(u.end_ms for u in self.utterances)


@cache
def load_scripts() -> Mapping[str, Script]:
    """The bundled scripts by name (read once; raises on a broken file)."""
    folder = resources.files("emulator").joinpath("data/conversations")
    scripts: dict[str, Script] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".json"):
            continue
        script = Script.model_validate(json.loads(entry.read_text("utf-8")))
        if f"{script.name}.json" != entry.name:
            raise ValueError(f"{entry.name}: the script's name is {script.name!r}")
        scripts[script.name] = script
    return scripts


# --- one replay ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """The identities of one replayed conversation."""

    conversation_id: str
    communication_id: str
    queue_id: str
    customer_participant_id: str
    agent_participant_id: str
    agent_user_id: str

    @classmethod
    def new(cls, script: Script, conversation_id: str, queue_id: str) -> Call:
        return cls(
            conversation_id=conversation_id,
            communication_id=str(uuid.uuid4()),
            queue_id=queue_id,
            customer_participant_id=str(uuid.uuid4()),
            agent_participant_id=str(uuid.uuid4()),
            agent_user_id=script.agent.user_id,
        )


@dataclass(frozen=True)
class PlannedMessage:
    """A transcription eventBody due `at_ms` after the transcription start.

    `eventTime` is filled in when it is sent (`body_at`).
    """

    at_ms: int
    body: Mapping[str, Any]
    kind: Literal["status", "partial", "final", "end"]

    def body_at(self, now_s: float) -> dict[str, Any]:
        return {"eventTime": iso(now_s), **self.body}


def plan_transcription(script: Script, call: Call, start_ms: int) -> list[PlannedMessage]:
    """Every transcription message of one replay, in the order they are due.

    `start_ms` (epoch ms) is both `sessionStartTimeMs` and `transcriptionStartTimeMs`.
    """
    header = {
        "organizationId": ORGANIZATION_ID,
        "conversationId": call.conversation_id,
        "communicationId": call.communication_id,
        "sessionStartTimeMs": start_ms,
        "transcriptionStartTimeMs": start_ms,
    }
    # (due, tie-breaker, message): the tie-breaker keeps script order among equal times.
    timeline: list[tuple[int, int, PlannedMessage]] = []

    def add(
        at_ms: int, kind: Literal["status", "partial", "final", "end"], transcripts: list[Any]
    ) -> None:
        status = "SESSION_ENDED" if kind == "end" else "SESSION_ONGOING"
        body = {
            **header,
            "transcripts": transcripts,
            "status": {"offsetMs": at_ms, "status": status},
        }
        timeline.append((at_ms, len(timeline), PlannedMessage(at_ms, body, kind)))

    for utterance in script.utterances:
        utterance_id = str(uuid.uuid4())
        dialect = utterance.dialect or script.language
        words = utterance.text.split()
        cuts = _partial_cuts(len(words), _partial_count(utterance))
        for index, cut in enumerate(cuts, start=1):
            heard_ms = round(utterance.duration_ms * index / (len(cuts) + 1))
            alternative = {
                "confidence": round(utterance.confidence * 0.9, 2),
                "offsetMs": utterance.offset_ms,
                "durationMs": heard_ms,
                "transcript": " ".join(words[:cut]),
            }
            add(
                utterance.offset_ms + heard_ms + PARTIAL_LATENCY_MS,
                "partial",
                [_transcript(utterance_id, False, utterance.speaker, alternative, dialect)],
            )
        alternative = {
            "confidence": utterance.confidence,
            "offsetMs": utterance.offset_ms,
            "durationMs": utterance.duration_ms,
            "transcript": utterance.text,
            "words": _words(utterance, start_ms),
        }
        add(
            utterance.end_ms + FINAL_LATENCY_MS,
            "final",
            [_transcript(utterance_id, True, utterance.speaker, alternative, dialect)],
        )

    end_ms = script.end_ms + FINAL_LATENCY_MS + END_AFTER_MS
    for at_ms in range(0, end_ms, STATUS_INTERVAL_MS):
        add(at_ms, "status", [])
    add(end_ms, "end", [])
    timeline.sort(key=lambda item: (item[0], item[1]))
    return [message for _, _, message in timeline]


def _partial_count(utterance: ScriptUtterance) -> int:
    if utterance.partials is not None:
        return utterance.partials
    return min(3, max(1, utterance.duration_ms // 1500))


def _partial_cuts(word_count: int, wanted: int) -> list[int]:
    """How many words each partial shows: strictly growing, and short of the final."""
    if word_count <= 1:
        return [word_count]  # a one-word utterance still gets one (identical) partial
    count = min(wanted, word_count - 1)
    cuts: list[int] = []
    for index in range(1, count + 1):
        cut = max(1, round(word_count * index / (count + 1)))
        cuts.append(max(cut, cuts[-1] + 1) if cuts else cut)
    return cuts


def _transcript(
    utterance_id: str, is_final: bool, speaker: Speaker, alternative: dict[str, Any], dialect: str
) -> dict[str, Any]:
    """A `TranscriptResult`."""
    return {
        "utteranceId": utterance_id,
        "isFinal": is_final,
        "channel": CHANNELS[speaker],
        "alternatives": [alternative],
        "dialect": dialect,
        **ENGINE,
        "agentAssistEnabled": True,
        "voiceTranscriptionEnabled": True,
    }


def _words(utterance: ScriptUtterance, start_ms: int) -> list[dict[str, Any]]:
    """`TranscriptWord`s spread over the utterance in proportion to their length."""
    words = utterance.text.split()
    total = sum(len(word) + 1 for word in words)
    result: list[dict[str, Any]] = []
    position = 0
    for word in words:
        offset = utterance.offset_ms + math.floor(utterance.duration_ms * position / total)
        position += len(word) + 1
        end = utterance.offset_ms + math.floor(utterance.duration_ms * position / total)
        result.append(
            {
                "confidence": utterance.confidence,
                "startTimeMs": start_ms + offset,
                "offsetMs": offset,
                "durationMs": max(1, end - offset),
                "word": word,
            }
        )
    return result


# --- queue conversation events ---------------------------------------------------------------


def queue_conversation_event(
    call: Call, connected_s: float, ended_s: float | None
) -> dict[str, Any]:
    """A `QueueConversationEventTopicConversation` body: the customer and the agent."""
    customer: dict[str, Any] = {
        "id": call.customer_participant_id,
        "purpose": "customer",
        "queueId": call.queue_id,
        "connectedTime": iso(connected_s),
    }
    agent: dict[str, Any] = {
        "id": call.agent_participant_id,
        "purpose": "agent",
        "userId": call.agent_user_id,
        "queueId": call.queue_id,
        "connectedTime": iso(connected_s),
    }
    if ended_s is not None:
        customer["endTime"] = agent["endTime"] = iso(ended_s)
    return {"id": call.conversation_id, "participants": [customer, agent]}


# --- bad frames (faults) ---------------------------------------------------------------------

MALFORMED_KINDS = ("invalid_json", "binary", "wrong_types", "missing_ids")


def malformed_frame(index: int, call: Call, start_ms: int) -> str | bytes:
    """The `index`-th malformed frame; kinds rotate through `MALFORMED_KINDS`."""
    kind = MALFORMED_KINDS[index % len(MALFORMED_KINDS)]
    topic = transcription_topic(call.conversation_id)
    if kind == "invalid_json":
        return '{"topicName":"' + topic + '","version":"2","eventBody":{"transcripts":[{"utt'
    good: dict[str, Any] = {
        "organizationId": ORGANIZATION_ID,
        "conversationId": call.conversation_id,
        "communicationId": call.communication_id,
        "sessionStartTimeMs": start_ms,
        "transcriptionStartTimeMs": start_ms,
        "transcripts": [
            _transcript(
                str(uuid.uuid4()),
                True,
                "customer",
                {
                    "confidence": 0.9,
                    "offsetMs": 0,
                    "durationMs": 1000,
                    "transcript": "this frame is malformed on purpose",
                },
                "en-US",
            )
        ],
        "status": {"offsetMs": 0, "status": "SESSION_ONGOING"},
    }
    if kind == "binary":
        return envelope(topic, good).encode()
    transcript = good["transcripts"][0]
    if kind == "wrong_types":
        transcript["isFinal"] = "yes"
        transcript["alternatives"] = {"transcript": 42, "confidence": "high"}
        good["sessionStartTimeMs"] = "yesterday"
    else:  # missing_ids
        del good["conversationId"]
        del transcript["utteranceId"]
    return envelope(topic, good)


def oversized_frame(call: Call, start_ms: int) -> str:
    """A well-formed transcription final whose frame is about `OVERSIZED_FRAME_BYTES`."""
    filler = ("charged twice refund please " * (OVERSIZED_FRAME_BYTES // 28 + 1))[
        :OVERSIZED_FRAME_BYTES
    ].strip()
    body = {
        "eventTime": iso(start_ms / 1000),
        "organizationId": ORGANIZATION_ID,
        "conversationId": call.conversation_id,
        "communicationId": call.communication_id,
        "sessionStartTimeMs": start_ms,
        "transcriptionStartTimeMs": start_ms,
        "transcripts": [
            _transcript(
                str(uuid.uuid4()),
                True,
                "customer",
                {"confidence": 0.9, "offsetMs": 0, "durationMs": 1000, "transcript": filler},
                "en-US",
            )
        ],
        "status": {"offsetMs": 0, "status": "SESSION_ONGOING"},
    }
    return envelope(transcription_topic(call.conversation_id), body)
