"""Liveness, readiness, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from webapp.metrics import render_metrics
from webapp.openapi import build_openapi
from webapp.schemas import HealthView
from webapp.services import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(HealthView(status="ok").model_dump(mode="json"))


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    svc = services()
    checks: dict[str, object] = {}
    ready = True
    try:
        svc.redis.decoded.ping()
        checks["redis"] = "ok"
        checks["queue_depth"] = svc.queue.depth()
    except Exception as exc:  # readiness reports, it never raises
        ready = False
        checks["redis"] = f"unreachable: {type(exc).__name__}"
    if svc.local_kb.source_ids:
        # A knowledge base without an index only means no local hits: reported, not fatal.
        checks["local_kb"] = svc.local_kb.statuses()
    view = HealthView(status="ok" if ready else "unavailable", checks=checks)
    response = jsonify(view.model_dump(mode="json"))
    if not ready:
        response.headers["Retry-After"] = "5"
    return response, 200 if ready else 503


@bp.get("/metrics")
def metrics() -> Response:
    body, content_type = render_metrics(services())
    return Response(body, content_type=content_type)


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(build_openapi())
