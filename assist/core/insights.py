"""Genesys Agent Copilot insights (capability C5): parsing, filtering and scoring, without I/O.

An insight is one event of a `v2.conversations.{id}.suggestions.<kind>` notification topic
(shared/reference/genesys-cloud.md §4b). `parse_insight` validates the event body against the
real payload shape (unknown fields tolerated, wrong types and out-of-range values refused with
a reason); `InsightFilter` keeps or drops it; `InsightScoring` gives it a relevance, and
`snippet` a short text:

- relevance = confidence * the weight of its insight type (defaults: knowledge 1.0,
  compliance 0.9, sentiment 0.8, other 0.5);
- the snippet is at most 250 characters, cut at a word boundary.

Confidence: the knowledge search result's, else the active intent's (or the best detected
intent's), else the configured default: canned responses, scripts and third-party actions
carry no confidence of their own.

Insight types: knowledge search and article results are `knowledge`; scripts are
`compliance` (they are what an agent must say); an event triggered by `Sentiment` is
`sentiment`; anything else is `other`. Both mappings are configuration.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from assist.core.retrieval import cut_at_word

SNIPPET_CHARS = 250
SUGGESTION_TOPIC = re.compile(
    r"^v2\.conversations\.(?P<conversation>[^.]+)\.suggestions\.(?P<kind>[a-z.]+)$"
)


class InsightKind(StrEnum):
    KNOWLEDGE_SEARCH = "knowledge.search"
    KNOWLEDGE_ARTICLE = "knowledge.article"
    RESPONSE = "response"
    SCRIPT = "script"
    INTENT = "intent"
    THIRD_PARTY = "thirdpartyaction"


#: The eventBody field that carries each kind's content.
PAYLOAD_FIELD = {
    InsightKind.KNOWLEDGE_SEARCH: "knowledgeSearch",
    InsightKind.KNOWLEDGE_ARTICLE: "knowledgeArticle",
    InsightKind.RESPONSE: "cannedResponse",
    InsightKind.SCRIPT: "script",
    InsightKind.INTENT: "conversationIntents",
    InsightKind.THIRD_PARTY: "thirdPartySuggestion",
}

DEFAULT_TYPE_OF_KIND: dict[str, str] = {
    "knowledge.search": "knowledge",
    "knowledge.article": "knowledge",
    "script": "compliance",
    "response": "other",
    "intent": "other",
    "thirdpartyaction": "other",
}
DEFAULT_TYPE_WEIGHTS: dict[str, float] = {
    "knowledge": 1.0,
    "compliance": 0.9,
    "sentiment": 0.8,
    "other": 0.5,
}


class InsightRejected(ValueError):
    """The event cannot be an insight; `reason` is the counter name."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def topic_kind(topic: str) -> tuple[str, InsightKind] | None:
    """(conversation id, kind) of a suggestion topic; None for another topic."""
    match = SUGGESTION_TOPIC.match(topic)
    if match is None:
        return None
    try:
        return match.group("conversation"), InsightKind(match.group("kind"))
    except ValueError:
        raise InsightRejected(
            "unknown_topic", f"unknown suggestion topic {match.group('kind')!r}"
        ) from None


def is_suggestion_topic(topic: str) -> bool:
    return SUGGESTION_TOPIC.match(topic) is not None


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _Context(_Body):
    queue_id: str | None = Field(default=None, alias="queueId")
    utterance_id: str | None = Field(default=None, alias="utteranceId")
    language: str | None = None


class _ActiveIntent(_Body):
    intent: str | None = None
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)


class _SuggestionEvent(_Body):
    event_time: datetime = Field(alias="eventTime")
    conversation_id: str = Field(alias="conversationId", min_length=1, max_length=200)
    suggestion_id: str = Field(alias="suggestionId", min_length=1, max_length=200)
    state: str = "Suggested"
    trigger_type: str | None = Field(default=None, alias="triggerType")
    engagement_type: str | None = Field(default=None, alias="engagementType")
    context: _Context = Field(default_factory=_Context)
    active_intent: _ActiveIntent | None = Field(default=None, alias="activeIntent")


class _Knowledge(_Body):
    title: str = Field(default="", max_length=2000)
    uri: str | None = Field(default=None, max_length=2000)
    snippets: list[str] = Field(default_factory=list)
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    document_id: str | None = Field(default=None, alias="documentId")
    search_id: str | None = Field(default=None, alias="searchId")
    knowledge_answer: dict[str, Any] | None = Field(default=None, alias="knowledgeAnswer")

    @field_validator("snippets")
    @classmethod
    def _strings(cls, snippets: list[str]) -> list[str]:
        return [s for s in snippets if s.strip()]


class _Intent(_Body):
    intent_name: str | None = Field(default=None, alias="intentName")
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)


class Insight(BaseModel):
    """A validated Copilot suggestion, ready to filter and score."""

    model_config = ConfigDict(frozen=True)

    suggestion_id: str
    conversation_id: str
    kind: InsightKind
    state: str
    event_time: datetime
    trigger_type: str | None = None
    engagement_type: str | None = None
    title: str
    text: str
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    uri: str | None = None
    document_id: str | None = None
    utterance_id: str | None = None
    queue_id: str | None = None

    @property
    def is_new(self) -> bool:
        """A first suggestion; later events of the same id report its state after an engagement."""
        return self.state in ("Suggested", "Triggered", "Unknown")


def _describe(exc: ValidationError) -> str:
    error = exc.errors()[0]
    return f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"


def _reason(exc: ValidationError) -> str:
    error = exc.errors()[0]
    if error["type"] == "missing":
        return "missing_id" if str(error["loc"][-1]).endswith("Id") else "missing_field"
    if error["type"] in ("greater_than_equal", "less_than_equal"):
        return "confidence_out_of_range"
    return "wrong_type"


def parse_insight(kind: InsightKind, body: Any) -> Insight:
    """The insight of one event body; raises `InsightRejected` with a counter reason."""
    if not isinstance(body, Mapping):
        raise InsightRejected("wrong_type", "eventBody is not an object")
    try:
        event = _SuggestionEvent.model_validate(body)
        raw = body.get(PAYLOAD_FIELD[kind])
        if raw is None and event.state in ("Suggested", "Triggered", "Unknown"):
            raise InsightRejected(
                "missing_field", f"{PAYLOAD_FIELD[kind]} is missing for {kind.value}"
            )
        title, text, confidence, uri, document_id = _content(kind, raw or {})
    except ValidationError as exc:
        raise InsightRejected(_reason(exc), _describe(exc)) from None
    if confidence is None and event.active_intent is not None:
        confidence = event.active_intent.confidence
    return Insight(
        suggestion_id=event.suggestion_id,
        conversation_id=event.conversation_id,
        kind=kind,
        state=event.state,
        event_time=event.event_time,
        trigger_type=event.trigger_type,
        engagement_type=event.engagement_type,
        title=title,
        text=text,
        confidence=confidence,
        uri=uri,
        document_id=document_id,
        utterance_id=event.context.utterance_id,
        queue_id=event.context.queue_id,
    )


def _content(kind: InsightKind, raw: Any) -> tuple[str, str, float | None, str | None, str | None]:
    """(title, text, confidence, uri, document id) of the kind's payload field."""
    if not isinstance(raw, Mapping):
        raise InsightRejected("wrong_type", f"{PAYLOAD_FIELD[kind]} is not an object")
    if kind in (InsightKind.KNOWLEDGE_SEARCH, InsightKind.KNOWLEDGE_ARTICLE):
        knowledge = _Knowledge.model_validate(raw)
        answer = (knowledge.knowledge_answer or {}).get("answer")
        text = answer if isinstance(answer, str) and answer else " ".join(knowledge.snippets)
        return (
            knowledge.title or "Knowledge article",
            text,
            knowledge.confidence,
            knowledge.uri,
            knowledge.document_id,
        )
    if kind is InsightKind.RESPONSE:
        response_id = _string(raw, "responseId")
        return "Suggested response", f"Canned response {response_id}", None, None, response_id
    if kind is InsightKind.SCRIPT:
        script_id = _string(raw, "scriptId")
        page = raw.get("pageId")
        text = f"Script {script_id}" + (f", page {page}" if isinstance(page, str) else "")
        return "Script to follow", text, None, None, script_id
    if kind is InsightKind.INTENT:
        intents = [_Intent.model_validate(value) for value in raw.values()]
        if not intents:
            raise InsightRejected("missing_field", "conversationIntents is empty")
        best = max(intents, key=lambda i: i.confidence or 0.0)
        name = best.intent_name or str(next(iter(raw)))
        return f"Intent: {name}", f"Detected intent {name}", best.confidence, None, None
    action = raw.get("text")
    if not isinstance(action, str) or not action.strip():
        raise InsightRejected("missing_field", "thirdPartySuggestion.text is missing")
    return "Suggested action", action, None, None, None


def _string(raw: Mapping[str, Any], name: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value:
        raise InsightRejected("missing_id", f"{name} is missing")
    return value


# --- filters ---------------------------------------------------------------------------------

Attribute = Literal["event_type", "insight_type", "confidence", "conversation_id"]
Operator = Literal["eq", "in", "gte", "lte"]
ATTRIBUTES: tuple[str, ...] = ("event_type", "insight_type", "confidence", "conversation_id")
OPERATORS: tuple[str, ...] = ("eq", "in", "gte", "lte")


class FilterError(ValueError):
    pass


class FilterClause(BaseModel):
    model_config = ConfigDict(frozen=True)

    attribute: Attribute
    operator: Operator
    values: tuple[str, ...] = Field(min_length=1)

    def matches(self, facts: Mapping[str, Any]) -> bool:
        actual = facts.get(self.attribute)
        if self.operator in ("gte", "lte"):
            if not isinstance(actual, int | float):
                return False
            bound = float(self.values[0])
            return actual >= bound if self.operator == "gte" else actual <= bound
        if self.operator == "eq":
            return str(actual) == self.values[0]
        return str(actual) in self.values


class InsightFilter(BaseModel):
    """All clauses must hold (an empty filter keeps everything)."""

    model_config = ConfigDict(frozen=True)

    clauses: tuple[FilterClause, ...] = ()

    @classmethod
    def parse(cls, text: str) -> InsightFilter:
        """`attribute:operator:value[|value…]` clauses separated by `;`.

        e.g. `insight_type:in:knowledge|compliance;confidence:gte:0.6`. An unknown attribute
        or operator, or a number that is not one, raises `FilterError` naming it.
        """
        clauses = []
        for raw in (part.strip() for part in text.split(";")):
            if not raw:
                continue
            pieces = raw.split(":", 2)
            if len(pieces) != 3:
                raise FilterError(f"filter clause {raw!r}: expected attribute:operator:value")
            attribute, operator, value = (p.strip() for p in pieces)
            if attribute not in ATTRIBUTES:
                raise FilterError(
                    f"filter clause {raw!r}: unknown attribute {attribute!r} "
                    f"(known: {', '.join(ATTRIBUTES)})"
                )
            if operator not in OPERATORS:
                raise FilterError(
                    f"filter clause {raw!r}: unknown operator {operator!r} "
                    f"(known: {', '.join(OPERATORS)})"
                )
            values = tuple(v.strip() for v in value.split("|") if v.strip())
            if operator in ("gte", "lte"):
                if attribute != "confidence":
                    raise FilterError(f"filter clause {raw!r}: {operator} needs a number")
                try:
                    number = float(values[0]) if len(values) == 1 else float("nan")
                except ValueError:
                    number = float("nan")
                if not 0.0 <= number <= 1.0:
                    raise FilterError(f"filter clause {raw!r}: expected one number in 0..1")
            if not values:
                raise FilterError(f"filter clause {raw!r}: no value")
            clauses.append(
                FilterClause.model_validate(
                    {"attribute": attribute, "operator": operator, "values": values}
                )
            )
        return cls(clauses=tuple(clauses))

    def keeps(self, facts: Mapping[str, Any]) -> bool:
        return all(clause.matches(facts) for clause in self.clauses)


# --- scoring ---------------------------------------------------------------------------------


class InsightScoring(BaseModel):
    model_config = ConfigDict(frozen=True)

    type_of_kind: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_TYPE_OF_KIND))
    weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_TYPE_WEIGHTS))
    default_confidence: float = Field(default=0.7, ge=0.0, le=1.0)

    def insight_type(self, insight: Insight) -> str:
        if insight.trigger_type == "Sentiment":
            return "sentiment"
        return self.type_of_kind.get(insight.kind.value, "other")

    def confidence(self, insight: Insight) -> float:
        return insight.confidence if insight.confidence is not None else self.default_confidence

    def relevance(self, insight: Insight) -> float:
        weight = self.weights.get(self.insight_type(insight), self.weights.get("other", 0.5))
        return round(min(1.0, max(0.0, self.confidence(insight) * weight)), 6)

    def facts(self, insight: Insight) -> dict[str, Any]:
        """What filters look at."""
        return {
            "event_type": insight.kind.value,
            "insight_type": self.insight_type(insight),
            "confidence": self.confidence(insight),
            "conversation_id": insight.conversation_id,
        }


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """A Copilot insight's snippet: at most 250 characters, cut at a word boundary."""
    return cut_at_word(text, limit)


def parse_pairs(text: str | Sequence[str], *, what: str) -> dict[str, str]:
    """`name=value` pairs (a comma-separated string or a list) as a dict."""
    items = text.split(",") if isinstance(text, str) else list(text)
    pairs: dict[str, str] = {}
    for item in (i.strip() for i in items):
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"{what}: expected name=value, got {item!r}")
        pairs[name.strip()] = value.strip()
    return pairs


__all__ = [
    "ATTRIBUTES",
    "OPERATORS",
    "FilterClause",
    "FilterError",
    "Insight",
    "InsightFilter",
    "InsightKind",
    "InsightRejected",
    "InsightScoring",
    "is_suggestion_topic",
    "parse_insight",
    "parse_pairs",
    "snippet",
    "topic_kind",
]
