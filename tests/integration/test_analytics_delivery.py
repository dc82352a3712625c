"""Analytics delivery from the Redis outbox: coalesced, batched, and nothing lost on failure."""

from __future__ import annotations

import time
from typing import Any

import pytest

from assist.adapters.analytics_sink import AnalyticsDeliveryError
from assist.core.audit import EventType, RecordEvent
from assist.services.analytics import deliver_pending
from tests.integration.conftest import System


def delivered(system: System) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = system.emulator.get("/emulator/records").json()[
        "analytics_events"
    ]
    return events


def record_many(system: System, count: int) -> list[str]:
    ids = []
    for n in range(count):
        event = RecordEvent.create(EventType.FEEDBACK_RECORDED, conversation_id=f"c-{n}", n=n)
        system.services.recorder.record(event)
        ids.append(event.event_id)
    return ids


def delivery_jobs(system: System) -> int:
    # Deliveries go to the background queue, never to the live one.
    assert not [j for j in system.services.queue.queue.get_jobs() if "deliver" in j.func_name]
    jobs = system.services.background.queue.get_jobs()
    return sum(1 for job in jobs if job.func_name == "workers.jobs.deliver_analytics")


def test_a_burst_of_events_schedules_one_delivery_job(system: System) -> None:
    ids = record_many(system, 25)
    assert delivery_jobs(system) == 1
    system.run_jobs()
    assert [e["event_id"] for e in delivered(system)] == ids
    # The flag is clear again: the next event schedules the next delivery.
    record_many(system, 1)
    assert delivery_jobs(system) == 1


def test_an_endpoint_outage_loses_nothing_and_sends_nothing_twice(system: System) -> None:
    ids = record_many(system, 5)
    system.emulator.post("/emulator/faults", json={"analytics_error_next": 1})
    with pytest.raises(AnalyticsDeliveryError):
        deliver_pending(system.services)
    assert delivered(system) == []
    later = record_many(system, 3)
    assert deliver_pending(system.services) == 8
    assert [e["event_id"] for e in delivered(system)] == ids + later
    assert deliver_pending(system.services) == 0


def test_large_backlogs_go_in_batches(system: System) -> None:
    ids = record_many(system, 1203)
    assert deliver_pending(system.services) == 1203
    assert [e["event_id"] for e in delivered(system)] == ids


def test_a_job_that_finds_delivery_busy_does_not_wait_and_nothing_is_stranded(
    system: System,
) -> None:
    ids = record_many(system, 4)
    holder = system.services.analytics.delivery_lock(60)
    assert holder.acquire(blocking=False)
    try:
        started = time.monotonic()
        assert deliver_pending(system.services) == 0
        assert time.monotonic() - started < 1.0, "the job waited for the lock"
        scheduled = system.services.background.queue.scheduled_job_registry.get_job_ids()
        assert len(scheduled) == 1
        assert delivered(system) == []
    finally:
        holder.release()
    # The successor, once due, sends what was waiting.
    time.sleep(1.1)
    system.run_due_jobs()
    assert [e["event_id"] for e in delivered(system)] == ids
