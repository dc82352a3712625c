"""A ranking job whose worker dies after its transaction committed: the retry writes the
records the dead job did not, and never a second copy (tests/faults/test_worker_kill.py kills
real workers; this pins the two half-run cases down deterministically)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from assist.core.models import Candidate
from assist.services.suggestions import rank_candidates
from tests.integration.conftest import System


class WorkerDied(BaseException):
    """Stands for SIGKILL: nothing after it runs."""


def candidates() -> list[Candidate]:
    return [
        Candidate(
            id=f"art-{n}",
            title=f"Article {n}",
            content="How refunds of double charges work.",
            confidence=0.5 + n / 10,
            knowledge_source_id="kb-billing",
        )
        for n in range(3)
    ]


def audit_types(system: System, request_id: str) -> list[str]:
    lines = Path(system.settings.audit_log_path).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    return sorted(
        r["type"]
        for r in records
        if r.get("request_id") == request_id
        and r["type"] in ("suggestions_ranked", "suggestions_delivered")
    )


def queued_request(system: System) -> str:
    response = system.trigger(transcript="refund a double charge", conversation_id="conv-once")
    assert response.status_code == 202
    request_id: str = response.json()["request_id"]
    return request_id


def analytics_types(system: System, request_id: str) -> list[str]:
    return sorted(
        r["type"]
        for r in system.services.analytics.recent(1000)
        if r.get("request_id") == request_id
        and r["type"] in ("suggestions_ranked", "suggestions_delivered")
    )


# `write_pending`: dies before any record is written; `_write_analytics`: after the audit
# lines, before the analytics transaction (which also drops the staged copy).
@pytest.mark.parametrize("dies_in", ["write_pending", "_write_analytics"])
def test_a_retry_after_a_half_run_ranking_writes_each_record_once(
    system: System, monkeypatch: pytest.MonkeyPatch, dies_in: str
) -> None:
    request_id = queued_request(system)
    recorder = system.services.recorder

    def die(*args: Any, **kwargs: Any) -> None:
        raise WorkerDied

    with monkeypatch.context() as patch:
        patch.setattr(recorder, dies_in, die)
        with pytest.raises(WorkerDied):
            rank_candidates(system.services, request_id, candidates(), provider_request_id="q-1")
    # The ranking committed (status, feed), its records may or may not be written.
    view = system.client.get(f"/v1/suggestions/{request_id}").json()
    assert view["status"] == "completed"
    before = audit_types(system, request_id)
    assert before == (
        []
        if dies_in == "write_pending"
        else sorted(["suggestions_ranked", "suggestions_delivered"])
    )

    # RQ's retry of the job: nothing is ranked again, the records are there exactly once.
    again = rank_candidates(system.services, request_id, candidates(), provider_request_id="q-1")
    assert again is not None and again.status.value == "completed"
    assert audit_types(system, request_id) == ["suggestions_delivered", "suggestions_ranked"]
    assert analytics_types(system, request_id) == ["suggestions_delivered", "suggestions_ranked"]
    raw = system.services.redis.raw
    assert raw.xlen(system.services.redis.keys.conversation_feed("conv-once")) == 1
    assert raw.exists(system.services.redis.keys.request_records(request_id)) == 0
    # A third run (another duplicate job) finds nothing left to write.
    assert recorder.replay_pending(system.services.redis.keys.request_records(request_id)) == 0


def test_a_whole_ranking_leaves_no_staged_records(system: System) -> None:
    request_id = queued_request(system)
    rank_candidates(system.services, request_id, candidates(), provider_request_id="q-2")
    keys = system.services.redis.keys
    assert system.services.redis.raw.exists(keys.request_records(request_id)) == 0
    assert audit_types(system, request_id) == ["suggestions_delivered", "suggestions_ranked"]
    assert analytics_types(system, request_id) == ["suggestions_delivered", "suggestions_ranked"]
