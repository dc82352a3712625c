"""The RQ task queue: jobs enqueued by dotted path, JSON-serialized, with explicit connections.

Jobs are referenced as `"workers.jobs.<name>"` strings so the web process never imports the
worker package. Arguments are plain JSON (ids, dicts), which keeps jobs inspectable with
`rq info` and safe from pickle. Enqueues can join a caller's transaction (`pipeline=`), which
is how a record and the job that processes it land in Redis together or not at all.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

import redis
from redis.client import Pipeline
from rq import Callback, Queue, Retry
from rq.exceptions import DequeueTimeout, NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.utils import as_text

JOBS = "workers.jobs"
#: How long RQ keeps a failed job (and its traceback) for inspection.
FAILURE_TTL_S = 7 * 24 * 3600
#: The per-job fields of an RQ job hash; every other field is the same for every job of a kind.
PER_JOB_FIELDS = frozenset({"created_at", "enqueued_at", "data", "description"})


@dataclass(frozen=True)
class PreparedJob:
    """An RQ job kind written by a Redis script rather than by `Queue.enqueue_call`.

    `fields` are the job hash's fields that do not change from one job to the next, exactly as
    RQ's own `Job.to_dict` writes them for this function, queue, timeout and retry; the script
    adds `created_at`, `enqueued_at`, `data` (the JSON serializer's `[func, null, args, {}]`,
    uncompressed, which RQ reads as it is when it is not zlib data) and `description`, then
    pushes the id on the queue and adds the queue to RQ's set of queues, as `enqueue_job` does.
    """

    func: str
    queue_key: str
    queues_key: str
    job_key_prefix: str
    fields: tuple[str, ...]  # flat: name, value, name, value, ...
    at_front: bool = False


def rq_timestamp(when: datetime) -> str:
    """A time as RQ stores it (`rq.utils.utcformat`)."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def attempts_retry(attempts: int, intervals_s: Sequence[int]) -> Retry | None:
    """RQ's retry for a job allowed `attempts` tries in all, waiting `intervals_s` in turn
    and then the last of them again (RQ itself would reuse the *first* one for the retries
    beyond the list)."""
    if attempts <= 1:
        return None
    retries = attempts - 1
    waits = list(intervals_s[:retries]) or [0]
    waits += [waits[-1]] * (retries - len(waits))
    return Retry(max=retries, interval=waits)


class PriorityQueue(Queue):
    """RQ's `Queue` whose `dequeue_any` serves several queues in order without losing a job.

    RQ moves a job into the queue's intermediate list as it takes it (LMOVE) only when a
    worker listens to one queue; with several it pops (BLPOP), and a worker that dies between
    the pop and registering the job as started loses it. Here every take is an LMOVE, the
    queues are tried in priority order, and an idle worker blocks on the first (live) queue,
    looking at the others every `poll_s`: a background job waits at most that long on an idle
    worker, a live job not at all.
    """

    poll_s = 0.5

    @classmethod
    def dequeue_any(
        cls,
        queues: Iterable[Queue],
        timeout: int | None,
        connection: redis.Redis,
        job_class: type[Job] | None = None,
        serializer: Any = None,
        death_penalty_class: Any = None,
    ) -> tuple[Job, Queue] | None:
        ordered = list(queues)
        if len(ordered) < 2:
            return super().dequeue_any(
                ordered, timeout, connection, job_class, serializer, death_penalty_class
            )
        job_cls = job_class or Job
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            taken = None
            for queue in ordered:
                taken = cls.lmove(connection, queue.key, None)
                if taken is not None:
                    break
            if taken is None:
                if deadline is None:
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DequeueTimeout(timeout, [q.key for q in ordered])
                wait_s = min(cls.poll_s, remaining)
                try:
                    # BLMOVE takes fractional seconds since Redis 6; RQ annotates an int.
                    taken = cls.lmove(connection, ordered[0].key, wait_s)  # type: ignore[arg-type]
                except DequeueTimeout:
                    continue
            queue_key, job_id = (as_text(part) for part in taken)
            queue = cls.from_queue_key(
                queue_key,
                connection=connection,
                job_class=job_cls,
                serializer=serializer,
                death_penalty_class=death_penalty_class,
            )
            try:
                job = job_cls.fetch(job_id, connection=connection, serializer=serializer)
            except NoSuchJobError:
                continue  # as RQ: a job deleted while queued is skipped
            return job, queue


class TaskQueue:
    def __init__(self, raw_redis: redis.Redis, *, name: str, job_timeout_s: int) -> None:
        self.queue = Queue(
            name, connection=raw_redis, serializer=JSONSerializer, default_timeout=job_timeout_s
        )

    @property
    def name(self) -> str:
        return str(self.queue.name)

    def enqueue(
        self,
        job: str,
        *args: Any,
        job_id: str | None = None,
        retry: Retry | None = None,
        pipeline: Pipeline | None = None,
        result_ttl: int = 600,
        on_failure: str | None = None,
    ) -> str:
        """Enqueue `workers.jobs.<job>(*args)`; returns the job id.

        `on_failure` names another `workers.jobs` function that RQ calls after every failed
        attempt (with the job, the connection and the exception).
        """
        enqueued = self.queue.enqueue_call(
            f"{JOBS}.{job}",
            args=args,
            job_id=job_id,
            retry=retry,
            pipeline=pipeline,
            result_ttl=result_ttl,
            failure_ttl=FAILURE_TTL_S,
            on_failure=Callback(f"{JOBS}.{on_failure}") if on_failure else None,
        )
        return str(enqueued.id)

    def prepare(
        self, job: str, *, retry: Retry | None = None, result_ttl: int = 600
    ) -> PreparedJob:
        """The fixed part of a `workers.jobs.<job>` job hash, taken from RQ itself (once)."""
        template = self.queue.create_job(
            f"{JOBS}.{job}",
            args=(),
            job_id="template",
            retry=retry,
            result_ttl=result_ttl,
            failure_ttl=FAILURE_TTL_S,
        )
        template.origin = self.queue.name
        fields: list[str] = []
        for name, value in template.to_dict().items():
            if name in PER_JOB_FIELDS:
                continue
            text = value.value if isinstance(value, Enum) else value
            fields += [name, text.decode() if isinstance(text, bytes) else str(text)]
        return PreparedJob(
            func=f"{JOBS}.{job}",
            queue_key=str(self.queue.key),
            queues_key=str(self.queue.redis_queues_keys),
            job_key_prefix=str(self.queue.job_class.redis_job_namespace_prefix),
            fields=tuple(fields),
        )

    def enqueue_at(
        self,
        when: datetime,
        job: str,
        *args: Any,
        job_id: str | None = None,
        retry: Retry | None = None,
        pipeline: Pipeline | None = None,
    ) -> str:
        """Schedule a job; needs a worker started with the scheduler (ours always is)."""
        scheduled = self.queue.enqueue_at(
            when, f"{JOBS}.{job}", *args, job_id=job_id, retry=retry, pipeline=pipeline
        )
        return str(scheduled.id)

    def depth(self) -> int:
        return int(self.queue.count)
