"""Triggered suggestions (capability C1): trigger, submit, callback, rank, expire, read.

    desk ──POST /v1/suggestions──▶ trigger()          request + submit job + expiry job (one MULTI)
    worker ─────────────────────▶ submit_query()      local-kb search; async query with callback URL
    provider ─POST /v1/callbacks/genesys─▶ receive_callback()   lookup + dedup + rank job + record
                                                                  (one Redis script, one round trip)
    worker ─────────────────────▶ write_callback_records()  the callbacks' audit lines + analytics
    worker ─────────────────────▶ rank_callback()     rank (with the local hits), store, deliver
    worker / reader ────────────▶ expire_request()    no final callback in time -> expired

Every step writes a record event (audit line + analytics); a callback's is staged in Redis by
its script and written by the worker, so the acknowledgement does no file I/O. Redis writes
that must not be separated from a job (a request and its submission; an acknowledged callback
and its ranking) are in the same transaction or script as the enqueue, so a 2xx is only ever
sent for work that is durably in Redis.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field
from redis.client import Pipeline
from rq import Retry
from structlog.contextvars import bind_contextvars

from assist.adapters.genesys.errors import GenesysCircuitOpenError, GenesysError
from assist.adapters.genesys.http import DEFAULT_RETRY_AFTER_S
from assist.adapters.queue import rq_timestamp
from assist.bootstrap import Services
from assist.core.audit import EventType, RecordEvent
from assist.core.models import (
    Candidate,
    RankedSuggestion,
    RequestStatus,
    SuggestionRequest,
    elapsed_ms,
    utcnow,
)
from assist.core.ranking import rank
from assist.core.redaction import redact_text
from assist.errors import ConflictError, FieldValidationError, NotFoundError
from assist.logconfig import get_logger
from assist.security import VerifiedCallback, digest
from assist.services import knowledge, results_webhook
from assist.stores.callbacks import RECORDS_RETRY
from assist.stores.idempotency import IdempotencyRecord

log = get_logger(__name__)

# A submission or ranking job that dies with its worker is retried by RQ's abandoned-job
# cleanup (workers/rq_worker.py). The first retry is enqueued at once rather than scheduled
# (the dead worker may have held the scheduler lock, which RQ keeps for a minute), at the
# front of the queue (it has waited longest). Both jobs are idempotent (a request's status is
# checked in the transaction that moves it on). The ranking job is enqueued by the callback
# script (assist/stores/callbacks.py, RANK_RETRY).
SUBMIT_RETRY = Retry(max=3, interval=[0, 5, 30], enqueue_at_front=True)
RECORDS_LOCK_TIMEOUT_S = 60
#: Records written per audit append and analytics transaction.
RECORDS_BATCH = 500
#: A submission turned away by a provider comes back no sooner than this (the RQ scheduler
#: looks for due jobs every second).
MIN_RESUBMIT_WAIT_S = 1.0


# --- trigger ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TriggerCommand:
    conversation_id: str
    knowledge_source_ids: tuple[str, ...]
    transcript: str | None = None
    agent_id: str | None = None
    agent_skills: tuple[str, ...] = ()
    max_results: int | None = None


@dataclass(frozen=True)
class IdempotencyContext:
    scope: str
    key: str
    fingerprint: str


@dataclass(frozen=True)
class TriggerResult:
    request: SuggestionRequest
    replayed: bool = False


def callback_url_for(services: Services, request_id: str) -> str:
    # The request id rides along so a provider that calls back before the submission job has
    # recorded its provider id (a fast provider) can still be matched.
    return f"{services.settings.callback_url}?request_id={quote(request_id)}"


def trigger(
    services: Services, command: TriggerCommand, *, idempotency: IdempotencyContext | None = None
) -> TriggerResult:
    """Accept a desktop trigger: store the request and enqueue its submission, atomically."""
    settings = services.settings
    transcript = command.transcript
    if transcript is None:
        transcript = services.conversations.transcript_window(command.conversation_id)
        if not transcript:
            raise FieldValidationError(
                "no transcript given and no live transcript is known for this conversation",
                details=[{"field": "transcript", "message": "required when no live transcript"}],
            )
    now = utcnow()
    request_id = f"req_{uuid.uuid4().hex}"
    request = SuggestionRequest(
        request_id=request_id,
        conversation_id=command.conversation_id,
        agent_id=command.agent_id,
        agent_skills=command.agent_skills,
        knowledge_source_ids=command.knowledge_source_ids,
        # Redacted on the way in: the provider, Redis and every record only see the safe text.
        transcript=redact_text(transcript),
        max_results=command.max_results or settings.max_results,
        created_at=now,
        updated_at=now,
        expires_at=now + timedelta(seconds=settings.request_expiry_s),
    )
    idem_key = (
        services.idempotency.key(idempotency.scope, digest(idempotency.key))
        if idempotency
        else None
    )

    def body(pipe: Pipeline) -> TriggerResult:
        if idempotency is not None and idem_key is not None:
            existing = services.idempotency.read_in(pipe, idem_key)
            if existing is not None:
                if existing.fingerprint != idempotency.fingerprint:
                    raise ConflictError(
                        "Idempotency-Key was already used with a different body",
                        code="idempotency_key_reused",
                    )
                original = services.requests.read_in(pipe, existing.request_id)
                if original is not None:
                    return TriggerResult(original, replayed=True)
        pipe.multi()
        services.requests.stage_save(pipe, request)
        services.queue.enqueue(
            "submit_query",
            request_id,
            job_id=f"submit-{request_id}",
            retry=SUBMIT_RETRY,
            pipeline=pipe,
        )
        services.queue.enqueue_at(
            request.expires_at,
            "expire_request",
            request_id,
            job_id=f"expire-{request_id}",
            pipeline=pipe,
        )
        if idempotency is not None and idem_key is not None:
            services.idempotency.stage_save(
                pipe,
                idem_key,
                IdempotencyRecord(fingerprint=idempotency.fingerprint, request_id=request_id),
            )
        return TriggerResult(request)

    result = services.redis.transact([idem_key] if idem_key else [], body)
    if not result.replayed:
        services.recorder.record_for(
            request,
            EventType.QUERY_REQUESTED,
            knowledge_source_ids=list(request.knowledge_source_ids),
            agent_skills=list(request.agent_skills),
            transcript_chars=len(request.transcript),
        )
    return result


# --- submission (worker) ---------------------------------------------------------------------


def submit_query(
    services: Services, request_id: str, attempt: int = 1, run: int = 1
) -> SuggestionRequest | None:
    """Ask every provider of the request; it moves to `submitted`, `completed` or `failed`.

    Synchronous providers (`local-kb`, `genesys-knowledge`) are asked here, in the worker.
    Their candidates are saved on the request *before* the async query is sent, so a provider
    that calls back at once still has them ranked with its own. Without an async-query source
    the request is ranked and completed here. A request fails only when nothing was found and
    some provider failed; otherwise what was found is ranked.

    When nothing was found and the providers failed in a "try later" way (rate limited after
    the retries, 5xx, network, an open circuit), another run is scheduled after the wait the
    server (`Retry-After`) or the circuit breaker (open time left) asked for, with a
    `query_retry_scheduled` record. `attempt` counts the runs that sent provider calls, at most
    `ASSIST_QUERY_SUBMIT_ATTEMPTS`; a run turned away by an open circuit before any call does
    not count, and `run` counts every run (job ids). No run is scheduled past the request's
    deadline. Out of attempts or of time, the request fails (`query_failed` record naming the
    error and the attempt). Each attempt makes at most `ASSIST_GENESYS_MAX_ATTEMPTS` HTTP
    attempts per provider call, so a query costs the async-query provider at most
    `QUERY_SUBMIT_ATTEMPTS x GENESYS_MAX_ATTEMPTS` calls (twice that if every call also meets a
    401 and sends again with a new token), and none while its circuit is open.
    """
    request = services.requests.get(request_id)
    if request is not None:
        bind_contextvars(conversation_id=request.conversation_id)
    if request is None or request.status is not RequestStatus.QUEUED:
        log.info(
            "submit.skipped",
            request_id=request_id,
            status=request.status.value if request else None,
        )
        return request
    if request.expires_at <= utcnow():
        return expire_request(services, request_id)
    local_ids, genesys_ids, remote_ids = knowledge.split_sources(
        services, request.knowledge_source_ids
    )
    gathered = knowledge.Gathered()
    if (local_ids or genesys_ids) and not request.pending_candidates:
        gathered = knowledge.gather(services, request, local_ids, genesys_ids)
        if gathered.candidates:
            found = tuple(gathered.candidates)
            saved = services.requests.update(
                request_id,
                lambda r: (
                    r.model_copy(update={"pending_candidates": found})
                    if r.status is RequestStatus.QUEUED
                    else None
                ),
            )
            if saved is None:  # expired or otherwise moved on meanwhile
                return services.requests.get(request_id)
    found_any = bool(gathered.candidates or request.pending_candidates)
    if not remote_ids:
        if gathered.errors and not found_any:
            error = "; ".join(gathered.errors)
            if gathered.retryable and _retry_later(
                services,
                request,
                attempt,
                run,
                counted=not gathered.nothing_sent,
                provider=knowledge.GENESYS_KNOWLEDGE,
                error_type="ProvidersFailed",
                error=error,
                retry_in_s=gathered.retry_in_s,
            ):
                return services.requests.get(request_id)
            return _fail(services, request, error)
        return rank_candidates(services, request_id, [], provider_request_id=None)
    remote_request = request.model_copy(update={"knowledge_source_ids": remote_ids})
    try:
        accepted = services.provider.submit(remote_request, callback_url_for(services, request_id))
    except GenesysError as exc:
        if (
            not found_any
            and exc.retryable
            and _retry_later(
                services,
                request,
                attempt,
                run,
                counted=not (isinstance(exc, GenesysCircuitOpenError) and exc.nothing_sent),
                provider=services.provider.name,
                error_type=type(exc).__name__,
                error=str(exc),
                retry_in_s=exc.retry_in_s,
            )
        ):
            return services.requests.get(request_id)
        services.recorder.record_for(
            request,
            EventType.QUERY_FAILED,
            error_type=type(exc).__name__,
            error=str(exc),
            retryable=exc.retryable,
            provider=services.provider.name,
            other_candidates=len(gathered.candidates),
            attempt=attempt,
            run=run,
        )
        if found_any:
            # Other providers answered: rank what they found rather than fail.
            return rank_candidates(services, request_id, [], provider_request_id=None)
        return _fail(services, request, f"provider: {exc}", recorded=True)
    now = utcnow()

    def mark_submitted(current: SuggestionRequest) -> SuggestionRequest | None:
        if current.status is RequestStatus.QUEUED:
            return current.moved_to(
                RequestStatus.SUBMITTED, at=now, provider_request_id=accepted.id
            )
        if current.provider_request_id is None:
            return current.model_copy(update={"provider_request_id": accepted.id})
        return None

    updated = services.requests.update(
        request_id,
        mark_submitted,
        extra=lambda pipe, _: services.requests.stage_bind_provider(pipe, accepted.id, request_id),
    )
    services.recorder.record_for(
        request,
        EventType.QUERY_SUBMITTED,
        provider=services.provider.name,
        provider_request_id=accepted.id,
        knowledge_source_ids=list(remote_ids),
        latency_ms=elapsed_ms(request.created_at, now),
    )
    return updated or services.requests.get(request_id)


def _retry_later(
    services: Services,
    request: SuggestionRequest,
    attempt: int,
    run: int,
    *,
    counted: bool,
    provider: str,
    error_type: str,
    error: str,
    retry_in_s: float | None,
) -> bool:
    """Schedule the next run of the submission, if the query has attempts and time left.

    `counted`: this run sent provider calls (else an open circuit turned it away first)."""
    next_attempt = attempt + 1 if counted else attempt
    if next_attempt > services.settings.query_submit_attempts:
        return False
    # The wait the server (Retry-After) or the circuit breaker (open time left) asked for, else
    # the retry layer's default growing with the attempts; plus up to 10% so that queries
    # turned away together do not all come back in the same second.
    wait = retry_in_s if retry_in_s is not None else DEFAULT_RETRY_AFTER_S * attempt
    wait = max(wait, MIN_RESUBMIT_WAIT_S)
    wait += random.uniform(0, wait * 0.1)
    when = utcnow() + timedelta(seconds=wait)
    if when >= request.expires_at:
        return False
    services.queue.enqueue_at(
        when,
        "submit_query",
        request.request_id,
        next_attempt,
        run + 1,
        job_id=f"submit-{request.request_id}-{run + 1}",
        retry=SUBMIT_RETRY,
    )
    services.recorder.record_for(
        request,
        EventType.QUERY_RETRY_SCHEDULED,
        provider=provider,
        error_type=error_type,
        error=error,
        attempt=attempt,
        run=run,
        counted=counted,
        retry_in_s=round(wait, 3),
    )
    log.info(
        "submit.retry_scheduled",
        attempt=attempt,
        run=run,
        counted=counted,
        retry_in_s=round(wait, 3),
        error=error,
    )
    return True


def _fail(
    services: Services, request: SuggestionRequest, error: str, *, recorded: bool = False
) -> SuggestionRequest | None:
    now = utcnow()
    failed = services.requests.update(
        request.request_id,
        lambda r: (
            r.moved_to(RequestStatus.FAILED, at=now, error=error)
            if not r.status.is_terminal
            else None
        ),
    )
    if failed is not None and not recorded:
        services.recorder.record_for(
            request,
            EventType.QUERY_FAILED,
            error_type="ProvidersFailed",
            error=error,
            retryable=False,
        )
    return failed


# --- callback (web) --------------------------------------------------------------------------


class CallbackSuggestionMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    tags: list[str] = Field(default_factory=list, max_length=50)


class CallbackSuggestion(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=200)
    title: str = Field(max_length=500)
    content: str = Field(max_length=20_000)
    confidence: float = Field(ge=0.0, le=1.0)
    knowledge_source_id: str = Field(min_length=1, max_length=200)
    metadata: CallbackSuggestionMetadata = Field(default_factory=CallbackSuggestionMetadata)


class CallbackPayload(BaseModel):
    """The provider's callback body (DESIGN.md §4)."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=200, description="The provider's request id.")
    status: Literal["queued", "processing", "completed", "failed"]
    suggestions: list[CallbackSuggestion] = Field(default_factory=list, max_length=100)
    error: str | None = Field(default=None, max_length=2000)

    @property
    def is_final(self) -> bool:
        return self.status in ("completed", "failed")


@dataclass(frozen=True)
class CallbackOutcome:
    status_code: int
    body: dict[str, Any] = field(default_factory=dict)


def receive_callback(
    services: Services,
    payload: CallbackPayload,
    verified: VerifiedCallback,
    *,
    request_id_hint: str | None = None,
) -> CallbackOutcome:
    """Acknowledge a verified callback; final ones are queued for ranking exactly once.

    One Redis round trip (`CallbackAcks.acknowledge`): lookup, dedup markers, the ranking job
    and the `callback_received` record (staged for the worker) land together or not at all.
    """
    received_at = utcnow()
    keys = services.redis.keys
    ack = services.callback_acks.acknowledge(
        provider_request_id=payload.id,
        request_id_hint=request_id_hint,
        message_key=(
            keys.callback_message(digest(verified.message_id)) if verified.message_id else None
        ),
        final=payload.is_final,
        payload_json=payload.model_dump_json(),
        received_at=received_at.isoformat(),
        enqueued_at=rq_timestamp(received_at),
        record={
            "event_id": uuid.uuid4().hex,
            "received_at": received_at.isoformat(),
            "provider_request_id": payload.id,
            "callback_status": payload.status,
            "suggestions": len(payload.suggestions),
            "auth_mode": verified.mode,
        },
        records_job_id=f"callback-records-{uuid.uuid4().hex}",
    )
    request_id = ack.request_id
    if ack.outcome == "unknown" or request_id is None:
        raise NotFoundError(f"unknown provider request id {payload.id!r}", code="unknown_request")
    if ack.outcome == "duplicate":
        return CallbackOutcome(200, {"status": "duplicate", "request_id": request_id})
    if ack.outcome == "ignored":
        return CallbackOutcome(
            200,
            {
                "status": "ignored",
                "request_id": request_id,
                "reason": f"request is already {ack.status}",
            },
        )
    if ack.outcome == "acknowledged":
        if ack.status == RequestStatus.QUEUED.value:
            now = utcnow()
            services.requests.update(
                request_id,
                lambda r: (
                    r.moved_to(RequestStatus.SUBMITTED, at=now, provider_request_id=payload.id)
                    if r.status is RequestStatus.QUEUED
                    else None
                ),
            )
        return CallbackOutcome(202, {"status": "acknowledged", "request_id": request_id})
    return CallbackOutcome(202, {"status": "queued", "request_id": request_id})


def callback_record(entry: dict[str, Any]) -> RecordEvent:
    """The `callback_received` event of a record the callback script staged."""
    received_at = datetime.fromisoformat(entry["received_at"])
    return RecordEvent.create(
        EventType.CALLBACK_RECEIVED,
        event_id=entry["event_id"],
        at=received_at,
        request_id=entry["request_id"],
        conversation_id=entry.get("conversation_id"),
        agent_id=entry.get("agent_id"),
        provider_request_id=entry["provider_request_id"],
        callback_status=entry["callback_status"],
        suggestions=entry["suggestions"],
        duplicate=bool(entry["duplicate"]),
        late=bool(entry["late"]),
        auth_mode=entry["auth_mode"],
        latency_ms=elapsed_ms(datetime.fromisoformat(entry["created_at"]), received_at),
    )


def write_callback_records(services: Services) -> int:
    """Worker: write the staged `callback_received` records (audit lines + analytics), oldest
    first, in batches; returns how many were written.

    Exactly one audit line per record, whenever a writer dies: a batch is claimed (its size
    noted in Redis) before it is written and dropped from the outbox together with the claim
    after, so the next writer writes a claimed batch with `once` (skipping lines already in
    the log) and every other batch plainly. One writer at a time (a lock); a writer that finds
    the lock taken comes back in a second, as the analytics delivery does.
    """
    store = services.callback_acks
    lock = store.lock(RECORDS_LOCK_TIMEOUT_S)
    if not lock.acquire(blocking=False):
        services.queue.enqueue_at(
            utcnow() + timedelta(seconds=1), "write_callback_records", retry=RECORDS_RETRY
        )
        return 0
    written = 0
    try:
        claimed = store.claimed()
        if claimed:
            entries = store.head(claimed)
            services.recorder.record_many([callback_record(e) for e in entries], once=True)
            store.release(len(entries))
            written += len(entries)
            log.warning("callback_records.claim_replayed", records=len(entries))
        while True:
            entries = store.head(RECORDS_BATCH)
            if not entries:
                store.clear_flag()
                # Anything staged before the flag went away is picked up here; anything after
                # it enqueues a writer of its own.
                entries = store.head(RECORDS_BATCH)
                if not entries:
                    break
            store.claim(len(entries))
            services.recorder.record_many([callback_record(e) for e in entries])
            store.release(len(entries))
            written += len(entries)
    finally:
        lock.release()
    return written


# --- ranking (worker) ------------------------------------------------------------------------


def rank_callback(
    services: Services, request_id: str, payload_data: dict[str, Any], received_at: str
) -> SuggestionRequest | None:
    """Rank a final callback's suggestions, store them and deliver them to the conversation.

    Idempotent: a request that is already terminal is left alone, so an RQ retry after a
    worker death neither ranks twice nor writes a second `suggestions_ranked` record.
    """
    payload = CallbackPayload.model_validate(payload_data)
    if payload.status == "failed":
        now = utcnow()
        failed = services.requests.update(
            request_id,
            lambda r: (
                r.moved_to(
                    RequestStatus.FAILED, at=now, error=f"provider: {payload.error or 'failed'}"
                )
                if not r.status.is_terminal
                else None
            ),
        )
        if failed is not None:
            services.recorder.record_for(
                failed,
                EventType.QUERY_FAILED,
                error_type="ProviderFailure",
                error=payload.error or "provider reported failure",
                retryable=False,
            )
        return failed

    candidates = [
        Candidate(
            id=s.id,
            title=s.title,
            content=s.content,
            confidence=s.confidence,
            knowledge_source_id=s.knowledge_source_id,
            tags=tuple(s.metadata.tags),
            source=services.provider.name,
        )
        for s in payload.suggestions
    ]
    return rank_candidates(
        services,
        request_id,
        candidates,
        provider_request_id=payload.id,
        received_at=datetime.fromisoformat(received_at),
    )


def rank_candidates(
    services: Services,
    request_id: str,
    candidates: list[Candidate],
    *,
    provider_request_id: str | None,
    received_at: datetime | None = None,
) -> SuggestionRequest | None:
    """Rank `candidates` with the request's pending (local) ones; store, deliver, record.

    Idempotent: a request that is already terminal is left alone, so an RQ retry after a
    worker death neither ranks twice nor delivers twice. Its records (`suggestions_ranked`,
    `suggestions_delivered`) are staged in the transaction that completes the request and
    written after it, so a worker that dies in between leaves them to the retry: exactly one
    audit line each, whenever the worker dies.
    """
    keys = services.redis.keys
    request_key = keys.request(request_id)
    records_key = keys.request_records(request_id)
    now = utcnow()
    staged: list[RecordEvent] = []
    # The request as the last run of `body` read it (what a job that finds it already
    # ranked returns).
    seen: list[SuggestionRequest | None] = [None]

    def body(pipe: Pipeline) -> SuggestionRequest | None:
        # Three round trips: watch and read the request; watch and read the conversation's
        # shown scores with the candidates' feedback counters; MULTI/EXEC. The request is
        # watched for its status; the shown scores so that two rankings in one conversation
        # cannot both show the same article. Feedback counters are read, not watched.
        (raw,) = services.redis.watch_and_read(pipe, [request_key], [("GET", request_key)])
        request = seen[0] = services.requests.parse(raw)
        if request is None:
            return None
        bind_contextvars(conversation_id=request.conversation_id)
        if request.status.is_terminal:
            return None
        everything = [*candidates, *request.pending_candidates]
        ids = list(dict.fromkeys(c.id for c in everything))
        shown_key = keys.conversation_shown(request.conversation_id)
        shown_raw, *counters = services.redis.watch_and_read(
            pipe,
            [shown_key],
            [("HGETALL", shown_key), *services.feedback.stats_reads(ids)],
        )
        outcome = rank(
            everything,
            agent_skills=request.agent_skills,
            feedback=services.feedback.stats_from(ids, counters),
            weights=services.weights,
            previously_shown=services.conversations.shown_scores_from(shown_raw),
            max_results=request.max_results,
        )
        completed = request.moved_to(
            RequestStatus.COMPLETED,
            at=now,
            provider_request_id=request.provider_request_id or provider_request_id,
            suggestions=outcome.ranked,
            suppressed=outcome.suppressed,
        )
        pipe.multi()
        services.requests.stage_save(pipe, completed)
        if outcome.ranked:
            services.conversations.stage_delivery(
                pipe,
                request.conversation_id,
                outcome.ranked,
                feed_event(completed, outcome.ranked),
            )
        results_webhook.stage_delivery(services, pipe, completed)
        staged[:] = _ranking_records(completed, len(candidates), received_at or now, now)
        services.recorder.stage_pending(pipe, records_key, staged, services.settings.request_ttl_s)
        return completed

    completed = services.redis.transact([], body)
    if completed is None:
        # Already ranked; by a job that may have died before writing its records.
        replayed = services.recorder.replay_pending(records_key)
        log.info("rank.skipped", request_id=request_id, records_replayed=replayed)
        return seen[0]
    services.recorder.write_pending(records_key, staged)
    return completed


def _ranking_records(
    completed: SuggestionRequest, new_candidates: int, received_at: datetime, now: datetime
) -> list[RecordEvent]:
    """The `suggestions_ranked` record of a completed request, and `suggestions_delivered`
    when it showed anything."""

    def event(event_type: EventType, **data: Any) -> RecordEvent:
        return RecordEvent.create(
            event_type,
            request_id=completed.request_id,
            conversation_id=completed.conversation_id,
            agent_id=completed.agent_id,
            at=now,
            **data,
        )

    records = [
        event(
            EventType.SUGGESTIONS_RANKED,
            candidates=new_candidates + len(completed.pending_candidates),
            ranked=[{"id": s.id, "score": s.score, "rank": s.rank} for s in completed.suggestions],
            suppressed=[s.id for s in completed.suppressed],
            ranking_ms=elapsed_ms(received_at, now),
            latency_ms=elapsed_ms(completed.created_at, now),
        )
    ]
    if completed.suggestions:
        records.append(
            event(
                EventType.SUGGESTIONS_DELIVERED,
                suggestion_ids=[s.id for s in completed.suggestions],
                channel="conversation-feed",
            )
        )
    return records


def feed_event(request: SuggestionRequest, ranked: tuple[RankedSuggestion, ...]) -> dict[str, Any]:
    return {
        "type": "suggestions",
        "request_id": request.request_id,
        "conversation_id": request.conversation_id,
        "suggestions": [s.model_dump(mode="json") for s in ranked],
        "ts": (request.completed_at or request.updated_at).isoformat(),
    }


# --- expiry and reads ------------------------------------------------------------------------


def expire_request(services: Services, request_id: str) -> SuggestionRequest | None:
    """Move a request with no final callback past its deadline to `expired`."""
    now = utcnow()
    expired = services.requests.update(
        request_id,
        lambda r: (
            r.moved_to(RequestStatus.EXPIRED, at=now, error="no final callback before the deadline")
            if not r.status.is_terminal and r.expires_at <= now
            else None
        ),
    )
    if expired is None:
        return services.requests.get(request_id)
    services.recorder.record_for(
        expired,
        EventType.REQUEST_EXPIRED,
        status_before="submitted" if expired.submitted_at else "queued",
        latency_ms=elapsed_ms(expired.created_at, now),
    )
    return expired


def get_request(services: Services, request_id: str) -> SuggestionRequest:
    request = services.requests.get(request_id)
    if request is None:
        raise NotFoundError(f"unknown request id {request_id!r}", code="unknown_request")
    if not request.status.is_terminal and request.expires_at <= utcnow():
        # The scheduled expiry job may be late (or its worker down); readers never see a
        # request that is past its deadline as still pending.
        return expire_request(services, request_id) or request
    return request


def conversation_suggestions(services: Services, conversation_id: str) -> list[RankedSuggestion]:
    if not services.conversations.exists(conversation_id):
        raise NotFoundError(
            f"no suggestions for conversation {conversation_id!r}", code="unknown_conversation"
        )
    return services.conversations.latest(conversation_id)


__all__ = [
    "CallbackOutcome",
    "CallbackPayload",
    "IdempotencyContext",
    "TriggerCommand",
    "conversation_suggestions",
    "expire_request",
    "get_request",
    "rank_callback",
    "receive_callback",
    "submit_query",
    "trigger",
]
