"""Per-conversation state of keyword detection (C3) in Redis.

- the analysis buffer: a list of final customer fragments waiting for their window to close;
- the "scheduled" flag: set (with the window id) while an analysis job is scheduled, so a
  burst of fragments schedules one job;
- the delivered cards: a set, so no keyword card is shown twice in a conversation;
- the cooldown: a key that lives `ASSIST_KEYWORD_COOLDOWN_S` after a keyword delivery.

Methods named `stage_*` queue writes on a caller's transaction; `*_in` read through a pipeline
that is watching (before `multi()`), as `RedisConnections.transact` bodies do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict
from redis.client import Pipeline

from assist.stores.redis_client import RedisConnections, decode

# Fragments kept per conversation; older ones are trimmed (a window is seconds of speech).
MAX_FRAGMENTS = 50


class Fragment(BaseModel):
    """One final customer utterance waiting in the buffer (text already redacted)."""

    model_config = ConfigDict(frozen=True)

    utterance_id: str
    text: str
    received_at: datetime


class KeywordStore:
    def __init__(self, redis: RedisConnections, *, ttl_s: int) -> None:
        self._redis = redis
        self._keys = redis.keys
        self._ttl_s = ttl_s

    def watched_for_delivery(self, conversation_id: str) -> list[str]:
        """Keys a delivery transaction watches: cards, cooldown, schedule flag."""
        keys = self._keys
        return [
            keys.keyword_cards(conversation_id),
            keys.keyword_cooldown(conversation_id),
            keys.keyword_scheduled(conversation_id),
        ]

    # --- buffer and schedule -------------------------------------------------------------
    def scheduled_in(self, pipe: Pipeline, conversation_id: str) -> bool:
        return bool(pipe.exists(self._keys.keyword_scheduled(conversation_id)))

    def stage_append(
        self, pipe: Pipeline, conversation_id: str, fragments: Sequence[Fragment], *, ttl_ms: int
    ) -> None:
        key = self._keys.keyword_buffer(conversation_id)
        pipe.rpush(key, *(f.model_dump_json() for f in fragments))
        pipe.ltrim(key, -MAX_FRAGMENTS, -1)
        pipe.pexpire(key, ttl_ms)

    def stage_put_back(
        self, pipe: Pipeline, conversation_id: str, fragments: Sequence[Fragment], *, ttl_ms: int
    ) -> None:
        """Return taken fragments to the front of the buffer, in their original order."""
        key = self._keys.keyword_buffer(conversation_id)
        pipe.lpush(key, *(f.model_dump_json() for f in reversed(fragments)))
        pipe.ltrim(key, 0, MAX_FRAGMENTS - 1)
        pipe.pexpire(key, ttl_ms)

    def stage_mark_scheduled(
        self, pipe: Pipeline, conversation_id: str, window: str, *, ttl_ms: int
    ) -> None:
        pipe.set(self._keys.keyword_scheduled(conversation_id), window, px=ttl_ms)

    def take(self, conversation_id: str) -> list[Fragment]:
        """Atomically empty the buffer and clear the schedule flag; returns the fragments.

        After this, the next fragment starts a new window (and schedules a new job).
        """
        keys = self._keys
        with self._redis.decoded.pipeline(transaction=True) as pipe:
            pipe.lrange(keys.keyword_buffer(conversation_id), 0, -1)
            pipe.delete(keys.keyword_buffer(conversation_id))
            pipe.delete(keys.keyword_scheduled(conversation_id))
            raw, _, _ = pipe.execute()
        return [Fragment.model_validate_json(item) for item in raw]

    def reset(self, conversation_id: str) -> int:
        """Drop the pending fragments; returns how many were dropped."""
        keys = self._keys
        with self._redis.decoded.pipeline(transaction=True) as pipe:
            pipe.llen(keys.keyword_buffer(conversation_id))
            pipe.delete(keys.keyword_buffer(conversation_id))
            dropped, _ = pipe.execute()
        return int(dropped)

    def pending(self, conversation_id: str) -> list[Fragment]:
        raw = self._redis.decoded.lrange(self._keys.keyword_buffer(conversation_id), 0, -1)
        return [Fragment.model_validate_json(item) for item in raw]

    # --- delivered cards and cooldown ----------------------------------------------------
    def delivered_in(self, pipe: Pipeline, conversation_id: str) -> set[str]:
        members = pipe.smembers(self._keys.keyword_cards(conversation_id))
        return {str(decode(m)) for m in members}

    def cooldown_remaining_ms_in(self, pipe: Pipeline, conversation_id: str) -> int:
        """Milliseconds left of the conversation's cooldown (0: none)."""
        return max(int(pipe.pttl(self._keys.keyword_cooldown(conversation_id))), 0)

    def stage_delivered(
        self, pipe: Pipeline, conversation_id: str, card_ids: Iterable[str], *, cooldown_ms: int
    ) -> None:
        cards = self._keys.keyword_cards(conversation_id)
        pipe.sadd(cards, *card_ids)
        pipe.expire(cards, self._ttl_s)
        if cooldown_ms > 0:
            pipe.set(self._keys.keyword_cooldown(conversation_id), "1", px=cooldown_ms)

    def delivered(self, conversation_id: str) -> set[str]:
        members = self._redis.decoded.smembers(self._keys.keyword_cards(conversation_id))
        return {str(m) for m in members}
