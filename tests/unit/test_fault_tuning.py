"""The knobs the fault scenarios (tests/faults) rely on: abandoned-job detection, delivery
retry schedules and the audit log's append-once."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest
from pydantic import ValidationError
from rq import Queue, Retry
from rq.serializers import JSONSerializer

from assist.adapters.queue import attempts_retry
from assist.core.audit import EventType, RecordEvent, verify_chain
from assist.settings import Settings
from assist.stores.audit_log import AuditLog
from workers.rq_worker import (
    AssistSimpleWorker,
    AssistWorker,
    _clean_intermediate_queue,
    build_worker,
)


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_a_retry_schedule_repeats_its_last_wait_not_its_first() -> None:
    retry = attempts_retry(6, [1, 5])
    assert retry is not None and retry.max == 5 and retry.intervals == [1, 5, 5, 5, 5]
    shorter = attempts_retry(3, [1, 5, 15])
    assert shorter is not None and shorter.intervals == [1, 5]
    assert attempts_retry(1, [1]) is None


def test_delivery_schedules_are_comma_separated_seconds() -> None:
    parsed = settings(analytics_retry_s="1, 2,3", training_webhook_retry_s="4")
    assert parsed.analytics_retry_s == [1, 2, 3]
    assert parsed.training_webhook_retry_s == [4]
    with pytest.raises(ValidationError):
        settings(analytics_retry_s="1,-2")


def test_a_job_cannot_be_taken_for_abandoned_between_two_heartbeats() -> None:
    with pytest.raises(ValidationError, match="ABANDONED_AFTER"):
        settings(worker_heartbeat_s=5, worker_abandoned_after_s=10)
    assert settings(worker_heartbeat_s=1, worker_abandoned_after_s=3).worker_abandoned_after_s == 3


@pytest.mark.parametrize(
    ("worker_class", "expected"), [("simple", AssistSimpleWorker), ("fork", AssistWorker)]
)
def test_workers_heartbeat_and_look_for_abandoned_jobs_as_configured(
    worker_class: str, expected: type[Any]
) -> None:
    configured = settings(
        worker_class=worker_class,
        worker_heartbeat_s=2,
        worker_abandoned_after_s=7,
        worker_maintenance_interval_s=6,
    )
    connection = fakeredis.FakeRedis()
    services = SimpleNamespace(settings=configured, redis=SimpleNamespace(raw=connection))
    worker = build_worker(services)  # type: ignore[arg-type]
    assert type(worker) is expected
    assert worker.job_monitoring_interval == 2
    assert worker.maintenance_interval == 6
    # An idle worker wakes from BLMOVE every maintenance interval to run maintenance.
    assert worker.dequeue_timeout == 6
    assert worker.get_heartbeat_ttl(SimpleNamespace(timeout=600)) == 7  # type: ignore[arg-type]


def test_append_once_skips_an_event_already_in_the_log(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", rotate="never")
    event = RecordEvent.create(EventType.SUGGESTIONS_RANKED, request_id="req_1", ranked=[])
    other = RecordEvent.create(EventType.SUGGESTIONS_DELIVERED, request_id="req_1")
    log.append(event)
    log.append(other)
    assert log.append_once(event) is False
    assert log.append_once(RecordEvent.create(EventType.ERROR, request_id="req_1")) is True
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert [json.loads(line)["event_id"] for line in lines].count(event.event_id) == 1
    verify_chain(lines)


def test_a_job_stranded_between_dequeue_and_start_is_retried() -> None:
    connection = fakeredis.FakeRedis()
    queue = Queue("assist", connection=connection, serializer=JSONSerializer)
    job = queue.enqueue_call("workers.jobs.rank_callback", args=("req_1",), retry=Retry(max=2))
    # What a worker's BLMOVE does before it registers the job as started; then it died.
    connection.lmove(queue.key, queue.intermediate_queue.key, "RIGHT", "LEFT")
    assert queue.count == 0
    worker = AssistSimpleWorker([queue], connection=connection, serializer=JSONSerializer)
    _clean_intermediate_queue(worker, queue, stuck_after_s=0)  # first seen
    assert queue.count == 0
    time.sleep(0.01)
    _clean_intermediate_queue(worker, queue, stuck_after_s=0)
    assert queue.job_ids == [job.id]
    assert queue.intermediate_queue.get_job_ids() == []
