"""Copilot insights without I/O: payload validation, filters, scoring and snippets."""

from __future__ import annotations

from typing import Any

import pytest

from assist.core.insights import (
    FilterError,
    InsightFilter,
    InsightKind,
    InsightRejected,
    InsightScoring,
    parse_insight,
    snippet,
    topic_kind,
)
from assist.settings import Settings


def event(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventTime": "2026-11-21T10:00:00.000Z",
        "conversationId": "c-1",
        "suggestionId": "s-1",
        "state": "Suggested",
        "triggerType": "Fallback",
        "context": {"queueId": "q-1", "utteranceId": "u-7", "mediaType": "VOICE"},
        "knowledgeSearch": {
            "title": "Refund policy",
            "snippets": ["Refunds go back to the card", "within 5 days"],
            "confidence": 0.8,
            "documentId": "doc-9",
            "uri": "https://kb.example/doc-9",
            "unknownField": {"tolerated": True},
        },
    }
    body.update(overrides)
    return body


def test_a_knowledge_search_event_becomes_an_insight() -> None:
    insight = parse_insight(InsightKind.KNOWLEDGE_SEARCH, event())
    assert insight.suggestion_id == "s-1"
    assert insight.title == "Refund policy"
    assert insight.text == "Refunds go back to the card within 5 days"
    assert insight.confidence == 0.8
    assert insight.utterance_id == "u-7"
    assert insight.document_id == "doc-9"
    assert insight.is_new


def test_the_knowledge_answer_is_preferred_to_the_snippets() -> None:
    body = event()
    body["knowledgeSearch"]["knowledgeAnswer"] = {"answer": "Five working days."}
    assert parse_insight(InsightKind.KNOWLEDGE_SEARCH, body).text == "Five working days."


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"knowledgeSearch": {"title": "t", "confidence": 1.7}}, "confidence_out_of_range"),
        ({"knowledgeSearch": {"title": "t", "confidence": -0.2}}, "confidence_out_of_range"),
        ({"suggestionId": None}, "wrong_type"),
        ({"eventTime": "yesterday"}, "wrong_type"),
        ({"knowledgeSearch": "not an object"}, "wrong_type"),
        ({"knowledgeSearch": None}, "missing_field"),
    ],
)
def test_bad_events_are_rejected_with_a_reason(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(InsightRejected) as raised:
        parse_insight(InsightKind.KNOWLEDGE_SEARCH, event(**change))
    assert raised.value.reason == reason


@pytest.mark.parametrize("field", ["suggestionId", "conversationId"])
def test_missing_ids_are_rejected(field: str) -> None:
    body = event()
    del body[field]
    with pytest.raises(InsightRejected) as raised:
        parse_insight(InsightKind.KNOWLEDGE_SEARCH, body)
    assert raised.value.reason == "missing_id"


def test_kinds_without_a_confidence_take_the_active_intent() -> None:
    body = event(
        cannedResponse={"responseId": "r-1", "libraryId": "lib"},
        activeIntent={"intent": "refund", "confidence": 0.66},
    )
    del body["knowledgeSearch"]
    insight = parse_insight(InsightKind.RESPONSE, body)
    assert insight.confidence == 0.66
    assert "r-1" in insight.text


def test_intents_take_the_best_one() -> None:
    body = event(
        conversationIntents={
            "a": {"intentName": "cancel", "confidence": 0.4},
            "b": {"intentName": "upgrade", "confidence": 0.9},
        }
    )
    insight = parse_insight(InsightKind.INTENT, body)
    assert insight.title == "Intent: upgrade" and insight.confidence == 0.9


def test_a_state_update_needs_no_payload() -> None:
    body = event(state="Dismissed", engagementType="Dismissed")
    del body["knowledgeSearch"]
    insight = parse_insight(InsightKind.KNOWLEDGE_SEARCH, body)
    assert not insight.is_new


def test_topics() -> None:
    assert topic_kind("v2.conversations.c-1.suggestions.knowledge.search") == (
        "c-1",
        InsightKind.KNOWLEDGE_SEARCH,
    )
    assert topic_kind("v2.conversations.c-1.transcription") is None
    with pytest.raises(InsightRejected) as raised:
        topic_kind("v2.conversations.c-1.suggestions.bogus")
    assert raised.value.reason == "unknown_topic"


# --- filters -------------------------------------------------------------------------------------


def facts(**overrides: Any) -> dict[str, Any]:
    base = {
        "event_type": "knowledge.search",
        "insight_type": "knowledge",
        "confidence": 0.7,
        "conversation_id": "c-1",
    }
    base.update(overrides)
    return base


def test_every_clause_must_hold() -> None:
    rule = InsightFilter.parse("insight_type:in:knowledge|compliance; confidence:gte:0.6")
    assert rule.keeps(facts())
    assert not rule.keeps(facts(confidence=0.59))
    assert not rule.keeps(facts(insight_type="other"))
    assert rule.keeps(facts(insight_type="compliance", confidence=0.6))


def test_eq_and_lte() -> None:
    rule = InsightFilter.parse("conversation_id:eq:c-1;confidence:lte:0.5")
    assert rule.keeps(facts(confidence=0.5))
    assert not rule.keeps(facts(confidence=0.51))
    assert not rule.keeps(facts(conversation_id="c-2", confidence=0.1))


def test_an_empty_filter_keeps_everything() -> None:
    assert InsightFilter.parse("").keeps(facts(confidence=0.0))


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("colour:eq:red", "'colour'"),
        ("confidence:gt:0.5", "'gt'"),
        ("confidence:gte:lots", "expected one number"),
        ("confidence:gte:1.5", "expected one number"),
        ("event_type:gte:0.5", "needs a number"),
        ("confidence", "expected attribute:operator:value"),
    ],
)
def test_bad_filters_are_refused_naming_the_problem(text: str, named: str) -> None:
    with pytest.raises(FilterError, match=named):
        InsightFilter.parse(text)


def test_settings_refuse_a_bad_filter_at_start() -> None:
    with pytest.raises(ValueError, match="unknown operator 'like'"):
        Settings(_env_file=None, copilot_filter="insight_type:like:knowledge")


def test_settings_refuse_a_configuration_that_cannot_fit_the_channels() -> None:
    with pytest.raises(ValueError, match="cannot fit the notification limits"):
        Settings(
            _env_file=None,
            copilot_topics="knowledge.search,knowledge.article,response,script,intent",
            stream_max_conversations=4000,
        )
    fits = Settings(
        _env_file=None, copilot_topics="knowledge.search", stream_max_conversations=9000
    )
    assert fits.stream_max_conversations == 9000


# --- scoring -------------------------------------------------------------------------------------


def test_relevance_is_confidence_times_the_type_weight() -> None:
    scoring = InsightScoring()
    knowledge = parse_insight(InsightKind.KNOWLEDGE_SEARCH, event())
    assert scoring.relevance(knowledge) == pytest.approx(0.8)
    script_body = event(script={"scriptId": "sc-1", "pageId": "p-2"})
    del script_body["knowledgeSearch"]
    script = parse_insight(InsightKind.SCRIPT, script_body)
    assert scoring.insight_type(script) == "compliance"
    assert scoring.relevance(script) == pytest.approx(0.7 * 0.9)  # default confidence
    sentiment = parse_insight(InsightKind.KNOWLEDGE_SEARCH, event(triggerType="Sentiment"))
    assert scoring.insight_type(sentiment) == "sentiment"
    assert scoring.relevance(sentiment) == pytest.approx(0.8 * 0.8)


def test_configured_weights_apply() -> None:
    scoring = Settings(
        _env_file=None, copilot_type_weights="knowledge=0.5,other=0.1"
    ).copilot_scoring
    assert scoring.relevance(parse_insight(InsightKind.KNOWLEDGE_SEARCH, event())) == 0.4


def test_snippets_are_cut_at_a_word_boundary() -> None:
    words = " ".join(["refund"] * 100)
    cut = snippet(words)
    assert len(cut) <= 250
    assert cut.endswith("…")
    assert cut[:-1].split() == ["refund"] * len(cut[:-1].split())
    assert snippet("  short   text ") == "short text"
    assert len(snippet("x" * 400)) == 250
