"""Worker entry point: `python -m workers.rq_worker [--burst]`.

Runs one RQ worker on the project's queue (one queue per process, so RQ uses its reliable
BLMOVE dequeue), with the scheduler on (delayed retries, request expiry) and a short
maintenance interval so jobs abandoned by a dead worker are retried within about a minute.
`ASSIST_WORKER_CLASS=simple` (the default) runs jobs in the worker process; `fork` forks a
work horse per job, isolating jobs from each other at about 4x the latency
(benchmarks/README.md).

Local knowledge bases (C4): at start the worker ingests `ASSIST_KB_INGEST_ON_START` and, with
`ASSIST_KB_PRELOAD`, loads the embedding model and the indexes, so the first query does not
pay for them. A `simple` worker also runs one embedding to warm up; a `fork` worker must not
(torch's thread pool does not survive `fork`; shared/reference/dependencies.md §3.4), and its
work horses inherit the loaded model.

RQ retries a lost Redis connection only while waiting for a job; a connection lost while it
books a job's result ends `work()` with the error. A Redis restart must not take the worker
down with it (honcho stops every process when one exits), so this entry point builds a new
worker and carries on once Redis answers again.
"""

from __future__ import annotations

import argparse
import time

from rq import SimpleWorker, Worker
from rq.serializers import JSONSerializer
from rq.worker import BaseWorker

# Imported here, in the parent, so a forked work horse inherits the job module instead of
# importing it again for every job (measured: about half of a forked job's cost).
import workers.jobs  # noqa: F401
from assist.bootstrap import Services
from assist.logconfig import get_logger
from assist.services.local_kb import ingest_on_start
from assist.stores.redis_client import REDIS_UNAVAILABLE_ERRORS
from workers import runtime

log = get_logger(__name__)
MAX_BACKOFF_S = 30.0


def build_worker(services: Services) -> BaseWorker:
    settings = services.settings
    worker_class: type[BaseWorker] = SimpleWorker if settings.worker_class == "simple" else Worker
    return worker_class(
        [settings.queue_name],
        connection=services.redis.raw,
        serializer=JSONSerializer,
        maintenance_interval=settings.worker_maintenance_interval_s,
    )


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


if __name__ == "__main__":
    main()
