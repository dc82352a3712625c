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
3).

A script also lists Agent Copilot `insights`: each follows one utterance (`after_utterance`,
0-based) by `delay_ms` after its final message, has a `kind` (the suffix of its topic
`v2.conversations.{id}.suggestions.<kind>`) and that kind's content. `plan_insights` and
`suggestion_event` turn them into suggestion eventBodies of the real shape (section 4b):
`eventTime`, `conversationId`, `suggestionId`, `state`, `triggerType` (Fallback for a
knowledge search, Intent otherwise, with `activeIntent`), `engagementType`, `context` (whose
`utteranceId` is that of the utterance's transcription messages) and one type-specific field
(`SUGGESTION_FIELDS`).

The module also builds queue conversation events, the follow-up event of an engaged
suggestion, and the bad frames of the `malformed_frames_next`, `oversized_frame_next` and
Copilot faults. Nothing here does I/O except `load_scripts`.
"""

from __future__ import annotations

import base64
import json
import math
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from emulator.knowledge import EXTERNAL_URL_BASE, variation_id, version_id
from emulator.notifications import (
    ORGANIZATION_ID,
    SuggestionKind,
    envelope,
    iso,
    suggestion_topic,
    transcription_topic,
)

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
#: Default script time between an utterance's final message and an insight it triggers.
DEFAULT_INSIGHT_DELAY_MS = 300
MAX_INSIGHT_DELAY_MS = 60_000
#: The Copilot assistant of every emulated queue (`context.assistantId`).
ASSISTANT_ID = "5e1d2c3b-4a59-4687-9a0b-c1d2e3f4a5b6"
#: Intent ids are stable per intent name (uuid5 under this namespace).
INTENT_NAMESPACE = uuid.UUID("0c6f2a4e-8b1d-4e3a-9f5c-7d2b1a0e9c48")

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


# --- scripted Agent Copilot insights ---------------------------------------------------------


class ScriptIntent(BaseModel):
    """The intent Copilot recognised (`activeIntent` of intent-triggered suggestions)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    confidence: float = Field(ge=0.0, le=1.0)


class _Insight(BaseModel):
    """What every scripted insight has: where it comes in the call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: 0-based index into the script's utterances; the insight follows that utterance's
    #: final transcription message (and carries its `utteranceId`).
    after_utterance: int = Field(ge=0)
    #: Script time between that final message and the insight (scaled by `speed`).
    delay_ms: int = Field(default=DEFAULT_INSIGHT_DELAY_MS, ge=0, le=MAX_INSIGHT_DELAY_MS)


class _IntentTriggered(_Insight):
    #: The intent whose rule produced the suggestion (`triggerType` "Intent").
    intent: ScriptIntent


class _KnowledgeContent(BaseModel):
    """A document of the emulator's knowledge base (`emulator/data/knowledge.json`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    knowledge_base_id: str = Field(min_length=1)
    document_id: str = Field(min_length=1)
    title: str = Field(min_length=1)
    snippets: tuple[str, ...] = Field(min_length=1)
    #: The highlighted answer (`knowledgeAnswer`); must be a part of the first snippet.
    answer: str = Field(min_length=1)

    @model_validator(mode="after")
    def _answer_in_snippet(self) -> Self:
        if self.answer not in self.snippets[0]:
            raise ValueError("answer must be a part of the first snippet")
        return self


class KnowledgeSearchInsight(_KnowledgeContent, _Insight):
    """An automatic knowledge search (`triggerType` "Fallback": no intent matched)."""

    kind: Literal["knowledge.search"]
    confidence: float = Field(ge=0.0, le=1.0)


class KnowledgeArticleInsight(_KnowledgeContent, _IntentTriggered):
    kind: Literal["knowledge.article"]


class ResponseInsight(_IntentTriggered):
    """A canned response (Genesys sends only its ids; the text lives in response management)."""

    kind: Literal["response"]
    response_id: str = Field(min_length=1)
    library_id: str = Field(min_length=1)


class ScriptPageInsight(_IntentTriggered):
    """An agent script page to open."""

    kind: Literal["script"]
    script_id: str = Field(min_length=1)
    page_id: str = Field(min_length=1)
    data: dict[str, str] = Field(default_factory=dict)


class IntentInsight(_IntentTriggered):
    """The recognised intent itself (`conversationIntents`); its content is `intent`."""

    kind: Literal["intent"]


class ThirdPartyInsight(_IntentTriggered):
    kind: Literal["thirdpartyaction"]
    text: str = Field(min_length=1)


ScriptInsight = Annotated[
    KnowledgeSearchInsight
    | KnowledgeArticleInsight
    | ResponseInsight
    | ScriptPageInsight
    | IntentInsight
    | ThirdPartyInsight,
    Field(discriminator="kind"),
]


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
    #: Agent Copilot suggestions played during the call, in script order.
    insights: tuple[ScriptInsight, ...] = ()

    @model_validator(mode="after")
    def _in_order(self) -> Script:
        offsets = [u.offset_ms for u in self.utterances]
        if offsets != sorted(offsets):
            raise ValueError("utterances must be listed in the order they start (offset_ms)")
        for index, insight in enumerate(self.insights):
            if insight.after_utterance >= len(self.utterances):
                raise ValueError(
                    f"insights[{index}].after_utterance is {insight.after_utterance}, but the "
                    f"script has {len(self.utterances)} utterances (0-based)"
                )
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
    #: The `utteranceId` of each script utterance in this replay (its partials and final
    #: share it, and so do the insights it triggers).
    utterance_ids: tuple[str, ...] = ()

    @classmethod
    def new(cls, script: Script, conversation_id: str, queue_id: str) -> Call:
        return cls(
            conversation_id=conversation_id,
            communication_id=str(uuid.uuid4()),
            queue_id=queue_id,
            customer_participant_id=str(uuid.uuid4()),
            agent_participant_id=str(uuid.uuid4()),
            agent_user_id=script.agent.user_id,
            utterance_ids=tuple(str(uuid.uuid4()) for _ in script.utterances),
        )

    def utterance_id(self, index: int) -> str:
        """The `utteranceId` of the `index`-th utterance (a fresh one if the call has none)."""
        if index < len(self.utterance_ids):
            return self.utterance_ids[index]
        return str(uuid.uuid4())


@dataclass(frozen=True)
class PlannedMessage:
    """A transcription eventBody due `at_ms` after the transcription start.

    `eventTime` is filled in when it is sent (`body_at`).
    """

    at_ms: int
    body: Mapping[str, Any]
    kind: Literal["status", "partial", "final", "end"]
    #: Index of the script utterance a partial or final transcribes.
    utterance: int | None = None

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
        at_ms: int,
        kind: Literal["status", "partial", "final", "end"],
        transcripts: list[Any],
        utterance: int | None = None,
    ) -> None:
        status = "SESSION_ENDED" if kind == "end" else "SESSION_ONGOING"
        body = {
            **header,
            "transcripts": transcripts,
            "status": {"offsetMs": at_ms, "status": status},
        }
        timeline.append((at_ms, len(timeline), PlannedMessage(at_ms, body, kind, utterance)))

    for number, utterance in enumerate(script.utterances):
        utterance_id = call.utterance_id(number)
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
                number,
            )
        alternative = {
            "confidence": utterance.confidence,
            "offsetMs": utterance.offset_ms,
            "durationMs": utterance.duration_ms,
            "transcript": utterance.text,
            "words": _words(utterance, start_ms),
        }
        add(
            final_at_ms(utterance),
            "final",
            [_transcript(utterance_id, True, utterance.speaker, alternative, dialect)],
            number,
        )

    end_ms = script.end_ms + FINAL_LATENCY_MS + END_AFTER_MS
    for at_ms in range(0, end_ms, STATUS_INTERVAL_MS):
        add(at_ms, "status", [])
    add(end_ms, "end", [])
    timeline.sort(key=lambda item: (item[0], item[1]))
    return [message for _, _, message in timeline]


def final_at_ms(utterance: ScriptUtterance) -> int:
    """Script time at which the final transcription message of `utterance` is due."""
    return utterance.end_ms + FINAL_LATENCY_MS


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


# --- Agent Copilot suggestion events ---------------------------------------------------------

#: The one type-specific field of each suggestion topic's eventBody.
SUGGESTION_FIELDS: Mapping[SuggestionKind, str] = {
    "knowledge.search": "knowledgeSearch",
    "knowledge.article": "knowledgeArticle",
    "response": "cannedResponse",
    "script": "script",
    "intent": "conversationIntents",
    "thirdpartyaction": "thirdPartySuggestion",
}
PARTICIPANT_TYPES: Mapping[Speaker, str] = {"customer": "CUSTOMER", "agent": "AGENT"}
#: The suggestion `state` after an engagement of each `engagementType`.
ENGAGED_STATES: Mapping[str, str] = {
    "Copied": "Accepted",
    "Opened": "Accepted",
    "Dismissed": "Dismissed",
    "Feedback": "Rated",
}


@dataclass(frozen=True)
class PlannedInsight:
    """A scripted insight of one replay, due `at_ms` after the transcription start."""

    at_ms: int
    #: Position in `Script.insights`.
    index: int
    insight: ScriptInsight
    #: The `utteranceId` of the utterance it follows (that of its transcription messages).
    utterance_id: str
    participant_type: str
    language: str

    @property
    def kind(self) -> SuggestionKind:
        return self.insight.kind


def plan_insights(script: Script, call: Call) -> list[PlannedInsight]:
    """The scripted insights of one replay in the order they are due.

    Each is due `delay_ms` after the final transcription message of its utterance.
    """
    planned: list[PlannedInsight] = []
    for index, insight in enumerate(script.insights):
        utterance = script.utterances[insight.after_utterance]
        planned.append(
            PlannedInsight(
                at_ms=final_at_ms(utterance) + insight.delay_ms,
                index=index,
                insight=insight,
                utterance_id=call.utterance_id(insight.after_utterance),
                participant_type=PARTICIPANT_TYPES[utterance.speaker],
                language=utterance.dialect or script.language,
            )
        )
    planned.sort(key=lambda p: (p.at_ms, p.index))
    return planned


def intent_id(name: str) -> str:
    """The (stable) id of the intent called `name`."""
    return str(uuid.uuid5(INTENT_NAMESPACE, name))


def suggestion_event(
    planned: PlannedInsight, call: Call, *, suggestion_id: str, now_s: float, search_id: str
) -> dict[str, Any]:
    """The eventBody of a suggestion topic (`state` "Suggested") for one planned insight.

    `search_id` is the `searchId` of a knowledge search suggestion (ignored otherwise).
    """
    insight = planned.insight
    body: dict[str, Any] = {
        "eventTime": iso(now_s),
        "conversationId": call.conversation_id,
        "suggestionId": suggestion_id,
        "state": "Suggested",
        "triggerType": "Intent" if isinstance(insight, _IntentTriggered) else "Fallback",
        "engagementType": "Unknown",
        "context": {
            "queueId": call.queue_id,
            "mediaType": "VOICE",
            "userId": call.agent_user_id,
            "assistantId": ASSISTANT_ID,
            "utteranceId": planned.utterance_id,
            "language": planned.language,
            "participantType": planned.participant_type,
        },
    }
    if isinstance(insight, _IntentTriggered):
        body["activeIntent"] = {
            "intent": insight.intent.name,
            "intentId": intent_id(insight.intent.name),
            "confidence": insight.intent.confidence,
        }
    body[SUGGESTION_FIELDS[insight.kind]] = _suggestion_content(insight, search_id)
    return body


def _suggestion_content(insight: ScriptInsight, search_id: str) -> dict[str, Any]:
    """The type-specific field of a suggestion event."""
    if isinstance(insight, KnowledgeSearchInsight | KnowledgeArticleInsight):
        start = insight.snippets[0].index(insight.answer)
        document: dict[str, Any] = {
            "title": insight.title,
            "uri": f"{EXTERNAL_URL_BASE}/{insight.document_id}",
            "snippets": list(insight.snippets),
        }
        if isinstance(insight, KnowledgeSearchInsight):
            document["confidence"] = insight.confidence
        document["metadata"] = {}
        if isinstance(insight, KnowledgeSearchInsight):
            document["searchId"] = search_id
        document.update(
            {
                "documentId": insight.document_id,
                "versionId": version_id(insight.knowledge_base_id, insight.document_id),
                "variationIds": [variation_id(insight.knowledge_base_id, insight.document_id)],
                # `endIndex` is exclusive: snippets[0][startIndex:endIndex] == answer.
                "knowledgeAnswer": {
                    "answer": insight.answer,
                    "startIndex": start,
                    "endIndex": start + len(insight.answer),
                },
            }
        )
        return document
    if isinstance(insight, ResponseInsight):
        return {"responseId": insight.response_id, "libraryId": insight.library_id}
    if isinstance(insight, ScriptPageInsight):
        return {
            "scriptId": insight.script_id,
            "pageId": insight.page_id,
            "data": dict(insight.data),
        }
    if isinstance(insight, IntentInsight):
        name = insight.intent.name
        return {
            name: {
                "intentName": name,
                "intentId": intent_id(name),
                "confidence": insight.intent.confidence,
            }
        }
    return {"text": insight.text}


def engaged_event(
    body: Mapping[str, Any], engagement_type: str, rating: str | None, now_s: float
) -> dict[str, Any]:
    """The follow-up event of a suggestion after an engagement (same `suggestionId`).

    `state` becomes Accepted (Copied, Opened), Dismissed or Rated (Feedback, with `feedback`).
    """
    engaged = {
        **body,
        "eventTime": iso(now_s),
        "state": ENGAGED_STATES[engagement_type],
        "engagementType": engagement_type,
    }
    engaged.pop("feedback", None)
    if engagement_type == "Feedback" and rating is not None:
        engaged["feedback"] = {"rating": rating}
    return engaged


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
    """The `index`-th malformed frame; kinds rotate through `MALFORMED_KINDS`.

    invalid_json: a truncated envelope; binary: a binary frame that is neither the UTF-8 nor
    the base64 of an envelope; wrong_types: fields of the wrong JSON types; missing_ids: no
    `conversationId` and no `utteranceId`.
    """
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
        # Binary frames may legitimately carry an envelope as UTF-8 or base64 (see
        # `binary_insight_frame`), so this one is neither: the envelope behind two bytes that
        # are not UTF-8 and not base64. Its conversation id stays readable for the consumer.
        return b"\xff\xfe" + envelope(topic, good).encode()
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


# --- bad suggestion events (Copilot faults) ----------------------------------------------------

#: The defects of the `copilot_bad_insights_next` fault, in the order they cycle.
BAD_INSIGHT_KINDS = (
    "confidence_above_one",
    "confidence_negative",
    "missing_suggestion_id",
    "missing_conversation_id",
    "unknown_topic",
)
#: The topic suffix of the `unknown_topic` bad event (no such suggestion topic exists).
BOGUS_SUGGESTION_KIND = "bogus"

_BAD_SEARCH = KnowledgeSearchInsight(
    kind="knowledge.search",
    after_utterance=0,
    knowledge_base_id="kb-billing",
    document_id="kb-art-bad",
    title="This suggestion is malformed on purpose",
    snippets=("An injected suggestion event that a consumer must refuse.",),
    answer="must refuse",
    confidence=0.5,
)


def bad_insight_frame(index: int, call: Call, utterance_id: str, now_s: float) -> str:
    """The `index`-th bad suggestion event; defects rotate through `BAD_INSIGHT_KINDS`.

    Each is a knowledge search suggestion with one defect: a confidence of 1.7 or -0.2, no
    `suggestionId`, no `conversationId`, or the topic name
    `v2.conversations.{id}.suggestions.bogus`. All go to the knowledge search subscribers.
    """
    defect = BAD_INSIGHT_KINDS[index % len(BAD_INSIGHT_KINDS)]
    planned = PlannedInsight(0, -1, _BAD_SEARCH, utterance_id, "CUSTOMER", "en-US")
    body = suggestion_event(
        planned, call, suggestion_id=str(uuid.uuid4()), now_s=now_s, search_id=str(uuid.uuid4())
    )
    topic = suggestion_topic(call.conversation_id, "knowledge.search")
    if defect == "confidence_above_one":
        body["knowledgeSearch"]["confidence"] = 1.7
    elif defect == "confidence_negative":
        body["knowledgeSearch"]["confidence"] = -0.2
    elif defect == "missing_suggestion_id":
        del body["suggestionId"]
    elif defect == "missing_conversation_id":
        del body["conversationId"]
    else:
        topic = f"v2.conversations.{call.conversation_id}.suggestions.{BOGUS_SUGGESTION_KIND}"
    return envelope(topic, body)


def binary_insight_frame(frame: str, index: int) -> bytes:
    """A suggestion frame as a BINARY message (`copilot_binary_next`): the UTF-8 bytes of
    the envelope for even `index`, the base64 of those bytes for odd `index`."""
    raw = frame.encode("utf-8")
    return raw if index % 2 == 0 else base64.b64encode(raw)


def garbage_frame() -> bytes:
    """Random bytes that are neither JSON nor base64 of anything (0xFF is neither UTF-8 nor
    in the base64 alphabet)."""
    return b"\xff\x00" + os.urandom(30)
