"""The record writer: audit line first, analytics never fatal, latency budgets warned about."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

from structlog.testing import capture_logs

from assist.core.audit import EventType, RecordEvent
from assist.services.records import Recorder
from assist.stores.audit_log import AuditLog


def recorder(tmp_path: Path, budgets: dict[str, int] | None = None) -> Recorder:
    redis = MagicMock()
    redis.raw.pipeline.side_effect = ConnectionError("redis down")
    return Recorder(
        AuditLog(tmp_path / "audit.jsonl"),
        MagicMock(),
        MagicMock(),
        redis,
        deliver=True,
        budgets_ms=budgets,
    )


def warnings(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == "latency.over_budget"]


def test_a_stage_over_its_budget_logs_a_warning(tmp_path: Path) -> None:
    writer = recorder(tmp_path, {"suggestions_ranked": 100, "utterance_received": 1000})
    with capture_logs() as logs:
        writer.record(RecordEvent.create(EventType.SUGGESTIONS_RANKED, latency_ms=99))
        writer.record(RecordEvent.create(EventType.SUGGESTIONS_RANKED, latency_ms=101))
        writer.record(RecordEvent.create(EventType.UTTERANCE_SYNCED, latency_ms=10_000))
    over = warnings(logs)
    assert [(w["event_type"], w["latency_ms"], w["budget_ms"]) for w in over] == [
        ("suggestions_ranked", 101, 100)
    ]


def test_a_lag_figure_counts_against_the_budget_too(tmp_path: Path) -> None:
    writer = recorder(tmp_path, {"utterance_synced": 1000})
    with capture_logs() as logs:
        writer.record(RecordEvent.create(EventType.UTTERANCE_SYNCED, lag_ms=1500))
    assert warnings(logs)[0]["latency_ms"] == 1500


def test_redis_failure_still_writes_the_audit_line(tmp_path: Path) -> None:
    writer = recorder(tmp_path)
    with capture_logs() as logs:
        writer.record(RecordEvent.create(EventType.FEEDBACK_RECORDED, action="accepted"))
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["data"]["action"] == "accepted"
    assert any(entry["event"] == "analytics.write_failed" for entry in logs)
