"""Live transcription events in, gated utterances out (capability C2).

The stream process hands every notification of a data topic to this module (in a worker
thread, since everything here is blocking Redis I/O):

`ingest_transcription` (topic `v2.conversations.{id}.transcription`):

1. validate the `eventBody` against `TranscriptionTopicTranscriptionMessage`; wrong types
   (`wrong_types`), a missing conversation or utterance id (`missing_ids`) or a body about
   another conversation than its topic (`conversation_mismatch`) reject the event or that
   transcript, counted and logged by the caller;
2. per transcript, an `Utterance` keyed by `utteranceId` with its text redacted (speaker from
   `channel`: INTERNAL agent, EXTERNAL customer);
3. a partial only updates the speaker's live partial slot (never the window); a partial
   that comes after its final is ignored;
4. a final is committed once (`TranscriptStore.commit_final`): the dedupe mark, the window
   line and the side's span in one transaction. A final seen before, such as one the
   platform re-sends after a reconnect, stops here: no second analysis, no second record.
5. the gate decision (`assist.core.gates.decide`) of a new final, with the interruption
   check against the other side's last final. Then, after the commit:
   an interruption resets the pending analysis buffer (`keywords.reset_buffer`); an
   `analysed` final goes to `keywords.handle_final_utterance` and the queue auto-trigger rule
   (`autotrigger.on_final_utterance`); every final is offered to the utterance webhook
   (`utterance_sync.enqueue_sync`, a no-op unless configured); and one `utterance_received`
   record carries the decision, speaker, confidence, dialect and `lag_ms` (never the text).
6. `SESSION_ENDED` closes the conversation; the caller unsubscribes its topic.

Analysis is at most once: a crash between the commit and the hand-off loses that one
utterance's analysis rather than risking a duplicate suggestion.

`ingest_queue_event` (topic `v2.routing.queues.{id}.conversations`) discovers voice
conversations to follow, and tells when the queue considers one ended.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from pydantic import ValidationError

from assist.adapters.genesys.schemas import (
    NotificationEnvelope,
    QueueConversationEvent,
    TranscriptChannel,
    TranscriptionMessage,
    TranscriptResult,
    queue_id_of,
    transcription_conversation_id,
)
from assist.bootstrap import Services
from assist.core.audit import EventType, RecordEvent
from assist.core.gates import (
    AudioFigures,
    GateDecision,
    GatePolicy,
    Overlap,
    Span,
    decide,
    detect_overlap,
    resets_buffer,
)
from assist.core.redaction import redact_text
from assist.core.transcripts import Speaker, Utterance
from assist.logconfig import get_logger
from assist.services import autotrigger, keywords, utterance_sync
from assist.settings import Settings
from assist.stores.transcripts import TranscriptStore

log = get_logger(__name__)
T = TypeVar("T")

SPEAKERS = {
    TranscriptChannel.INTERNAL: Speaker.AGENT,
    TranscriptChannel.EXTERNAL: Speaker.CUSTOMER,
}


def policy_from(settings: Settings) -> GatePolicy:
    return GatePolicy(
        min_confidence=settings.stream_min_confidence,
        language=settings.stream_language,
        max_frame_bytes=settings.stream_max_frame_bytes,
        interruption_min_overlap_ms=settings.stream_interruption_min_overlap_ms,
        min_audio_quality=settings.stream_min_audio_quality,
    )


def store_of(services: Services) -> TranscriptStore:
    settings = services.settings
    return TranscriptStore(
        services.redis,
        window_size=settings.stream_window_utterances,
        ttl_s=settings.stream_window_ttl_s,
    )


@dataclass(frozen=True)
class Rejection:
    reason: str
    detail: str = ""


@dataclass
class IngestResult:
    """What one transcription event did (counted and logged by the stream process)."""

    conversation_id: str | None
    counts: Counter[str] = field(default_factory=Counter)
    rejections: list[Rejection] = field(default_factory=list)
    session_ended: bool = False

    @property
    def rejected(self) -> bool:
        """The whole event was rejected (nothing of it was used)."""
        return bool(self.rejections) and not self.counts


@dataclass
class Discovery:
    """What a queue conversation event means for the stream."""

    conversation_id: str | None
    queue_id: str | None
    follow: bool = False
    ended: bool = False
    rejection: Rejection | None = None


class TranscriptIngestor:
    def __init__(
        self,
        services: Services,
        *,
        store: TranscriptStore | None = None,
        policy: GatePolicy | None = None,
    ) -> None:
        self._services = services
        self.store = store or store_of(services)
        self.policy = policy or policy_from(services.settings)

    # --- transcription ---------------------------------------------------------------------
    def ingest_transcription(
        self, envelope: NotificationEnvelope, received_at: datetime
    ) -> IngestResult:
        topic_cid = transcription_conversation_id(envelope.topic_name)
        result = IngestResult(conversation_id=topic_cid)
        if envelope.event_body is None:
            result.rejections.append(Rejection("missing_ids", "no eventBody"))
            return result
        try:
            message = TranscriptionMessage.model_validate(envelope.event_body)
        except ValidationError as exc:
            result.rejections.append(Rejection("wrong_types", _first_error(exc)))
            return result
        cid = message.conversation_id
        if not cid:
            result.rejections.append(Rejection("missing_ids", "conversationId missing"))
            return result
        if topic_cid is not None and cid != topic_cid:
            result.rejections.append(
                Rejection("conversation_mismatch", f"body is about {cid}, topic about {topic_cid}")
            )
            return result
        result.conversation_id = cid
        result.counts["events.transcription"] += 1
        for transcript in message.transcripts:
            if not transcript.utterance_id:
                result.rejections.append(Rejection("missing_ids", "utteranceId missing"))
                continue
            self._utterance(message, cid, transcript, received_at, result)
        if message.session_ended:
            result.session_ended = True
            if self.store.close(cid):
                result.counts["conversations.ended"] += 1
                log.info("stream.session_ended", conversation_id=cid)
        return result

    def _utterance(
        self,
        message: TranscriptionMessage,
        cid: str,
        transcript: TranscriptResult,
        received_at: datetime,
        result: IngestResult,
    ) -> None:
        assert transcript.utterance_id is not None
        best = transcript.best
        utterance = Utterance(
            conversation_id=cid,
            utterance_id=transcript.utterance_id,
            speaker=SPEAKERS.get(transcript.channel or TranscriptChannel.UNKNOWN, Speaker.UNKNOWN),
            text=redact_text(best.transcript or "") if best else "",
            is_final=bool(transcript.is_final),
            confidence=best.confidence if best else None,
            dialect=transcript.dialect,
            offset_ms=best.offset_ms if best else None,
            duration_ms=best.duration_ms if best else None,
            event_time=message.event_time,
            received_at=received_at,
        )
        if not utterance.is_final:
            key = "utterances.partial" if self.store.set_partial(utterance) else "utterances.late"
            result.counts[key] += 1
            return
        span = Span.of(utterance.offset_ms, utterance.duration_ms, message.session_start_time_ms)
        audio = (
            AudioFigures(score=transcript.audio_quality.score)
            if transcript.audio_quality is not None
            else None
        )
        policy = self.policy
        sided = utterance.speaker in (Speaker.AGENT, Speaker.CUSTOMER)

        def judge(other: Span | None) -> tuple[GateDecision, Overlap]:
            overlap = (
                detect_overlap(span, other, min_overlap_ms=policy.interruption_min_overlap_ms)
                if sided
                else Overlap.NONE
            )
            return decide(utterance, policy, overlap=overlap, audio=audio), overlap

        commit = self.store.commit_final(utterance, span, judge)
        if commit is None:
            result.counts["utterances.duplicate"] += 1
            return
        utterance = utterance.model_copy(update={"queue_id": commit.queue_id})
        result.counts["utterances.final"] += 1
        result.counts[f"decisions.{commit.decision.value}"] += 1
        self._hand_off(utterance, commit.decision, commit.overlap, result)
        self._record(utterance, message, commit.decision, commit.overlap)

    def _hand_off(
        self,
        utterance: Utterance,
        decision: GateDecision,
        overlap: Overlap,
        result: IngestResult,
    ) -> None:
        """Give a newly committed final to analysis; a failing consumer never stops the stream."""
        cid = utterance.conversation_id
        if resets_buffer(overlap):
            result.counts["interruptions"] += 1
            log.info(
                "stream.interruption",
                conversation_id=cid,
                utterance_id=utterance.utterance_id,
                speaker=utterance.speaker.value,
                overlap=overlap.value,
            )
            self._step("reset_buffer", keywords.reset_buffer, cid, utterance, result)
        if decision is GateDecision.ANALYSED:
            result.counts["utterances.analysed"] += 1
            self._step(
                "handle_final_utterance",
                keywords.handle_final_utterance,
                utterance,
                utterance,
                result,
            )
            self._step("autotrigger", autotrigger.on_final_utterance, utterance, utterance, result)
        self._step("utterance_sync", utterance_sync.enqueue_sync, utterance, utterance, result)

    def _step(
        self,
        name: str,
        func: Callable[[Services, T], object],
        argument: T,
        utterance: Utterance,
        result: IngestResult,
    ) -> None:
        """Run one consumer of a final; its failure is logged and counted, never raised."""
        try:
            func(self._services, argument)
        except Exception as exc:
            result.counts["errors.hand_off"] += 1
            log.error(
                "stream.hand_off_failed",
                step=name,
                conversation_id=utterance.conversation_id,
                utterance_id=utterance.utterance_id,
                error=f"{type(exc).__name__}: {exc}",
            )

    def _record(
        self,
        utterance: Utterance,
        message: TranscriptionMessage,
        decision: GateDecision,
        overlap: Overlap,
    ) -> None:
        self._services.recorder.record(
            RecordEvent.create(
                EventType.UTTERANCE_RECEIVED,
                conversation_id=utterance.conversation_id,
                at=utterance.received_at,
                utterance_id=utterance.utterance_id,
                decision=decision.value,
                speaker=utterance.speaker.value,
                confidence=utterance.confidence,
                dialect=utterance.dialect,
                interruption=overlap.value,
                queue_id=utterance.queue_id,
                lag_ms=lag_ms(utterance, message.session_start_time_ms),
            )
        )

    # --- discovery -------------------------------------------------------------------------
    def ingest_queue_event(self, envelope: NotificationEnvelope) -> Discovery:
        """Which conversation a queue event is about, and whether to follow or end it."""
        topic_queue = queue_id_of(envelope.topic_name)
        try:
            event = QueueConversationEvent.model_validate(envelope.event_body or {})
        except ValidationError as exc:
            return Discovery(
                None, topic_queue, rejection=Rejection("wrong_types", _first_error(exc))
            )
        if not event.id:
            return Discovery(None, topic_queue, rejection=Rejection("missing_ids", "id missing"))
        queue_id = topic_queue or next((p.queue_id for p in event.participants if p.queue_id), None)
        discovery = Discovery(event.id, queue_id)
        if event.ended:
            discovery.ended = True
            return discovery
        if not event.is_voice:
            return discovery
        discovery.follow = self.store.follow(event.id, queue_id)
        return discovery

    def followed(self) -> dict[str, str | None]:
        """Conversations to resubscribe after a restart: id -> queue id."""
        return self.store.followed(self._services.settings.stream_window_ttl_s)

    def close(self, conversation_id: str) -> bool:
        return self.store.close(conversation_id)


def lag_ms(utterance: Utterance, session_start_ms: int | None) -> int | None:
    """Receive time minus when the speech started (`sessionStartTimeMs + offsetMs`), else
    minus `eventTime`; never negative (clocks differ)."""
    received_ms = utterance.received_at.timestamp() * 1000
    if session_start_ms is not None and utterance.offset_ms is not None:
        return max(0, round(received_ms - (session_start_ms + utterance.offset_ms)))
    if utterance.event_time is not None:
        return max(0, round(received_ms - utterance.event_time.timestamp() * 1000))
    return None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ()))
    return f"{where}: {error.get('msg', '')}"[:200]
