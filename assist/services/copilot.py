"""Genesys Agent Copilot insights (capability C5): ingest, score, deliver, sync, engage.

    stream ──ingest()──────────▶ validate, filter, dedup by suggestionId, enqueue (one MULTI)
    worker ──process()─────────▶ score, rank, deliver to the feed, record, enqueue the sync
    worker ──sync_training()───▶ signed POST to the training platform (retried, dead-lettered)
    worker ──report_engagement()▶ POST …/suggestions/{id}/engagement (desk feedback)

The stream process does I/O only: a validated, kept insight becomes a `process_insight` job in
the same transaction that marks its `suggestionId` as seen, so a replayed or duplicated event
is processed once. A later event of the same suggestion with another state (what Genesys
sends after an engagement) is counted as a state update, not shown again.

Candidates carry the Copilot `suggestionId` as their id, `source="copilot"`, the relevance
(confidence x type weight) as confidence and the insight type and topic as tags, so Copilot and
local suggestions rank and merge (same title) by the common rule of DESIGN.md §7.

Metrics: per insight type, counters in `Keys.copilot_counters()` (processed, delivered under
500 ms, sync delivered/failed/dead-lettered) and the `insight_processed` records' latency
(event time → delivered) for p50/p95 on `/metrics` and the dashboard.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redis.client import Pipeline

from assist.adapters.genesys.errors import GenesysError
from assist.adapters.queue import attempts_retry
from assist.adapters.signed_webhook import WebhookDeliveryError, post_signed
from assist.bootstrap import Services
from assist.core.audit import EventType, RecordEvent
from assist.core.insights import (
    Insight,
    InsightRejected,
    parse_insight,
    snippet,
    topic_kind,
)
from assist.core.models import Candidate, FeedbackAction, Rating, elapsed_ms, utcnow
from assist.core.ranking import rank
from assist.logconfig import get_logger
from assist.stores.transcripts import StreamStatusStore

log = get_logger(__name__)

SOURCE = "copilot"
JOB = "process_insight"
UNDER_MS = 500
ENGAGEMENT_OF_ACTION = {
    FeedbackAction.OPENED: "Opened",
    FeedbackAction.COPIED: "Copied",
    FeedbackAction.DISMISSED: "Dismissed",
    FeedbackAction.REJECTED: "Dismissed",
}


@dataclass
class InsightOutcome:
    conversation_id: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    rejection: InsightRejected | None = None

    def count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1


# --- stream side -------------------------------------------------------------------------------


def ingest(services: Services, topic: str, body: Any, received_at: datetime) -> InsightOutcome:
    """Validate one suggestion event and hand a new, kept insight to the workers."""
    outcome = InsightOutcome()
    outcome.count("insights.received")
    try:
        found = topic_kind(topic)
        if found is None:
            raise InsightRejected("unknown_topic", f"not a suggestion topic: {topic}")
        topic_conversation, kind = found
        outcome.conversation_id = topic_conversation
        insight = parse_insight(kind, body)
        if insight.conversation_id != topic_conversation:
            raise InsightRejected(
                "conversation_mismatch",
                f"event for {insight.conversation_id} on the topic of {topic_conversation}",
            )
    except InsightRejected as exc:
        outcome.rejection = exc  # counted by the stream as dropped.insight_<reason>
        return outcome
    settings = services.settings
    scoring = services.insight_scoring
    facts = scoring.facts(insight)
    if insight.is_new and not services.insight_filter.keeps(facts):
        outcome.count("insights.filtered")
        outcome.count(f"insights.filtered.{facts['insight_type']}")
        services.recorder.record(
            RecordEvent.create(
                EventType.INSIGHT_FILTERED,
                conversation_id=insight.conversation_id,
                suggestion_id=insight.suggestion_id,
                event_type=facts["event_type"],
                insight_type=facts["insight_type"],
                confidence=facts["confidence"],
            )
        )
        return outcome
    seen_key = services.redis.keys.copilot_seen(insight.conversation_id)
    ttl_s = settings.request_ttl_s

    def body_(pipe: Pipeline) -> str:
        previous = pipe.hget(seen_key, insight.suggestion_id)
        state = previous.decode() if isinstance(previous, bytes) else previous
        if state == insight.state:
            return "duplicate"
        if state is not None or not insight.is_new:
            pipe.multi()
            pipe.hset(seen_key, insight.suggestion_id, insight.state)
            pipe.expire(seen_key, ttl_s)
            return "state_update"
        pipe.multi()
        pipe.hset(seen_key, insight.suggestion_id, insight.state)
        pipe.expire(seen_key, ttl_s)
        services.queue.enqueue(
            JOB,
            insight.model_dump(mode="json"),
            received_at.isoformat(),
            job_id=f"insight-{uuid.uuid4().hex}",
            pipeline=pipe,
        )
        return "queued"

    result = services.redis.transact([seen_key], body_)
    outcome.count(f"insights.{result}")
    if result == "state_update":
        log.info(
            "copilot.state_update",
            conversation_id=insight.conversation_id,
            suggestion_id=insight.suggestion_id,
            state=insight.state,
            engagement_type=insight.engagement_type,
        )
    return outcome


# --- worker side -------------------------------------------------------------------------------


def process(services: Services, data: dict[str, Any], received_at: str) -> bool:
    """Score, rank and deliver one insight; record it and queue its training sync.

    Returns whether it reached the feed (it may rank below what the conversation already
    shows, or be a repeat of a shown article).
    """
    insight = Insight.model_validate(data)
    scoring = services.insight_scoring
    insight_type = scoring.insight_type(insight)
    relevance = scoring.relevance(insight)
    text = snippet(insight.text or insight.title)
    candidate = Candidate(
        id=insight.suggestion_id,
        title=insight.title[:500],
        content=text,
        confidence=relevance,
        knowledge_source_id=SOURCE,
        tags=(insight_type, insight.kind.value),
        source=SOURCE,
        url=insight.uri,
    )
    feedback = services.feedback.stats([candidate.id])
    conversation_id = insight.conversation_id
    keys = services.redis.keys

    def body(pipe: Pipeline) -> bool:
        shown = services.conversations.shown_scores_in(pipe, conversation_id)
        outcome = rank(
            [candidate],
            agent_skills=(),
            feedback=feedback,
            weights=services.weights,
            previously_shown=shown,
            max_results=1,
        )
        pipe.multi()
        if outcome.ranked:
            services.conversations.stage_delivery(
                pipe, conversation_id, outcome.ranked, feed_event(insight, outcome.ranked, text)
            )
        _stage_sync(services, pipe, insight, insight_type, relevance, text)
        return bool(outcome.ranked)

    delivered = services.redis.transact([keys.conversation_shown(conversation_id)], body)
    now = utcnow()
    latency = elapsed_ms(insight.event_time, now)
    counters = keys.copilot_counters()
    with services.redis.decoded.pipeline(transaction=False) as pipe:
        pipe.hincrby(counters, f"processed.{insight_type}", 1)
        if latency <= UNDER_MS:
            pipe.hincrby(counters, f"under_{UNDER_MS}ms.{insight_type}", 1)
        pipe.execute()
    services.recorder.record(
        RecordEvent.create(
            EventType.INSIGHT_PROCESSED,
            conversation_id=conversation_id,
            at=now,
            suggestion_id=insight.suggestion_id,
            event_type=insight.kind.value,
            insight_type=insight_type,
            confidence=scoring.confidence(insight),
            relevance=relevance,
            delivered=delivered,
            utterance_id=insight.utterance_id,
            latency_ms=latency,
            stream_lag_ms=elapsed_ms(insight.event_time, datetime.fromisoformat(received_at)),
        )
    )
    return delivered


def feed_event(insight: Insight, ranked: Any, text: str) -> dict[str, Any]:
    return {
        "type": "suggestions",
        "source": SOURCE,
        "conversation_id": insight.conversation_id,
        "insight": {
            "suggestion_id": insight.suggestion_id,
            "event_type": insight.kind.value,
            "utterance_id": insight.utterance_id,
        },
        "suggestions": [s.model_dump(mode="json") for s in ranked],
        "snippet": text,
        "ts": utcnow().isoformat(),
    }


# --- training-platform sync --------------------------------------------------------------------


def _stage_sync(
    services: Services,
    pipe: Pipeline,
    insight: Insight,
    insight_type: str,
    relevance: float,
    text: str,
) -> None:
    settings = services.settings
    if not settings.training_webhook_url:
        return
    payload = {
        "type": "copilot.insight",
        "insight_id": insight.suggestion_id,
        "conversation_id": insight.conversation_id,
        "event_type": insight.kind.value,
        "insight_type": insight_type,
        "confidence": services.insight_scoring.confidence(insight),
        "relevance": relevance,
        "title": insight.title,
        "snippet": text,
        "utterance_id": insight.utterance_id,
        "event_time": insight.event_time.isoformat(),
    }
    retry = attempts_retry(settings.training_webhook_attempts, settings.training_webhook_retry_s)
    services.background.enqueue(
        "sync_insight",
        payload,
        job_id=f"sync-{insight.suggestion_id}",
        retry=retry,
        pipeline=pipe,
        on_failure="insight_sync_failed",
    )


def sync_training(services: Services, payload: dict[str, Any]) -> None:
    """POST one insight to the training platform (webhook-id = the insight id)."""
    settings = services.settings
    counters = services.redis.keys.copilot_counters()
    try:
        post_signed(
            services.http_client,
            settings.training_webhook_url,
            secret=settings.training_webhook_secret.get_secret_value(),
            message_id=f"insight_{payload['insight_id']}",
            payload=payload,
        )
    except WebhookDeliveryError:
        services.redis.decoded.hincrby(counters, "sync.failed", 1)
        raise
    services.redis.decoded.hincrby(counters, "sync.delivered", 1)


def sync_dead_letter(services: Services, payload: dict[str, Any], error: str) -> None:
    services.redis.decoded.hincrby(services.redis.keys.copilot_counters(), "sync.dead_lettered", 1)
    services.recorder.record(
        RecordEvent.create(
            EventType.INSIGHT_SYNC_FAILED,
            conversation_id=payload.get("conversation_id"),
            suggestion_id=payload.get("insight_id"),
            error=error,
        )
    )


# --- engagements -------------------------------------------------------------------------------


def engagement_of(action: FeedbackAction, rating: Rating | None) -> dict[str, Any] | None:
    """The `SuggestionEngagement` body for a desk action, or None if Genesys has no such one."""
    if rating is not None:
        return {
            "engagementType": "Feedback",
            "feedback": {"rating": "Positive" if rating is Rating.POSITIVE else "Negative"},
        }
    engagement = ENGAGEMENT_OF_ACTION.get(action)
    return {"engagementType": engagement} if engagement else None


def copilot_suggestion_ids(services: Services, conversation_id: str, ids: list[str]) -> list[str]:
    """Which of these suggestion ids are Copilot suggestionIds seen in the conversation."""
    seen_key = services.redis.keys.copilot_seen(conversation_id)
    found = services.redis.decoded.hmget(seen_key, ids) if ids else []
    return [i for i, state in zip(ids, found, strict=True) if state is not None]


def report_engagement(
    services: Services, conversation_id: str, suggestion_id: str, engagement: dict[str, Any]
) -> None:
    """POST the engagement to Genesys (raises `GenesysError` so the job is retried)."""
    try:
        services.copilot.engage(conversation_id, suggestion_id, engagement)
    except GenesysError as exc:
        log.warning("copilot.engagement_failed", suggestion_id=suggestion_id, error=str(exc))
        raise
    services.recorder.record(
        RecordEvent.create(
            EventType.INSIGHT_ENGAGEMENT_REPORTED,
            conversation_id=conversation_id,
            suggestion_id=suggestion_id,
            engagement=engagement,
        )
    )


def counters(services: Services) -> dict[str, int]:
    raw = services.redis.decoded.hgetall(services.redis.keys.copilot_counters())
    return {str(k): int(v) for k, v in raw.items()}


def figures(services: Services) -> dict[str, int]:
    """The workers' Copilot counters and the stream's insight counters, in one dict."""
    result = counters(services)
    stream = StreamStatusStore(services.redis).counters()
    result.update(
        {k: v for k, v in stream.items() if k.startswith(("insights.", "dropped.insight_"))}
    )
    return result


__all__ = [
    "SOURCE",
    "InsightOutcome",
    "copilot_suggestion_ids",
    "counters",
    "engagement_of",
    "figures",
    "ingest",
    "process",
    "report_engagement",
    "sync_dead_letter",
    "sync_training",
]
