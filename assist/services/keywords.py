"""Keyword and entity detection (capability C3): final customer utterances become suggestion cards.

    stream ──handle_final_utterance()──▶ buffer fragment; first of a window schedules the job
    worker ──analyse_utterances()──────▶ take buffer, detect, map to cards, rank, deliver

Buffer: fragments of one conversation that arrive within `ASSIST_KEYWORD_BUFFER_MS` of the
first are analysed together, joined by spaces, so a phrase split across two fragments
("I was charged" + "twice") still matches. The first fragment of a window sets a "scheduled"
flag and schedules one job at the end of the window in the same transaction (WATCH on the
flag), so a burst schedules exactly one job. The job takes the buffer and clears the flag
atomically; the next fragment opens a new window. RQ schedules in whole seconds, so the due
time is rounded up to the next second, and the worker's scheduler moves due jobs about once a
second: the job runs between `buffer_ms` and `buffer_ms` + 2 s after the first fragment, never
earlier. A buffer of 0 ms enqueues at once (fragments that arrive before the job runs still
join it).

Cards: each match shows its configured card, or for an entity without one the default card.
A card delivered once in a conversation is never delivered again by keywords (a set in
Redis); a card another source already showed at a score as high is suppressed by ranking as
usual. At most `ASSIST_KEYWORD_MAX_CARDS` are delivered per analysis, best score first; the
rest are dropped (and recorded), so a later mention can still bring them.

Cooldown: after a keyword delivery, the conversation gets no new keyword cards for
`ASSIST_KEYWORD_COOLDOWN_S`. Matches with new cards that arrive during the cooldown are not
dropped but deferred: their fragments go back to the front of the buffer and one job is
scheduled for the end of the cooldown (unless a window's job is already scheduled), so the
agent sees them then, together with anything said meanwhile. Matches whose cards were all
delivered already are simply dropped.

Delivery is exactly C1's: one transaction writes the latest suggestions, shown scores and
the conversation feed (`ConversationStore.stage_delivery`), with the delivered-card set and
the cooldown. The feed event is `suggestions.feed_event`'s shape with `"source": "keywords"`
and `detection_id` (`kw_<hex>`, also in the records). Its `request_id` is null: no
`SuggestionRequest` exists, and the desk sends a feed event's request id back with feedback,
which `POST /v1/feedback` would reject as an unknown request.

Records: one `keywords_detected` event per analysis with matches (labels, card ids, matched
phrase, the drops and why; `latency_ms` from the earliest utterance behind a delivered card to
delivery), plus `suggestions_delivered` when cards reach the feed. Delivered cards are then
given to the auto-trigger rule (`autotrigger.on_cards_detected`).

Failures: the detector (and its configuration) is loaded before the buffer is taken, so a
broken configuration fails the job and keeps the fragments. Past that point analysis is at
most once: a job that dies between taking the buffer and delivering loses those fragments
(the job's `error` record says so); no job is retried, so no card is delivered twice.
"""

from __future__ import annotations

import bisect
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from redis.client import Pipeline
from structlog.contextvars import bind_contextvars

from assist.bootstrap import Services
from assist.core.audit import EventType, RecordEvent
from assist.core.models import Candidate, RankedSuggestion, elapsed_ms, utcnow
from assist.core.ranking import rank
from assist.core.transcripts import Speaker, Utterance
from assist.logconfig import get_logger
from assist.nlp import Card, Detector, Match, get_detector
from assist.services import autotrigger
from assist.stores.keywords import Fragment, KeywordStore

log = get_logger(__name__)

JOB = "analyse_utterances"
SOURCE = "keywords"
# How long a "scheduled" flag outlives its job's due time: if the job is lost, the next
# fragment schedules afresh after this.
SCHEDULE_GRACE_MS = 60_000
# A deferred job runs this long after the cooldown ends (clock and scheduler slack).
COOLDOWN_MARGIN_MS = 50


def store_of(services: Services) -> KeywordStore:
    return KeywordStore(services.redis, ttl_s=services.settings.request_ttl_s)


def detector_of(services: Services) -> Detector:
    settings = services.settings
    return get_detector(settings.keywords_config_path, settings.nlp_pipeline)


def _buffer_ttl_ms(services: Services) -> int:
    settings = services.settings
    return settings.keyword_buffer_ms + int(settings.keyword_cooldown_s * 1000) + SCHEDULE_GRACE_MS


def _stage_schedule(services: Services, pipe: Pipeline, conversation_id: str, delay_ms: int) -> str:
    """Queue the schedule flag and the analysis job on `pipe` (after `multi()`); returns job id."""
    window = uuid.uuid4().hex[:16]
    # RQ job ids allow letters, digits, `_` and `-`; conversation ids may also hold `.:@`.
    job_id = f"analyse-{re.sub(r'[^A-Za-z0-9_-]', '_', conversation_id)}-{window}"
    store_of(services).stage_mark_scheduled(
        pipe, conversation_id, window, ttl_ms=delay_ms + SCHEDULE_GRACE_MS
    )
    if delay_ms <= 0:
        return services.queue.enqueue(JOB, conversation_id, job_id=job_id, pipeline=pipe)
    due = utcnow() + timedelta(milliseconds=delay_ms)
    if due.microsecond:
        # RQ schedules in whole seconds, rounding down, which could run the job up to a
        # second early (a window cut short, a cooldown not over); round up instead.
        due = due.replace(microsecond=0) + timedelta(seconds=1)
    return services.queue.enqueue_at(due, JOB, conversation_id, job_id=job_id, pipeline=pipe)


# --- stream side -----------------------------------------------------------------------------


def handle_final_utterance(services: Services, utterance: Utterance) -> None:
    """Buffer a final customer utterance for analysis; the first of a window schedules the job."""
    if (
        not utterance.is_final
        or utterance.speaker is not Speaker.CUSTOMER
        or not utterance.text.strip()
    ):
        log.debug("keywords.ignored", utterance_id=utterance.utterance_id)
        return
    cid = utterance.conversation_id
    store = store_of(services)
    fragment = Fragment(
        utterance_id=utterance.utterance_id,
        text=utterance.text,
        received_at=utterance.received_at,
    )

    def body(pipe: Pipeline) -> bool:
        scheduled = store.scheduled_in(pipe, cid)
        pipe.multi()
        store.stage_append(pipe, cid, [fragment], ttl_ms=_buffer_ttl_ms(services))
        if not scheduled:
            _stage_schedule(services, pipe, cid, services.settings.keyword_buffer_ms)
        return not scheduled

    opened = services.redis.transact([services.redis.keys.keyword_scheduled(cid)], body)
    log.debug("keywords.buffered", conversation_id=cid, new_window=opened)


def reset_buffer(services: Services, conversation_id: str) -> int:
    """Drop the fragments waiting for analysis (an interruption); returns how many.

    A job already scheduled for the window stays: it analyses whatever arrives after the
    reset, at the end of the same window.
    """
    dropped = store_of(services).reset(conversation_id)
    if dropped:
        log.info("keywords.buffer_reset", conversation_id=conversation_id, dropped=dropped)
    return dropped


# --- worker side -----------------------------------------------------------------------------


@dataclass
class _Outcome:
    ranked: tuple[RankedSuggestion, ...] = ()
    duplicates: list[str] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)
    over_limit: list[str] = field(default_factory=list)
    deferred_ms: int | None = None


def _joined(fragments: list[Fragment]) -> tuple[str, list[int]]:
    """The fragments' text joined by spaces, and where each fragment starts in it."""
    starts: list[int] = []
    parts: list[str] = []
    offset = 0
    for fragment in fragments:
        starts.append(offset)
        parts.append(fragment.text)
        offset += len(fragment.text) + 1
    return " ".join(parts), starts


def _candidate(card: Card) -> Candidate:
    spec = card.spec
    return Candidate(
        id=card.id,
        title=spec.title,
        content=spec.content,
        confidence=spec.confidence,
        knowledge_source_id=spec.knowledge_source_id,
        tags=spec.tags,
        source=SOURCE,
    )


def feed_event(
    conversation_id: str, detection_id: str, ranked: tuple[RankedSuggestion, ...], at: datetime
) -> dict[str, Any]:
    """`assist.services.suggestions.feed_event`'s shape, for cards no request asked for."""
    return {
        "type": "suggestions",
        "request_id": None,
        "detection_id": detection_id,
        "source": SOURCE,
        "conversation_id": conversation_id,
        "suggestions": [s.model_dump(mode="json") for s in ranked],
        "ts": at.isoformat(),
    }


def analyse_utterances(services: Services, conversation_id: str) -> list[RankedSuggestion]:
    """The analysis job: take the buffer, detect, deliver new cards; returns the delivered ones."""
    bind_contextvars(conversation_id=conversation_id)
    settings = services.settings
    store = store_of(services)
    # Built (and its configuration validated) before the buffer is taken, so a broken
    # configuration fails the job without losing what the customer said.
    detector = detector_of(services)
    fragments = store.take(conversation_id)
    if not fragments:
        log.info("keywords.nothing_buffered")
        return []
    text, starts = _joined(fragments)
    matches = detector.detect(text)
    if not matches:
        log.info("keywords.no_match", fragments=len(fragments))
        return []

    cards: dict[str, Card] = {}
    heard_at: dict[str, datetime] = {}
    for match in matches:
        card = detector.card(match)
        cards.setdefault(card.id, card)
        received = fragments[bisect.bisect_right(starts, match.start) - 1].received_at
        heard_at[card.id] = min(heard_at.get(card.id, received), received)
    candidates = {card_id: _candidate(card) for card_id, card in cards.items()}
    feedback = services.feedback.stats(candidates)
    detection_id = f"kw_{uuid.uuid4().hex}"
    cooldown_ms = int(settings.keyword_cooldown_s * 1000)

    def body(pipe: Pipeline) -> _Outcome:
        delivered = store.delivered_in(pipe, conversation_id)
        fresh = [card_id for card_id in candidates if card_id not in delivered]
        duplicates = [card_id for card_id in candidates if card_id in delivered]
        if not fresh:
            return _Outcome(duplicates=duplicates)
        remaining_ms = store.cooldown_remaining_ms_in(pipe, conversation_id)
        if remaining_ms > 0:
            scheduled = store.scheduled_in(pipe, conversation_id)
            pipe.multi()
            store.stage_put_back(pipe, conversation_id, fragments, ttl_ms=_buffer_ttl_ms(services))
            if not scheduled:
                _stage_schedule(services, pipe, conversation_id, remaining_ms + COOLDOWN_MARGIN_MS)
            return _Outcome(duplicates=duplicates, deferred_ms=remaining_ms)
        outcome = rank(
            [candidates[card_id] for card_id in fresh],
            agent_skills=(),
            feedback=feedback,
            weights=services.weights,
            previously_shown=services.conversations.shown_scores_in(pipe, conversation_id),
            max_results=settings.keyword_max_cards,
        )
        suppressed = [s.id for s in outcome.suppressed]
        kept = {s.id for s in outcome.ranked} | set(suppressed)
        over_limit = [card_id for card_id in fresh if card_id not in kept]
        if outcome.ranked:
            pipe.multi()
            store.stage_delivered(
                pipe, conversation_id, [s.id for s in outcome.ranked], cooldown_ms=cooldown_ms
            )
            services.conversations.stage_delivery(
                pipe,
                conversation_id,
                outcome.ranked,
                feed_event(conversation_id, detection_id, outcome.ranked, utcnow()),
            )
        return _Outcome(outcome.ranked, duplicates, suppressed, over_limit)

    watched = [
        *store.watched_for_delivery(conversation_id),
        services.redis.keys.conversation_shown(conversation_id),
    ]
    outcome = services.redis.transact(watched, body)
    delivered_at = utcnow()
    delivered_ids = [s.id for s in outcome.ranked]
    latency = (
        max(elapsed_ms(heard_at[card_id], delivered_at) for card_id in delivered_ids)
        if delivered_ids
        else None
    )
    services.recorder.record(
        RecordEvent.create(
            EventType.KEYWORDS_DETECTED,
            conversation_id=conversation_id,
            at=delivered_at,
            detection_id=detection_id,
            pipeline=detector.pipeline,
            fragments=len(fragments),
            matches=[_match_record(m) for m in matches],
            delivered=delivered_ids,
            duplicates=outcome.duplicates,
            suppressed=outcome.suppressed,
            over_limit=outcome.over_limit,
            deferred_ms=outcome.deferred_ms,
            latency_ms=latency,
        )
    )
    log.info(
        "keywords.analysed",
        detection_id=detection_id,
        matches=len(matches),
        delivered=delivered_ids,
        duplicates=outcome.duplicates,
        deferred_ms=outcome.deferred_ms,
    )
    if delivered_ids:
        services.recorder.record(
            RecordEvent.create(
                EventType.SUGGESTIONS_DELIVERED,
                conversation_id=conversation_id,
                at=delivered_at,
                suggestion_ids=delivered_ids,
                channel="conversation-feed",
                source=SOURCE,
                detection_id=detection_id,
            )
        )
        autotrigger.on_cards_detected(services, conversation_id, delivered_ids)
    return list(outcome.ranked)


def _match_record(match: Match) -> dict[str, Any]:
    """What a record keeps of a match: no text beyond the (already redacted) matched span."""
    return {
        "kind": match.kind,
        "label": match.label,
        "card_id": match.card_id,
        "text": match.text,
        "default_card": match.default_card,
    }


__all__ = ["analyse_utterances", "feed_event", "handle_final_utterance", "reset_buffer"]
