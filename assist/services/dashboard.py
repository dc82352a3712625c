"""Dashboard figures for a time range, from the analytics records kept in Redis."""

from __future__ import annotations

from datetime import datetime, timedelta

from assist.bootstrap import Services
from assist.core.analytics import Summary, summarize
from assist.core.models import utcnow
from assist.errors import FieldValidationError

DEFAULT_RANGE = timedelta(hours=24)
MAX_RANGE = timedelta(days=31)
# The stream is capped (ASSIST_ANALYTICS_STREAM_MAXLEN); this bounds one request's work.
MAX_RECORDS = 200_000


def time_range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """The requested range, defaulting to the last 24 hours; refuses inverted or huge ones."""
    end = end or utcnow()
    start = start or end - DEFAULT_RANGE
    if start.tzinfo is None or end.tzinfo is None:
        raise FieldValidationError(
            "from and to need a time zone (e.g. 2026-11-20T10:00:00Z)",
            details=[
                {"field": "from" if start.tzinfo is None else "to", "message": "time zone required"}
            ],
        )
    if start >= end:
        raise FieldValidationError(
            "from must be before to", details=[{"field": "from", "message": "after 'to'"}]
        )
    if end - start > MAX_RANGE:
        raise FieldValidationError(
            "the range may span at most 31 days",
            details=[{"field": "from", "message": "range longer than 31 days"}],
        )
    return start, end


def summary(services: Services, start: datetime, end: datetime) -> Summary:
    records = services.analytics.between(
        int(start.timestamp() * 1000), int(end.timestamp() * 1000), MAX_RECORDS
    )
    return summarize(records, start, end)
