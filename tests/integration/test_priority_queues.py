"""The live queue before the background queue, on a real redis-server, without losing a job.

Workers take jobs from `ASSIST_QUEUE_NAME` first and `ASSIST_BACKGROUND_QUEUE_NAME` second
(`PriorityQueue.dequeue_any`): a card never waits behind an analytics delivery that a free
worker could skip, and every take moves the job into its queue's intermediate list, so a
worker dying right after it still leaves the job where RQ's maintenance finds it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis
from rq import Queue
from rq.exceptions import DequeueTimeout
from rq.serializers import JSONSerializer

from assist.adapters.queue import PriorityQueue
from assist.settings import Settings
from tests.redis_server import RedisServer
from workers.rq_worker import AssistSimpleWorker

LIVE, BACKGROUND = "assist", "assist-background"


@pytest.fixture
def raw(redis_server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url)


def queues(raw: redis.Redis) -> list[Queue]:
    return [
        PriorityQueue(name, connection=raw, serializer=JSONSerializer)
        for name in (LIVE, BACKGROUND)
    ]


def enqueue(raw: redis.Redis, name: str, job_id: str) -> None:
    Queue(name, connection=raw, serializer=JSONSerializer).enqueue_call(
        "builtins.len", args=([job_id],), job_id=job_id
    )


def test_the_default_worker_takes_the_live_queue_first() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.queues_to_work == [LIVE, BACKGROUND]
    assert Settings(_env_file=None, worker_queues=BACKGROUND).queues_to_work == [BACKGROUND]  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="ASSIST_WORKER_QUEUES"):
        Settings(_env_file=None, worker_queues="assist,elsewhere")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="must differ"):
        Settings(_env_file=None, background_queue_name="assist")  # type: ignore[call-arg]


def test_live_jobs_are_taken_before_older_background_jobs(raw: redis.Redis) -> None:
    for k in range(3):
        enqueue(raw, BACKGROUND, f"bg-{k}")
    enqueue(raw, LIVE, "live-0")
    enqueue(raw, LIVE, "live-1")
    order = []
    for _ in range(5):
        taken = PriorityQueue.dequeue_any(queues(raw), None, raw, serializer=JSONSerializer)
        assert taken is not None
        job, queue = taken
        order.append((job.id, queue.name))
        # Taken, not yet started: the id waits in its own queue's intermediate list.
        assert job.id.encode() in raw.lrange(queue.intermediate_queue_key, 0, -1)
    assert order == [
        ("live-0", LIVE),
        ("live-1", LIVE),
        ("bg-0", BACKGROUND),
        ("bg-1", BACKGROUND),
        ("bg-2", BACKGROUND),
    ]
    assert PriorityQueue.dequeue_any(queues(raw), None, raw, serializer=JSONSerializer) is None


def test_an_idle_worker_wakes_for_either_queue_and_times_out_on_neither(
    raw: redis.Redis,
) -> None:
    results: dict[str, Any] = {}

    def wait(tag: str) -> None:
        began = time.monotonic()
        try:
            taken = PriorityQueue.dequeue_any(queues(raw), 5, raw, serializer=JSONSerializer)
            results[tag] = (taken[0].id if taken else None, time.monotonic() - began)
        except DequeueTimeout:
            results[tag] = ("timeout", time.monotonic() - began)

    for tag, queue_name in (("live", LIVE), ("background", BACKGROUND)):
        waiter = threading.Thread(target=wait, args=(tag,))
        waiter.start()
        time.sleep(0.2)
        enqueue(raw, queue_name, f"late-{tag}")
        waiter.join(timeout=10)
        job_id, waited = results[tag]
        assert job_id == f"late-{tag}"
        # Live: BLMOVE wakes at once; background: seen at the next look, within poll_s.
        assert waited < 0.2 + PriorityQueue.poll_s + 1.0
    began = time.monotonic()
    with pytest.raises(DequeueTimeout):
        PriorityQueue.dequeue_any(queues(raw), 1, raw, serializer=JSONSerializer)
    assert 0.9 < time.monotonic() - began < 3


def test_a_worker_on_both_queues_runs_each_job_once_and_leaves_nothing_behind(
    raw: redis.Redis,
) -> None:
    enqueue(raw, BACKGROUND, "bg-a")
    enqueue(raw, LIVE, "live-a")
    worker = AssistSimpleWorker(
        [LIVE, BACKGROUND], connection=raw, serializer=JSONSerializer, queue_class=PriorityQueue
    )
    worker.work(burst=True)
    started = {}
    for job_id in ("live-a", "bg-a"):
        status, started_at = raw.hmget(f"rq:job:{job_id}", ("status", "started_at"))
        assert status == b"finished"
        started[job_id] = started_at
    assert started["live-a"] < started["bg-a"]
    for name in (LIVE, BACKGROUND):
        queue = Queue(name, connection=raw)
        assert raw.llen(queue.key) == 0
        assert raw.llen(queue.intermediate_queue_key) == 0  # taken off once started
