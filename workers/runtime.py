"""Per-process state of a worker: its `Services`, built on first use, and the job wrapper.

Services are built lazily so that nothing connects at import time, and so that a forked work
horse that rebuilds nothing still gets working clients (redis-py resets its pool after fork;
the parent never opens HTTP connections).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import structlog
from rq import get_current_job

from assist.bootstrap import Services, build_services
from assist.core.audit import EventType, RecordEvent
from assist.logconfig import configure_logging, get_logger
from assist.settings import Settings, get_settings

P = ParamSpec("P")
R = TypeVar("R")

log = get_logger("workers.job")
_services: Services | None = None


def install(services: Services) -> None:
    """Use these services in this process (entry point and tests)."""
    global _services
    _services = services


def services() -> Services:
    global _services
    if _services is None:
        settings: Settings = get_settings()
        configure_logging(settings)
        _services = build_services(settings)
    return _services


def _context_of(args: tuple[object, ...]) -> dict[str, str]:
    """The request and conversation a job is about, from its JSON arguments."""
    for arg in args:
        if isinstance(arg, str) and arg.startswith("req_"):
            return {"request_id": arg}
        if isinstance(arg, dict):
            return {k: str(arg[k]) for k in ("request_id", "conversation_id") if arg.get(k)}
    return {}


def job(func: Callable[P, R]) -> Callable[P, R]:
    """Bind the job's context to every log line and write one canonical line per job.

    A job that raises is recorded as an `error` event before RQ moves it to its failed
    registry (or retries it), so failures show in the audit trail too.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        current = get_current_job()
        job_id = current.id if current is not None else None
        context = _context_of(args)
        request_id = context.get("request_id")
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(job_id=job_id, job=func.__name__, **context)
        started = time.perf_counter()
        outcome = "ok"
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            outcome = "error"
            services().recorder.record(
                RecordEvent.create(
                    EventType.ERROR,
                    request_id=request_id,
                    job=func.__name__,
                    job_id=job_id,
                    error_type=type(exc).__name__,
                    error=str(exc),
                )
            )
            raise
        finally:
            queued_ms = None
            if current is not None and current.enqueued_at and current.started_at:
                # Time spent waiting for a worker: what a queue that is too busy shows first.
                waited = current.started_at - current.enqueued_at
                queued_ms = round(waited.total_seconds() * 1000, 1)
            log.info(
                "job",
                outcome=outcome,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                queued_ms=queued_ms,
            )
            structlog.contextvars.clear_contextvars()

    return wrapper
