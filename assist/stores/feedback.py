"""Feedback counters that the ranking reads.

Per suggestion: `shown` counts conversations in which agents reported seeing it, `accepted`
those in which they adopted it (accepted or copied). Each conversation counts once per
suggestion, so a desktop that replays its feedback cannot skew the ranking. Every action is
also counted as it comes (`action:<name>`) for analytics.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from assist.core.models import FeedbackAction, FeedbackStats
from assist.stores.redis_client import RedisConnections

# Atomic "count once per conversation": SET NX of the marker and the increment happen together.
_COUNT_ONCE = """
local counted = 0
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then
  redis.call('HINCRBY', KEYS[3], 'shown', 1)
  counted = 1
end
if ARGV[1] == '1' and redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then
  redis.call('HINCRBY', KEYS[3], 'accepted', 1)
  counted = counted + 2
end
redis.call('HINCRBY', KEYS[3], 'action:' .. ARGV[3], 1)
return counted
"""


#: The counters `stats` reads from a suggestion's stats hash, in the order `stats_from` takes.
STATS_FIELDS = ("shown", "accepted")


class FeedbackStore:
    def __init__(self, redis: RedisConnections, *, mark_ttl_s: int) -> None:
        self._redis = redis
        self._keys = redis.keys
        self._mark_ttl_s = mark_ttl_s
        self._count_once = redis.decoded.register_script(_COUNT_ONCE)

    def record(self, conversation_id: str, suggestion_id: str, action: FeedbackAction) -> bool:
        """Count one feedback action; returns whether it changed shown/accepted counts."""
        keys = self._keys
        result = self._count_once(
            keys=[
                keys.feedback_mark(conversation_id, suggestion_id, "shown"),
                keys.feedback_mark(conversation_id, suggestion_id, "accepted"),
                keys.feedback_stats(suggestion_id),
            ],
            args=["1" if action.is_adoption else "0", self._mark_ttl_s, action.value],
        )
        return bool(result)

    def stats(self, suggestion_ids: Iterable[str]) -> dict[str, FeedbackStats]:
        ids = list(dict.fromkeys(suggestion_ids))
        if not ids:
            return {}
        pipe = self._redis.decoded.pipeline(transaction=False)
        for suggestion_id in ids:
            pipe.hmget(self._keys.feedback_stats(suggestion_id), list(STATS_FIELDS))
        return self.stats_from(ids, pipe.execute())

    def stats_reads(self, suggestion_ids: Sequence[str]) -> list[tuple[str, ...]]:
        """The read commands behind `stats` (distinct ids), for a caller that sends them with
        other reads (`RedisConnections.watch_and_read`); `stats_from` turns their replies
        into the stats."""
        return [
            ("HMGET", self._keys.feedback_stats(suggestion_id), *STATS_FIELDS)
            for suggestion_id in suggestion_ids
        ]

    @staticmethod
    def stats_from(
        suggestion_ids: Sequence[str], replies: Sequence[Sequence[bytes | str | None]]
    ) -> dict[str, FeedbackStats]:
        return {
            suggestion_id: FeedbackStats(shown=int(shown or 0), accepted=int(accepted or 0))
            for suggestion_id, (shown, accepted) in zip(suggestion_ids, replies, strict=True)
        }
