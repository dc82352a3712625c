"""Redis state of the live transcript stream (capability C2).

Per conversation, every key expiring `ASSIST_STREAM_WINDOW_TTL_S` after its last update:

- `conversation_transcript`: the **live transcript window**, a list of the last
  `ASSIST_STREAM_WINDOW_UTTERANCES` final utterances, oldest first, one line each:
  `"<speaker>: <text>"` with speaker `customer`, `agent` or `unknown` and the text redacted,
  on one line. `POST /v1/suggestions` without a transcript joins it with newlines
  (`ConversationStore.transcript_window`);
- `conversation_partials`: a hash speaker -> JSON `{utterance_id, text, received_at}` of
  the partial being spoken now (partials never enter the window);
- `conversation_utterances`: a hash utterance id -> gate decision of its final, the dedupe
  record that makes a final sent twice (a re-send after a reconnect) harmless;
- `conversation_stream`: a hash with the queue, `status` (open/closed), start and end times
  and the last span of each side (`span:customer`, `span:agent`: "start_ms,end_ms"), which
  the interruption gate compares against.

Process-wide: `stream_conversations` (followed conversations, scored by last activity, so a
restarted process resubscribes them), `stream_counters` (counters for `/metrics`) and
`stream_status` (the process's connection status).

A final is committed in one transaction under WATCH of its dedupe hash and the state hash:
the dedupe mark, the window line, the side's span and the partial's removal land together,
and a final seen before is reported as a duplicate without writing anything.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from redis.client import Pipeline

from assist.core.gates import GateDecision, Overlap, Span
from assist.core.transcripts import Speaker, Utterance
from assist.stores.redis_client import RedisConnections, decode

OPEN = "open"
CLOSED = "closed"
_OTHER_SIDE = {Speaker.CUSTOMER: Speaker.AGENT, Speaker.AGENT: Speaker.CUSTOMER}

#: Decides a final from the other side's last span: (decision, overlap).
Judge = Callable[[Span | None], tuple[GateDecision, Overlap]]


def window_line(utterance: Utterance) -> str:
    """The window's line for a final utterance (see the module docstring)."""
    text = " ".join(utterance.text.split())
    return f"{utterance.speaker.value}: {text}"


def _span_text(span: Span) -> str:
    return f"{span.start_ms},{span.end_ms}"


def _parse_span(raw: bytes | str | None) -> Span | None:
    text = decode(raw)
    if not text:
        return None
    try:
        start, end = (int(part) for part in text.split(",", 1))
    except ValueError:
        return None
    return Span(start, end)


@dataclass(frozen=True)
class FinalCommit:
    decision: GateDecision
    overlap: Overlap
    queue_id: str | None


class TranscriptStore:
    def __init__(self, redis: RedisConnections, *, window_size: int, ttl_s: int) -> None:
        self._redis = redis
        self._keys = redis.keys
        self._window_size = window_size
        self._ttl_s = ttl_s

    # --- utterances ------------------------------------------------------------------------
    def commit_final(
        self, utterance: Utterance, span: Span | None, judge: Judge
    ) -> FinalCommit | None:
        """Record a final utterance once; None when it was recorded before (a duplicate)."""
        keys = self._keys
        cid = utterance.conversation_id
        marks = keys.conversation_utterances(cid)
        state = keys.conversation_stream(cid)
        partials = keys.conversation_partials(cid)
        window = keys.conversation_transcript(cid)
        speaker = utterance.speaker
        other = _OTHER_SIDE.get(speaker)

        def body(pipe: Pipeline) -> FinalCommit | None:
            if pipe.hexists(marks, utterance.utterance_id):
                return None
            other_span = _parse_span(pipe.hget(state, f"span:{other.value}")) if other else None
            queue_id = decode(pipe.hget(state, "queue_id"))
            partial = decode(pipe.hget(partials, speaker.value))
            decision, overlap = judge(other_span)
            pipe.multi()
            pipe.hset(marks, utterance.utterance_id, decision.value)
            if utterance.text.strip():
                pipe.rpush(window, window_line(utterance))
                pipe.ltrim(window, -self._window_size, -1)
                pipe.expire(window, self._ttl_s)
            if span is not None and other is not None:
                pipe.hset(state, f"span:{speaker.value}", _span_text(span))
            pipe.hset(state, "last_utterance_at", str(time.time()))
            if partial and _partial_id(partial) == utterance.utterance_id:
                pipe.hdel(partials, speaker.value)
            pipe.zadd(keys.stream_conversations(), {cid: time.time()}, xx=True)
            for key in (marks, state):
                pipe.expire(key, self._ttl_s)
            return FinalCommit(decision, overlap, queue_id or None)

        return self._redis.transact([marks, state, partials], body)

    def set_partial(self, utterance: Utterance) -> bool:
        """Show a partial as the speaker's live line; False if its final is already known."""
        keys = self._keys
        cid = utterance.conversation_id
        if self._redis.decoded.hexists(keys.conversation_utterances(cid), utterance.utterance_id):
            return False
        value = json.dumps(
            {
                "utterance_id": utterance.utterance_id,
                "text": utterance.text,
                "received_at": utterance.received_at.isoformat(),
            }
        )
        partials = keys.conversation_partials(cid)
        with self._redis.decoded.pipeline(transaction=True) as pipe:
            pipe.hset(partials, utterance.speaker.value, value)
            pipe.expire(partials, self._ttl_s)
            pipe.execute()
        return True

    def window(self, conversation_id: str) -> list[str]:
        key = self._keys.conversation_transcript(conversation_id)
        return [str(line) for line in self._redis.decoded.lrange(key, 0, -1)]

    def partials(self, conversation_id: str) -> dict[str, dict[str, Any]]:
        raw = self._redis.decoded.hgetall(self._keys.conversation_partials(conversation_id))
        return {str(speaker): json.loads(value) for speaker, value in raw.items()}

    def decisions(self, conversation_id: str) -> dict[str, str]:
        """Utterance id -> gate decision of every final recorded for the conversation."""
        raw = self._redis.decoded.hgetall(self._keys.conversation_utterances(conversation_id))
        return {str(k): str(v) for k, v in raw.items()}

    # --- conversations ---------------------------------------------------------------------
    def follow(self, conversation_id: str, queue_id: str | None) -> bool:
        """Start following a conversation; False when it is already closed (ended before)."""
        keys = self._keys
        state = keys.conversation_stream(conversation_id)
        if self._redis.decoded.hget(state, "status") == CLOSED:
            return False
        now = time.time()
        with self._redis.decoded.pipeline(transaction=True) as pipe:
            pipe.hsetnx(state, "started_at", str(now))
            pipe.hset(state, "status", OPEN)
            if queue_id:
                pipe.hset(state, "queue_id", queue_id)
            pipe.expire(state, self._ttl_s)
            pipe.zadd(keys.stream_conversations(), {conversation_id: now})
            pipe.execute()
        return True

    def is_closed(self, conversation_id: str) -> bool:
        state = self._keys.conversation_stream(conversation_id)
        return self._redis.decoded.hget(state, "status") == CLOSED

    def close(self, conversation_id: str) -> bool:
        """Mark the conversation closed; True if it was not closed before."""
        keys = self._keys
        state = keys.conversation_stream(conversation_id)
        with self._redis.decoded.pipeline(transaction=True) as pipe:
            pipe.hget(state, "status")
            pipe.hset(state, mapping={"status": CLOSED, "ended_at": str(time.time())})
            pipe.expire(state, self._ttl_s)
            pipe.delete(keys.conversation_partials(conversation_id))
            pipe.zrem(keys.stream_conversations(), conversation_id)
            previous = pipe.execute()[0]
        return bool(previous != CLOSED)

    def followed(self, max_age_s: float) -> dict[str, str | None]:
        """Conversations followed and active within `max_age_s`: id -> queue id.

        Older entries are dropped (their call ended without a `SESSION_ENDED` we saw).
        """
        key = self._keys.stream_conversations()
        client = self._redis.decoded
        client.zremrangebyscore(key, "-inf", time.time() - max_age_s)
        ids = [str(cid) for cid in client.zrange(key, 0, -1)]
        followed: dict[str, str | None] = {}
        for cid in ids:
            queue_id = client.hget(self._keys.conversation_stream(cid), "queue_id")
            followed[cid] = str(queue_id) if queue_id else None
        return followed


def _partial_id(raw: str) -> str | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value.get("utterance_id") if isinstance(value, dict) else None


class StreamStatusStore:
    """Counters and status of the stream process, for `/metrics` and operators."""

    def __init__(self, redis: RedisConnections) -> None:
        self._redis = redis
        self._keys = redis.keys

    def add(self, counts: Mapping[str, int]) -> None:
        """Add to the counters (one round trip)."""
        nonzero = {name: value for name, value in counts.items() if value}
        if not nonzero:
            return
        key = self._keys.stream_counters()
        with self._redis.decoded.pipeline(transaction=False) as pipe:
            for name, value in nonzero.items():
                pipe.hincrby(key, name, value)
            pipe.execute()

    def counters(self) -> dict[str, int]:
        raw = self._redis.decoded.hgetall(self._keys.stream_counters())
        return {str(name): int(value) for name, value in raw.items()}

    def set_status(self, status: Mapping[str, Any]) -> None:
        self._redis.decoded.hset(
            self._keys.stream_status(), mapping={name: str(value) for name, value in status.items()}
        )

    def status(self) -> dict[str, str]:
        raw = self._redis.decoded.hgetall(self._keys.stream_status())
        return {str(k): str(v) for k, v in raw.items()}
