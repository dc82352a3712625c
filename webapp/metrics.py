"""Prometheus metrics, read from Redis at scrape time.

The web process may run several gunicorn workers, and most events happen in RQ workers, so
in-process counters would each see a fraction. Instead a collector reads the shared state
(analytics counters, queue depth, failed-job registry) when Prometheus scrapes, which is
correct whatever the number of processes.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from assist.bootstrap import Services


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
        queue = self._services.queue.queue
        depth = GaugeMetricFamily("assist_queue_depth", "Jobs waiting", labels=["queue"])
        depth.add_metric([queue.name], queue.count)
        yield depth
        failed = GaugeMetricFamily(
            "assist_failed_jobs", "Jobs in the failed registry (dead letters)", labels=["queue"]
        )
        failed.add_metric([queue.name], queue.failed_job_registry.count)
        yield failed


def render_metrics(services: Services) -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AssistCollector(services))
    return generate_latest(registry), CONTENT_TYPE_LATEST
