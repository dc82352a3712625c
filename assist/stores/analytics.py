"""Analytics records kept in Redis for dashboards: a capped stream plus per-type counters."""

from __future__ import annotations

import json
from typing import Any

from redis.client import Pipeline

from assist.core.audit import RecordEvent
from assist.stores.redis_client import RedisConnections


class AnalyticsStore:
    def __init__(self, redis: RedisConnections, *, maxlen: int) -> None:
        self._redis = redis
        self._keys = redis.keys
        self._maxlen = maxlen

    def stage_add(self, pipe: Pipeline, event: RecordEvent) -> None:
        pipe.xadd(
            self._keys.analytics_events(),
            {"record": json.dumps(event.to_record(), separators=(",", ":"))},
            maxlen=self._maxlen,
            approximate=True,
        )
        pipe.hincrby(self._keys.analytics_counters(), event.type.value, 1)

    def counters(self) -> dict[str, int]:
        raw = self._redis.decoded.hgetall(self._keys.analytics_counters())
        return {str(k): int(v) for k, v in raw.items()}

    def recent(self, count: int = 100) -> list[dict[str, Any]]:
        key = self._keys.analytics_events()
        entries: list[tuple[str, dict[str, str]]]
        entries = self._redis.decoded.xrevrange(key, count=count)  # type: ignore[assignment]
        return [json.loads(fields["record"]) for _, fields in entries]
