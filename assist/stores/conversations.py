"""Per-conversation suggestion state: the latest ranked list, what was shown, and the live feed.

The feed is a Redis Stream per conversation. Each delivered batch is one entry whose id is the
SSE event id, so a desk that reconnects with `Last-Event-ID` resumes exactly where it left off.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from redis.client import Pipeline

from assist.core.models import RankedSuggestion
from assist.stores.redis_client import RedisConnections, decode


class ConversationStore:
    def __init__(self, redis: RedisConnections, *, ttl_s: int, feed_maxlen: int) -> None:
        self._redis = redis
        self._keys = redis.keys
        self._ttl_s = ttl_s
        self._feed_maxlen = feed_maxlen

    def shown_scores_in(self, pipe: Pipeline, conversation_id: str) -> dict[str, float]:
        return self.shown_scores_from(pipe.hgetall(self._keys.conversation_shown(conversation_id)))

    @staticmethod
    def shown_scores_from(raw: dict[Any, Any]) -> dict[str, float]:
        """The shown scores from the HGETALL of `conversation_shown` (read with other reads)."""
        return {str(decode(k)): float(v) for k, v in raw.items()}

    def stage_delivery(
        self,
        pipe: Pipeline,
        conversation_id: str,
        suggestions: Sequence[RankedSuggestion],
        event: dict[str, Any],
    ) -> None:
        """Queue the writes that deliver a ranked batch: latest list, shown scores, feed entry."""
        latest = self._keys.conversation_suggestions(conversation_id)
        shown = self._keys.conversation_shown(conversation_id)
        feed = self._keys.conversation_feed(conversation_id)
        if suggestions:
            pipe.hset(latest, mapping={s.id: s.model_dump_json() for s in suggestions})
            pipe.hset(shown, mapping={s.id: s.score for s in suggestions})
        pipe.xadd(
            feed,
            {"event": json.dumps(event, separators=(",", ":"))},
            maxlen=self._feed_maxlen,
            approximate=True,
        )
        for key in (latest, shown, feed):
            pipe.expire(key, self._ttl_s)

    def transcript_window(self, conversation_id: str) -> str:
        """The live transcript window (final utterances, oldest first) joined into one text.

        The stream process fills it (capability C2); empty when nothing is known.
        """
        lines = self._redis.decoded.lrange(
            self._keys.conversation_transcript(conversation_id), 0, -1
        )
        return "\n".join(str(line) for line in lines)

    def exists(self, conversation_id: str) -> bool:
        keys = self._keys
        return bool(
            self._redis.decoded.exists(
                keys.conversation_suggestions(conversation_id),
                keys.conversation_feed(conversation_id),
            )
        )

    def latest(self, conversation_id: str) -> list[RankedSuggestion]:
        """Latest suggestions of the conversation, all sources merged, best score first."""
        raw = self._redis.decoded.hgetall(self._keys.conversation_suggestions(conversation_id))
        suggestions = [RankedSuggestion.model_validate_json(v) for v in raw.values()]
        suggestions.sort(key=lambda s: (-s.score, s.id))
        return [s.model_copy(update={"rank": i}) for i, s in enumerate(suggestions, start=1)]

    def suggestion(self, conversation_id: str, suggestion_id: str) -> RankedSuggestion | None:
        """The latest delivered version of one suggestion in the conversation, if any."""
        key = self._keys.conversation_suggestions(conversation_id)
        raw = self._redis.decoded.hget(key, suggestion_id)
        return RankedSuggestion.model_validate_json(raw) if raw else None

    def wait_feed(
        self, conversation_id: str, after: str, *, block_ms: int, count: int = 50
    ) -> list[tuple[str, dict[str, Any]]]:
        """Feed entries after `after`, waiting up to `block_ms` for the first one to arrive."""
        key = self._keys.conversation_feed(conversation_id)
        reply: list[tuple[str, list[tuple[str, dict[str, str]]]]]
        reply = self._redis.blocking.xread({key: after}, count=count, block=block_ms)  # type: ignore[assignment]
        entries = reply[0][1] if reply else []
        return [(str(entry_id), json.loads(fields["event"])) for entry_id, fields in entries]

    def feed(
        self, conversation_id: str, after: str = "-", count: int = 100
    ) -> list[tuple[str, dict[str, Any]]]:
        """Feed entries strictly after the given stream id ("-" for the start)."""
        start = f"({after}" if after != "-" else "-"
        entries: list[tuple[str, dict[str, str]]] = self._redis.decoded.xrange(  # type: ignore[assignment]
            self._keys.conversation_feed(conversation_id), min=start, count=count
        )
        return [(str(entry_id), json.loads(fields["event"])) for entry_id, fields in entries or []]
