"""Writing record events: one audit line, one analytics record, and a delivery job when needed.

Audit and analytics failures are logged, never raised: the suggestion path must not fail
because a dashboard counter could not be written. The audit line is written first, because
it is the record of last resort.
"""

from __future__ import annotations

from typing import Any

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


# Delivery to the analytics endpoint: 5 more tries over about 13 minutes.
ANALYTICS_RETRY = Retry(max=5, interval=[1, 5, 30, 120, 600])


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
    ) -> None:
        self.audit = audit
        self._analytics = analytics
        self._queue = queue
        self._redis = redis
        self._deliver = deliver
        self._budgets = budgets_ms or {}

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

    def record(self, event: RecordEvent) -> None:
        self._check_budget(event)
        try:
            self.audit.append(event)
        except OSError as exc:
            log.error("audit.write_failed", path=str(self.audit.path), error=describe(exc))
        try:
            with self._redis.raw.pipeline(transaction=True) as pipe:
                self._analytics.stage_add(pipe, event)
                if self._deliver:
                    self._analytics.stage_schedule_delivery(pipe)
                replies = pipe.execute()
            # Only the event that set the flag enqueues: one job per burst, not per event.
            if self._deliver and replies[-1]:
                self._queue.enqueue("deliver_analytics", retry=ANALYTICS_RETRY)
        except Exception as exc:
            log.error("analytics.write_failed", event_type=event.type.value, error=describe(exc))
