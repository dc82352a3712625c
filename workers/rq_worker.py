"""Worker entry point: `python -m workers.rq_worker [--burst]`.

Runs one RQ worker with the scheduler on (delayed retries, request expiry), taking jobs from
the live queue first and the background queue second (`ASSIST_WORKER_QUEUES` to choose):
analytics, audit outbox and webhook deliveries never hold up a ranking or a card while a
worker is free to take it. Every dequeue moves the job into its queue's intermediate list
(`PriorityQueue`; RQ's own multi-queue dequeue pops, and would lose a job to a worker dying
right after the pop).

Abandoned jobs (a worker killed mid-job). RQ 2.12 keeps a running job in the queue's
StartedJobRegistry scored with an expiry; any live worker's maintenance pass
(`StartedJobRegistry.cleanup`) takes the expired ones, runs their failure callback and
retries them per their `Retry` (`job.retry`: at once or scheduled) while retries are left,
else moves them to the FailedJobRegistry. RQ's defaults make that slow: the expiry is the
job timeout + 60 s for a SimpleWorker (which never heartbeats a running job) or the
monitoring interval + 60 s for a forking one, maintenance runs every 10 minutes, an idle
worker blocks in BLMOVE for `worker_ttl - 15` = 405 s before it even looks, and the
maintenance lock, not released when a pass fails, blocks every other worker for 899 s. Here:

* a busy worker heartbeats its running job every `ASSIST_WORKER_HEARTBEAT_S` (the simple
  worker from a thread, the forking one from RQ's horse monitor), and the registry entry
  expires `ASSIST_WORKER_ABANDONED_AFTER_S` after the last heartbeat;
* maintenance every `ASSIST_WORKER_MAINTENANCE_INTERVAL_S`, and `worker_ttl` such that an
  idle worker wakes from BLMOVE that often to run it;
* the maintenance lock expires after one interval and is released even when the pass fails;
* a job left between dequeue and start (in RQ's intermediate list: the worker died, or lost
  Redis, in that instant) is retried once seen there for abandoned-after (RQ: a minute).

A job killed with its worker is so retried within about abandoned-after + one interval
(tests/faults/test_worker_kill.py measures it). Jobs that must survive that (ranking,
submission) have a `Retry` whose first interval is 0, so the retry is enqueued at once and
does not wait for a scheduler (the dead worker may have held the scheduler lock, which RQ
keeps for 60 s).
`ASSIST_WORKER_CLASS=simple` (the default) runs jobs in the worker process; `fork` forks a
work horse per job, isolating jobs from each other at about 4x the latency
(benchmarks/README.md).

Local knowledge bases (C4): at start the worker ingests `ASSIST_KB_INGEST_ON_START` and, with
`ASSIST_KB_PRELOAD`, loads the embedding model and the indexes, so the first query does not
pay for them. A `simple` worker also runs one embedding to warm up; a `fork` worker must not
(thread pools do not survive `fork`; shared/reference/dependencies.md §3.4): it loads the
model on one thread and its work horses inherit it.

RQ retries a lost Redis connection only while waiting for a job; a connection lost while it
books a job's result ends `work()` with the error. A Redis restart must not take the worker
down with it (honcho stops every process when one exits), so this entry point builds a new
worker and carries on once Redis answers again.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from datetime import timedelta
from typing import Any

from redis.exceptions import RedisError
from rq import SimpleWorker, Worker, worker_registration
from rq.job import Job
from rq.queue import Queue
from rq.registry import clean_registries
from rq.serializers import JSONSerializer
from rq.utils import now
from rq.worker import BaseWorker, WorkerStatus

# Imported here, in the parent, so a forked work horse inherits the job module instead of
# importing it again for every job (measured: about half of a forked job's cost).
import workers.jobs  # noqa: F401
from assist.adapters.queue import PriorityQueue
from assist.bootstrap import Services
from assist.logconfig import get_logger
from assist.services.local_kb import ingest_on_start
from assist.stores.redis_client import REDIS_UNAVAILABLE_ERRORS
from workers import runtime

log = get_logger(__name__)
MAX_BACKOFF_S = 30.0


def _clean_intermediate_queue(worker: BaseWorker, queue: Queue, stuck_after_s: int) -> None:
    """RQ's `IntermediateQueue.cleanup` with our threshold instead of RQ's minute.

    A worker moves a job from the queue to the intermediate list (BLMOVE), then registers it
    as started. A worker that dies (or loses Redis) in between leaves it only there: a job
    seen there, not started, on two passes `stuck_after_s` apart is failed like an abandoned
    one, so it is retried per its `Retry`. A live worker spends milliseconds in between."""
    intermediate = queue.intermediate_queue
    for job_id in intermediate.get_job_ids():
        if job_id in queue.started_job_registry:
            continue
        job = queue.fetch_job(job_id)
        if job is None:
            intermediate.remove(job_id)
            continue
        first_seen = intermediate.get_first_seen(job_id)
        if first_seen is None:
            intermediate.set_first_seen(job_id)
        elif now() - first_seen > timedelta(seconds=stuck_after_s):
            worker.handle_job_failure(job, queue, exc_string="Job was stuck in intermediate queue.")
            intermediate.remove(job_id)


def _clean_registries(worker: BaseWorker, stuck_after_s: int) -> None:
    """RQ's `BaseWorker.clean_registries`, with a maintenance lock that expires after one
    interval (RQ: 899 s) and is released even when the pass fails (RQ: kept until it expires,
    so a Redis blip in the middle of a pass stopped abandoned-job recovery for 15 minutes),
    and jobs stranded between dequeue and start retried after `stuck_after_s` (RQ: 60 s)."""
    for queue in worker.queues:
        lock = queue.connection.set(
            queue.registry_cleaning_key, 1, nx=True, ex=worker.maintenance_interval
        )
        if not lock:
            continue
        try:
            worker.log.info("Worker %s: cleaning registries for queue: %s", worker.name, queue.name)
            clean_registries(queue, worker._exc_handlers)
            worker_registration.clean_worker_registry(queue)
            _clean_intermediate_queue(worker, queue, stuck_after_s)
        finally:
            with contextlib.suppress(RedisError):
                queue.connection.delete(queue.registry_cleaning_key)
    worker.last_cleaned_at = now()  # type: ignore[assignment]  # RQ declares it None


def _prepare_job_execution(worker: BaseWorker, job: Job) -> None:
    # RQ takes the job off the intermediate list only for a one-queue worker; our dequeue
    # always puts it there (PriorityQueue), so always take it off.
    BaseWorker.prepare_job_execution(worker, job, remove_from_intermediate_queue=True)


class AssistSimpleWorker(SimpleWorker):
    """RQ's SimpleWorker (jobs run in the worker process) that heartbeats its running job."""

    abandoned_after_s = 30

    def get_heartbeat_ttl(self, job: Job) -> int:
        return self.abandoned_after_s

    def clean_registries(self) -> None:
        _clean_registries(self, self.abandoned_after_s)

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        _prepare_job_execution(self, job)

    def execute_job(self, job: Job, queue: Queue) -> None:
        self.prepare_execution(job)
        stop = threading.Event()
        beat = threading.Thread(
            target=self._heartbeats, args=(job, stop), name="job-heartbeat", daemon=True
        )
        beat.start()
        try:
            self.perform_job(job, queue)
        finally:
            stop.set()
            beat.join()
        self.set_state(WorkerStatus.IDLE)

    def _heartbeats(self, job: Job, stop: threading.Event) -> None:
        """What RQ's horse monitor does for a forking worker: keep the job's registry entry,
        the execution and the worker key alive while the job runs."""
        while not stop.wait(self.job_monitoring_interval):
            try:
                self.maintain_heartbeats(job)
            except Exception as exc:  # a missed beat only brings the expiry closer
                if stop.is_set():
                    return
                log.warning("worker.heartbeat_failed", job_id=job.id, error=repr(exc))


class AssistWorker(Worker):
    """RQ's forking Worker; its horse monitor heartbeats every `job_monitoring_interval`."""

    abandoned_after_s = 30

    def get_heartbeat_ttl(self, job: Job) -> int:
        return self.abandoned_after_s

    def clean_registries(self) -> None:
        _clean_registries(self, self.abandoned_after_s)

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        _prepare_job_execution(self, job)


def build_worker(services: Services) -> BaseWorker:
    settings = services.settings
    worker_class: type[AssistSimpleWorker | AssistWorker] = (
        AssistSimpleWorker if settings.worker_class == "simple" else AssistWorker
    )
    options: dict[str, Any] = {
        "connection": services.redis.raw,
        "serializer": JSONSerializer,
        "queue_class": PriorityQueue,
        "maintenance_interval": settings.worker_maintenance_interval_s,
        "job_monitoring_interval": settings.worker_heartbeat_s,
        # An idle worker blocks in BLMOVE for worker_ttl - 15 s between maintenance checks.
        "worker_ttl": settings.worker_maintenance_interval_s + 15,
    }
    worker = worker_class(settings.queues_to_work, **options)
    worker.abandoned_after_s = settings.worker_abandoned_after_s
    return worker


def prepare_local_kb(services: Services) -> None:
    settings = services.settings
    if not settings.local_kb_source_ids:
        return
    ingest_on_start(settings)
    if settings.kb_preload:
        services.local_kb.preload(warm_up=settings.worker_class == "simple")


def wait_for_redis(services: Services) -> None:
    backoff = 1.0
    while True:
        try:
            services.redis.raw.ping()
            return
        except REDIS_UNAVAILABLE_ERRORS as exc:
            log.warning("worker.redis_unavailable", error=str(exc), retry_in_s=backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workers.rq_worker")
    parser.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    args = parser.parse_args(argv)
    services = runtime.services()
    level = services.settings.log_level
    prepare_local_kb(services)
    while True:
        wait_for_redis(services)
        worker = build_worker(services)
        try:
            worker.work(burst=args.burst, with_scheduler=True, logging_level=level)
            return
        except REDIS_UNAVAILABLE_ERRORS as exc:
            log.warning("worker.restarting_after_redis_error", error=str(exc))
            # The scheduler runs in a child process of the old worker; a new one starts with
            # the new worker, so the old one must not linger.
            process = getattr(worker.scheduler, "_process", None)
            if process is not None and process.is_alive():
                process.terminate()
            # Nor its command-channel thread: RQ's teardown unsubscribes it only after
            # registering the worker's death, which fails while Redis is away, and the thread
            # would retry (and later listen) for the dead worker forever, one per outage.
            thread = getattr(worker, "pubsub_thread", None)
            if thread is not None:
                thread.stop()


if __name__ == "__main__":
    main()
