"""C1 end to end in one process: trigger -> submit job -> signed callback -> rank job -> read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import CLIENT_SECRET, wait_for
from tests.integration.conftest import System


def _records(system: System) -> dict[str, Any]:
    records: dict[str, Any] = system.emulator.get("/emulator/records").json()
    return records


def _audit(system: System) -> list[dict[str, Any]]:
    path = Path(system.settings.audit_log_path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _complete(system: System, request_id: str) -> dict[str, Any]:
    """Drive the queue until the request is terminal (callbacks arrive over real HTTP)."""

    def done() -> dict[str, Any] | None:
        system.run_jobs()
        view: dict[str, Any] = system.client.get(f"/v1/suggestions/{request_id}").json()
        return view if view["status"] in ("completed", "failed", "expired") else None

    result: dict[str, Any] = wait_for(done, timeout_s=15, interval_s=0.05)
    return result


def test_trigger_to_ranked_suggestions(system: System) -> None:
    response = system.trigger(
        transcript="I was charged twice on my bill, I need a refund",
        agent_skills=["billing"],
        knowledge_source_ids=["kb-billing", "kb-accounts"],
        agent_id="agent-7",
    )
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status"] == "queued"
    assert accepted["status_url"] == f"/v1/suggestions/{accepted['request_id']}"

    view = _complete(system, accepted["request_id"])
    assert view["status"] == "completed"
    suggestions = view["suggestions"]
    assert suggestions, "the emulator's billing articles should match this transcript"
    assert [s["rank"] for s in suggestions] == list(range(1, len(suggestions) + 1))
    scores = [s["score"] for s in suggestions]
    assert scores == sorted(scores, reverse=True)
    for s in suggestions:
        why = s["why"]
        expected = round(0.6 * why["confidence"] + 0.3 * why["skill_bonus"] + 0.1 * 0.5, 6)
        assert abs(s["score"] - expected) < 1e-6
        assert why["feedback_signal"] == 0.5
        assert why["skill_bonus"] == (0.15 if "billing" in s["tags"] else 0.0)

    # The provider got the query with our callback URL and a bearer token from the real
    # client-credentials flow; both final statuses were delivered and acknowledged.
    records = _records(system)
    assert records["token_requests"][0]["ok"] is True
    query = records["queries"][0]["body"]
    assert query["callbackUrl"].startswith(f"{system.base_url}/v1/callbacks/genesys")
    assert query["knowledgeSourceIds"] == ["kb-billing", "kb-accounts"]
    statuses = {(c["status"], c["response_status"]) for c in records["callbacks"]}
    assert ("processing", 202) in statuses
    assert ("completed", 202) in statuses

    latest = system.client.get("/v1/conversations/conv-1/suggestions").json()
    assert {s["id"] for s in latest["suggestions"]} == {s["id"] for s in suggestions}

    expected_types = {
        "query_requested",
        "query_submitted",
        "callback_received",
        "suggestions_ranked",
        "suggestions_delivered",
    }
    assert expected_types <= {line["type"] for line in _audit(system)}
    # The same events as analytics records: in Redis for dashboards...
    counters = system.services.analytics.counters()
    assert all(counters.get(t, 0) >= 1 for t in expected_types), counters
    # ...and delivered to the analytics endpoint by the retried delivery job.
    system.run_jobs()
    delivered = {e["type"] for e in _records(system)["analytics_events"]}
    assert expected_types <= delivered
    # ...and summarized as stage latencies for Prometheus.
    metrics = system.client.get("/metrics").text
    assert 'assist_stage_latency_ms{quantile="0.5",stage="ranked"}' in metrics
    assert 'assist_events_total{type="suggestions_ranked"}' in metrics


def test_personal_data_is_redacted_before_it_leaves_or_is_written(system: System) -> None:
    response = system.trigger(
        transcript="card 4111 1111 1111 1111, mail pat@example.com, phone 415-555-2671, refund",
    )
    _complete(system, response.json()["request_id"])
    sent = _records(system)["queries"][0]["body"]["transcript"]
    assert "4111" not in sent and "pat@example.com" not in sent and "555-2671" not in sent
    assert "[CARD]" in sent and "[EMAIL]" in sent and "[PHONE]" in sent
    audit_text = Path(system.settings.audit_log_path).read_text()
    assert "4111 1111" not in audit_text and "pat@example.com" not in audit_text
    assert CLIENT_SECRET not in audit_text


def test_duplicate_callbacks_rank_once(system: System) -> None:
    system.emulator.post("/emulator/faults", json={"duplicate_deliveries": 4})
    request_id = system.trigger(transcript="refund for a double charge").json()["request_id"]
    view = _complete(system, request_id)
    assert view["status"] == "completed"
    # Wait until all five deliveries of the completed callback have been answered.
    completed = wait_for(
        lambda: (
            [c for c in _records(system)["callbacks"] if c["status"] == "completed"]
            if len([c for c in _records(system)["callbacks"] if c["status"] == "completed"]) >= 5
            else None
        )
    )
    codes = sorted(c["response_status"] for c in completed)
    assert codes.count(202) == 1 and codes.count(200) == 4
    system.run_jobs()
    ranked = [
        a
        for a in _audit(system)
        if a["type"] == "suggestions_ranked" and a["request_id"] == request_id
    ]
    assert len(ranked) == 1


def test_provider_rate_limits_are_absorbed_by_retries(system: System) -> None:
    system.emulator.post("/emulator/faults", json={"rate_limit_next": 2, "retry_after_s": 0})
    request_id = system.trigger(transcript="refund please").json()["request_id"]
    view = _complete(system, request_id)
    assert view["status"] == "completed"
    records = _records(system)
    statuses = [r["status_code"] for r in records["queries"]] + [
        429 for t in records["token_requests"] if t["status"] == 429
    ]
    assert statuses.count(429) == 2


def test_feedback_changes_the_next_ranking(system: System) -> None:
    first = _complete(
        system, system.trigger(transcript="refund double charge").json()["request_id"]
    )
    top = first["suggestions"][0]
    response = system.client.post(
        "/v1/feedback",
        json={
            "conversation_id": "conv-1",
            "suggestion_id": top["id"],
            "agent_id": "a1",
            "action": "accepted",
            "request_id": first["request_id"],
        },
    )
    assert response.status_code == 202 and response.json()["counted"] is True
    second = _complete(
        system,
        system.trigger(conversation_id="conv-2", transcript="refund double charge").json()[
            "request_id"
        ],
    )
    again = next(s for s in second["suggestions"] if s["id"] == top["id"])
    assert again["why"]["feedback_signal"] > top["why"]["feedback_signal"]
    assert again["score"] > top["score"]
