"""Worker entry point: `python -m workers.rq_worker [--burst]`.

Runs one RQ worker on the project's queue (one queue per process, so RQ uses its reliable
BLMOVE dequeue), with the scheduler on (delayed retries, request expiry) and a short
maintenance interval so jobs abandoned by a dead worker are retried within about a minute.
`ASSIST_WORKER_CLASS=simple` runs jobs in-process instead of forking a work horse per job.
"""

from __future__ import annotations

import argparse

from rq import SimpleWorker, Worker
from rq.serializers import JSONSerializer

from workers import runtime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workers.rq_worker")
    parser.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    args = parser.parse_args(argv)
    services = runtime.services()
    settings = services.settings
    worker_class = SimpleWorker if settings.worker_class == "simple" else Worker
    worker = worker_class(
        [settings.queue_name],
        connection=services.redis.raw,
        serializer=JSONSerializer,
        maintenance_interval=settings.worker_maintenance_interval_s,
    )
    worker.work(burst=args.burst, with_scheduler=True, logging_level=settings.log_level)


if __name__ == "__main__":
    main()
