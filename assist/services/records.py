"""Writing record events: one audit line, one analytics record, and a delivery job when needed.

Audit and analytics failures are logged, never raised: the suggestion path must not fail
because a dashboard counter could not be written. The audit line is written first, because
it is the record of last resort.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from redis.client import Pipeline
from rq import Retry

from assist.adapters.queue import TaskQueue
from assist.core.audit import EventType, RecordEvent
from assist.core.models import SuggestionRequest
from assist.logconfig import get_logger
from assist.stores.analytics import AnalyticsStore
from assist.stores.audit_log import AuditLog
from assist.stores.redis_client import RedisConnections

log = get_logger(__name__)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Recorder:
    def __init__(
        self,
        audit: AuditLog,
        analytics: AnalyticsStore,
        queue: TaskQueue,
        redis: RedisConnections,
        *,
        deliver: bool,
        budgets_ms: dict[str, int] | None = None,
        delivery_retry: Retry | None = None,
    ) -> None:
        self.audit = audit
        self._analytics = analytics
        self._queue = queue
        self._redis = redis
        self._deliver = deliver
        self._budgets = budgets_ms or {}
        #: How the analytics delivery job is retried (ASSIST_ANALYTICS_ATTEMPTS / _RETRY_S).
        self.delivery_retry = delivery_retry

    def _check_budget(self, event: RecordEvent) -> None:
        budget = self._budgets.get(event.type.value)
        observed = event.data.get("latency_ms", event.data.get("lag_ms"))
        if budget is not None and isinstance(observed, int | float) and observed > budget:
            log.warning(
                "latency.over_budget",
                event_type=event.type.value,
                latency_ms=observed,
                budget_ms=budget,
                conversation_id=event.conversation_id,
                request_id=event.request_id,
            )

    def record_for(self, request: SuggestionRequest, event_type: EventType, **data: Any) -> None:
        """Record an event about a suggestion request (its ids and agent filled in)."""
        self.record(
            RecordEvent.create(
                event_type,
                request_id=request.request_id,
                conversation_id=request.conversation_id,
                agent_id=request.agent_id,
                **data,
            )
        )

    # --- records that must follow a Redis transaction exactly once ---------------------------
    # A job stages its events in the transaction that commits its work, writes them after the
    # commit, then drops the staged copy (in the analytics transaction, after the audit
    # lines). A retry of a job whose worker died in between finds the work already done and
    # the staged copy still there: it writes the events (the audit lines only if they are not
    # in the log yet) instead of none or a second set.
    def stage_pending(
        self, pipe: Pipeline, key: str, events: Sequence[RecordEvent], ttl_s: int
    ) -> None:
        """Queue (in `pipe`'s MULTI) the events to write once the transaction commits."""
        pipe.set(key, json.dumps([e.to_record() for e in events]), ex=ttl_s)

    def write_pending(self, key: str, events: Sequence[RecordEvent]) -> None:
        """After the commit: write the staged events, then drop the staged copy."""
        self.record_many(events, drop_staged=key)

    def replay_pending(self, key: str) -> int:
        """Write events a dead job staged but may not have written; returns how many."""
        try:
            raw = self._redis.raw.get(key)
        except Exception as exc:
            log.error("records.pending_read_failed", key=key, error=describe(exc))
            return 0
        if raw is None:
            return 0
        events = [RecordEvent.model_validate(item) for item in json.loads(raw)]
        self.record_many(events, once=True, drop_staged=key)
        log.warning("records.pending_replayed", key=key, events=len(events))
        return len(events)

    def _drop_pending(self, key: str) -> None:
        try:
            self._redis.raw.delete(key)
        except Exception as exc:  # it expires; a retry would only find its lines written
            log.error("records.pending_drop_failed", key=key, error=describe(exc))

    def record(self, event: RecordEvent, *, once: bool = False) -> None:
        """Write one audit line and one analytics record (`once`: no audit line if the log
        already has this event; analytics are at least once, deduplicated by `event_id`)."""
        self.record_many([event], once=once)

    def record_many(
        self,
        events: Sequence[RecordEvent],
        *,
        once: bool = False,
        drop_staged: str | None = None,
    ) -> None:
        """`record` for several events: one audit append (one lock, one write) and one
        analytics transaction. `drop_staged`: the key of the events' staged copy
        (`stage_pending`), deleted in the analytics transaction, so after the audit lines."""
        if not events:
            if drop_staged is not None:
                self._drop_pending(drop_staged)
            return
        for event in events:
            self._check_budget(event)
        try:
            self.audit.append_many(events, once=once)
        except OSError as exc:
            log.error("audit.write_failed", path=str(self.audit.path), error=describe(exc))
        self._write_analytics(events, drop_staged)

    def _write_analytics(self, events: Sequence[RecordEvent], drop_staged: str | None) -> None:
        try:
            with self._redis.raw.pipeline(transaction=True) as pipe:
                for event in events:
                    self._analytics.stage_add(pipe, event)
                if drop_staged is not None:
                    pipe.delete(drop_staged)
                if self._deliver:
                    self._analytics.stage_schedule_delivery(pipe)
                replies = pipe.execute()
            # Only the event that set the flag enqueues: one job per burst, not per event.
            if self._deliver and replies[-1]:
                self._queue.enqueue("deliver_analytics", retry=self.delivery_retry)
        except Exception as exc:
            log.error(
                "analytics.write_failed",
                event_type=",".join(sorted({e.type.value for e in events})),
                error=describe(exc),
            )
            if drop_staged is not None:
                # As before analytics joined the drop: the audit lines are written.
                self._drop_pending(drop_staged)
