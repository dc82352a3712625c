"""Analytics records in Redis: a capped stream (the dashboards' source and the delivery outbox),
per-type counters, and the cursor of what has been delivered to the analytics endpoint.

Delivery is coalesced: recording an event sets a "delivery scheduled" flag, and only the
event that sets it enqueues a delivery job. The job sends everything after the cursor in
batches and moves the cursor, so a burst of events costs one job, and an endpoint outage
loses nothing (delivery resumes from the cursor; records are sent at least once, each with
its `event_id` for the receiver to deduplicate).
"""

from __future__ import annotations

import json
from typing import Any

from redis.client import Pipeline

from assist.core.audit import RecordEvent
from assist.stores.redis_client import RedisConnections

# Longer than the delivery job's whole retry schedule, so a failing endpoint does not make
# every new event enqueue another job; after it lapses the next event schedules afresh.
SCHEDULED_FLAG_TTL_S = 900


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

    def stage_schedule_delivery(self, pipe: Pipeline) -> None:
        """Queue a SET NX of the flag; its reply says whether this caller must enqueue the job."""
        pipe.set(self._keys.analytics_delivery_flag(), "1", nx=True, ex=SCHEDULED_FLAG_TTL_S)

    def clear_delivery_flag(self) -> None:
        self._redis.decoded.delete(self._keys.analytics_delivery_flag())

    def delivery_lock(self, timeout_s: int) -> Any:
        return self._redis.decoded.lock(
            self._keys.analytics_delivery_lock(), timeout=timeout_s, blocking_timeout=timeout_s
        )

    def undelivered(self, count: int) -> list[tuple[str, dict[str, Any]]]:
        """The oldest records after the delivery cursor, with their stream ids."""
        cursor = str(self._redis.decoded.get(self._keys.analytics_cursor()) or "0-0")
        entries: list[tuple[str, dict[str, str]]]
        entries = self._redis.decoded.xrange(  # type: ignore[assignment]
            self._keys.analytics_events(), min=f"({cursor}", count=count
        )
        return [(entry_id, json.loads(fields["record"])) for entry_id, fields in entries or []]

    def mark_delivered(self, stream_id: str) -> None:
        self._redis.decoded.set(self._keys.analytics_cursor(), stream_id)

    def between(self, start_ms: int, end_ms: int, limit: int) -> list[dict[str, Any]]:
        """Records added in [start_ms, end_ms] (stream ids are arrival times), oldest first."""
        records: list[dict[str, Any]] = []
        cursor = str(start_ms)
        while len(records) < limit:
            entries: list[tuple[str, dict[str, str]]]
            entries = self._redis.decoded.xrange(  # type: ignore[assignment]
                self._keys.analytics_events(),
                min=cursor,
                max=str(end_ms),
                count=min(5000, limit - len(records)),
            )
            if not entries:
                break
            records.extend(json.loads(fields["record"]) for _, fields in entries)
            cursor = f"({entries[-1][0]}"
        return records

    def counters(self) -> dict[str, int]:
        raw = self._redis.decoded.hgetall(self._keys.analytics_counters())
        return {str(k): int(v) for k, v in raw.items()}

    def recent(self, count: int = 100) -> list[dict[str, Any]]:
        key = self._keys.analytics_events()
        entries: list[tuple[str, dict[str, str]]]
        entries = self._redis.decoded.xrevrange(key, count=count)  # type: ignore[assignment]
        return [json.loads(fields["record"]) for _, fields in entries]
