"""`GET /v1/analytics/...`: the dashboard's figures as JSON, for the dashboard and other tools.

`from` and `to` are ISO-8601 with a time zone (default: the last 24 hours).
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, TypeAdapter, ValidationError

from assist.core.analytics import Summary
from assist.errors import FieldValidationError
from assist.services import copilot
from assist.services.dashboard import summary, time_range
from webapp.inputs import require_desk_token
from webapp.schemas import (
    AcceptanceView,
    AnalyticsSummaryView,
    DismissedView,
    LatencyView,
    VolumeView,
)
from webapp.services import services

bp = Blueprint("analytics", __name__)
_DATETIME = TypeAdapter(datetime)
EARLIEST = datetime(2000, 1, 1)
LATEST = datetime(9000, 1, 1)
GROUPINGS = {
    "knowledge_source": "by_knowledge_source",
    "article": "by_article",
    "skill": "by_skill",
}


def _param(name: str) -> datetime | None:
    value = request.args.get(name)
    if not value:
        return None
    try:
        parsed = _DATETIME.validate_python(value)
    except ValidationError as exc:
        raise FieldValidationError(
            f"{name} is not an ISO-8601 date-time",
            details=[{"field": name, "message": "expected e.g. 2026-11-20T10:00:00Z"}],
        ) from exc
    # Records are kept by arrival time in milliseconds since 1970: a range reaching before
    # that (or near the end of the calendar) cannot be asked of the store.
    if not EARLIEST <= parsed.replace(tzinfo=None) <= LATEST:
        raise FieldValidationError(
            f"{name} must be between {EARLIEST.year} and {LATEST.year}",
            details=[{"field": name, "message": "date-time out of range"}],
        )
    return parsed


def _summary() -> Summary:
    svc = require_desk_token(allow_query_token=True)
    start, end = time_range(_param("from"), _param("to"))
    return summary(svc, start, end)


def _json(view: BaseModel) -> Response:
    return jsonify(view.model_dump(mode="json", by_alias=True))


@bp.get("/v1/analytics/summary")
def analytics_summary() -> Response:
    result = _summary()
    return _json(
        AnalyticsSummaryView(
            start=result.start,
            end=result.end,
            acceptance=result.acceptance,
            volume=result.volume,
            latency={"stages": result.latency},
            dismissed={"rows": result.dismissed},
            totals=result.totals,
            copilot={"by_type": result.copilot, "counters": copilot.figures(services())},
        )
    )


@bp.get("/v1/analytics/acceptance")
def analytics_acceptance() -> Response:
    by = request.args.get("by", "knowledge_source")
    if by not in GROUPINGS:
        raise FieldValidationError(
            f"by must be one of {', '.join(GROUPINGS)}", details=[{"field": "by", "message": by}]
        )
    result = _summary()
    rows = getattr(result.acceptance, GROUPINGS[by])
    return _json(AcceptanceView(start=result.start, end=result.end, by=by, rows=rows))


@bp.get("/v1/analytics/volume")
def analytics_volume() -> Response:
    result = _summary()
    return _json(
        VolumeView(
            start=result.start,
            end=result.end,
            bucket_s=result.volume.bucket_s,
            buckets=result.volume.buckets,
        )
    )


@bp.get("/v1/analytics/latency")
def analytics_latency() -> Response:
    result = _summary()
    return _json(LatencyView(start=result.start, end=result.end, stages=result.latency))


@bp.get("/v1/analytics/dismissed")
def analytics_dismissed() -> Response:
    result = _summary()
    return _json(DismissedView(start=result.start, end=result.end, rows=result.dismissed))
