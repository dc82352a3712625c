"""Prometheus metrics, read from Redis at scrape time.

The web process may run several gunicorn workers, and most events happen in RQ workers, so
in-process counters would each see a fraction. Instead a collector reads the shared state
(analytics counters, queue depth, failed-job registry) when Prometheus scrapes, which is
correct whatever the number of processes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from assist.bootstrap import Services
from assist.core.analytics import copilot as copilot_stats
from assist.core.analytics import latency
from assist.services.copilot import counters as copilot_counters
from assist.stores.rate_limits import refused_counts
from assist.stores.transcripts import StreamStatusStore

LATENCY_WINDOW_S = 15 * 60
LATENCY_MAX_RECORDS = 50_000


class AssistCollector(Collector):
    def __init__(self, services: Services) -> None:
        self._services = services

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        events = CounterMetricFamily(
            "assist_events", "Record events written, by type", labels=["type"]
        )
        for event_type, count in sorted(self._services.analytics.counters().items()):
            events.add_metric([event_type], count)
        yield events
        queues = [self._services.queue.queue, self._services.background.queue]
        depth = GaugeMetricFamily("assist_queue_depth", "Jobs waiting", labels=["queue"])
        failed = GaugeMetricFamily(
            "assist_failed_jobs", "Jobs in the failed registry (dead letters)", labels=["queue"]
        )
        for queue in queues:
            depth.add_metric([queue.name], queue.count)
            failed.add_metric([queue.name], queue.failed_job_registry.count)
        yield depth
        yield failed
        yield from self._circuits()
        records = self._recent_records()
        yield self._stage_latency(records)
        yield from self._copilot(records)
        stream = CounterMetricFamily(
            "assist_stream_events",
            "Live transcript stream: frames and utterances by outcome (dropped ones by reason)",
            labels=["outcome"],
        )
        for outcome, count in sorted(StreamStatusStore(self._services.redis).counters().items()):
            stream.add_metric([outcome], count)
        yield stream
        refused = CounterMetricFamily(
            "assist_rate_limited",
            "Requests refused with 429, by endpoint and by the limit they exceeded (agent, ip)",
            labels=["endpoint", "limit"],
        )
        for name, count in sorted(refused_counts(self._services.redis).items()):
            endpoint, _, scope = name.partition(".")
            refused.add_metric([endpoint, scope], count)
        yield refused

    def _circuits(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        """The per-provider circuit breakers (shared state in Redis)."""
        state = GaugeMetricFamily(
            "assist_provider_circuit_state",
            "Circuit breaker of each outbound provider: 1 for its current state",
            labels=["circuit", "state"],
        )
        failures = GaugeMetricFamily(
            "assist_provider_circuit_failures",
            "Consecutive failed attempts counted towards opening the circuit",
            labels=["circuit"],
        )
        opens = CounterMetricFamily(
            "assist_provider_circuit_opens",
            "Times the circuit opened (all time)",
            labels=["circuit"],
        )
        for status in self._services.breaker.statuses():
            for name in ("closed", "open", "half-open"):
                state.add_metric([status.circuit, name], 1.0 if status.state == name else 0.0)
            failures.add_metric([status.circuit], status.failures)
            opens.add_metric([status.circuit], status.opens)
        yield state
        yield failures
        yield opens

    def _recent_records(self) -> list[dict[str, Any]]:
        end_ms = int(time.time() * 1000)
        return list(
            self._services.analytics.between(
                end_ms - LATENCY_WINDOW_S * 1000, end_ms, LATENCY_MAX_RECORDS
            )
        )

    def _copilot(
        self, records: list[dict[str, Any]]
    ) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        """Copilot insights: totals per type and sync outcome, recent latency and share <500 ms."""
        counts = copilot_counters(self._services)
        processed = CounterMetricFamily(
            "assist_copilot_insights",
            "Copilot insights processed, by insight type (all time)",
            labels=["insight_type"],
        )
        fast = CounterMetricFamily(
            "assist_copilot_insights_under_500ms",
            "Copilot insights delivered within 500 ms of their event time, by insight type",
            labels=["insight_type"],
        )
        sync = CounterMetricFamily(
            "assist_copilot_sync",
            "Training-platform deliveries by outcome (failed attempts, dead-lettered insights)",
            labels=["outcome"],
        )
        for name, value in sorted(counts.items()):
            family, _, label = name.partition(".")
            if family == "processed":
                processed.add_metric([label], value)
            elif family == "under_500ms":
                fast.add_metric([label], value)
            elif family == "sync":
                sync.add_metric([label], value)
        yield processed
        yield fast
        yield sync
        latency_gauge = GaugeMetricFamily(
            "assist_copilot_latency_ms",
            f"Copilot event time -> delivered, over the last {LATENCY_WINDOW_S // 60} minutes",
            labels=["insight_type", "quantile"],
        )
        share = GaugeMetricFamily(
            "assist_copilot_under_500ms_ratio",
            f"Share of Copilot insights delivered within 500 ms, last {LATENCY_WINDOW_S // 60} "
            "minutes",
            labels=["insight_type"],
        )
        for row in copilot_stats(records):
            for quantile, ms in (("0.5", row.p50_ms), ("0.95", row.p95_ms)):
                if ms is not None:
                    latency_gauge.add_metric([row.insight_type, quantile], ms)
            if row.under_500ms is not None:
                share.add_metric([row.insight_type], row.under_500ms)
        yield latency_gauge
        yield share

    def _stage_latency(self, records: list[dict[str, Any]]) -> GaugeMetricFamily:
        """p50/p95 per stage over the last few minutes, from the same records as the dashboard."""
        gauge = GaugeMetricFamily(
            "assist_stage_latency_ms",
            f"Latency per stage over the last {LATENCY_WINDOW_S // 60} minutes",
            labels=["stage", "quantile"],
        )
        for stage in latency(records):
            for quantile, value in (("0.5", stage.p50_ms), ("0.95", stage.p95_ms)):
                if value is not None:
                    gauge.add_metric([stage.stage, quantile], value)
        return gauge


def render_metrics(services: Services) -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AssistCollector(services))
    return generate_latest(registry), CONTENT_TYPE_LATEST
