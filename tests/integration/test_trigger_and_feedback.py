"""Trigger, feedback and the Genesys adapter against real Redis and the emulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import wait_for
from tests.integration.conftest import System


def complete(system: System, request_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        system.run_jobs()
        view: dict[str, Any] = system.client.get(f"/v1/suggestions/{request_id}").json()
        return view if view["status"] in ("completed", "failed", "expired") else None

    result: dict[str, Any] = wait_for(done, timeout_s=15)
    return result


def records(system: System) -> dict[str, Any]:
    result: dict[str, Any] = system.emulator.get("/emulator/records").json()
    return result


# --- idempotency ---------------------------------------------------------------------------


def test_idempotency_key_replays_the_same_request(system: System) -> None:
    body = {
        "conversation_id": "c-idem",
        "knowledge_source_ids": ["kb-billing"],
        "transcript": "refund",
    }
    headers = {"Idempotency-Key": "desk-42-attempt"}
    first = system.client.post("/v1/suggestions", json=body, headers=headers)
    second = system.client.post("/v1/suggestions", json=body, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["request_id"] == second.json()["request_id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    # One request, one submission job.
    jobs = system.services.queue.queue.get_jobs()
    assert sum(j.func_name.endswith("submit_query") for j in jobs) == 1


def test_idempotency_key_with_another_body_is_409(system: System) -> None:
    headers = {"Idempotency-Key": "k-1"}
    body = {"conversation_id": "c-1", "knowledge_source_ids": ["kb-billing"], "transcript": "a"}
    assert system.client.post("/v1/suggestions", json=body, headers=headers).status_code == 202
    body["transcript"] = "b"
    conflict = system.client.post("/v1/suggestions", json=body, headers=headers)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_key_reused"


def test_idempotency_keys_are_scoped_per_desk_token(
    system_factory: Callable[..., System],
) -> None:
    system = system_factory(desk_tokens="desk-a,desk-b")
    body = {"conversation_id": "c-1", "knowledge_source_ids": ["kb-billing"], "transcript": "x"}
    ids = set()
    for token in ("desk-a", "desk-b"):
        response = httpx.post(
            f"{system.base_url}/v1/suggestions",
            json=body,
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "same"},
        )
        assert response.status_code == 202
        ids.add(response.json()["request_id"])
    assert len(ids) == 2


# --- transcript window ---------------------------------------------------------------------


def test_trigger_without_transcript_uses_the_live_window(system: System) -> None:
    window_key = system.services.redis.keys.conversation_transcript("c-live")
    system.services.redis.decoded.rpush(window_key, "hello", "I need a refund, charged twice")
    request_id = system.client.post(
        "/v1/suggestions",
        json={"conversation_id": "c-live", "knowledge_source_ids": ["kb-billing"]},
    ).json()["request_id"]
    complete(system, request_id)
    assert records(system)["queries"][0]["body"]["transcript"] == (
        "hello\nI need a refund, charged twice"
    )


def test_trigger_without_transcript_or_window_is_422(system: System) -> None:
    response = system.client.post(
        "/v1/suggestions", json={"conversation_id": "c-empty", "knowledge_source_ids": ["kb-1"]}
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "transcript"


# --- reads ---------------------------------------------------------------------------------


def test_unknown_ids_are_404(system: System) -> None:
    unknown_request = system.client.get("/v1/suggestions/req_nope")
    assert unknown_request.status_code == 404
    assert unknown_request.json()["error"]["code"] == "unknown_request"
    unknown_conversation = system.client.get("/v1/conversations/nobody/suggestions")
    assert unknown_conversation.status_code == 404


def test_repeated_article_is_suppressed_unless_its_score_rises(system: System) -> None:
    first = complete(system, system.trigger(transcript="refund double charge").json()["request_id"])
    shown = {s["id"] for s in first["suggestions"]}
    second = complete(
        system, system.trigger(transcript="refund double charge").json()["request_id"]
    )
    assert second["suggestions"] == []
    assert {s["id"] for s in second["suppressed"]} == shown
    # An acceptance raises one article's score: that one (only) is shown again.
    target = first["suggestions"][0]["id"]
    system.client.post(
        "/v1/feedback",
        json={
            "conversation_id": "conv-1",
            "suggestion_id": target,
            "agent_id": "a",
            "action": "accepted",
        },
    )
    third = complete(system, system.trigger(transcript="refund double charge").json()["request_id"])
    assert [s["id"] for s in third["suggestions"]] == [target]


# --- feedback ------------------------------------------------------------------------------


def _feedback(system: System, suggestion_id: str, action: str, **extra: Any) -> httpx.Response:
    body = {
        "conversation_id": "conv-1",
        "suggestion_id": suggestion_id,
        "agent_id": "a1",
        "action": action,
        **extra,
    }
    return system.client.post("/v1/feedback", json=body)


def test_dismissal_lowers_and_replays_do_not_count(system: System) -> None:
    first = complete(system, system.trigger(transcript="refund double charge").json()["request_id"])
    target = first["suggestions"][0]["id"]
    assert _feedback(system, target, "dismissed").json()["counted"] is True
    assert _feedback(system, target, "dismissed").json()["counted"] is False  # replay
    stats = system.services.feedback.stats([target])[target]
    assert (stats.shown, stats.accepted) == (1, 0)
    assert stats.signal < 0.5
    second = complete(
        system,
        system.trigger(conversation_id="conv-2", transcript="refund double charge").json()[
            "request_id"
        ],
    )
    again = next(s for s in second["suggestions"] if s["id"] == target)
    assert again["score"] < first["suggestions"][0]["score"]


def test_feedback_for_unknown_suggestion_or_request_is_404(system: System) -> None:
    complete(system, system.trigger(transcript="refund").json()["request_id"])
    unknown = _feedback(system, "kb-not-delivered", "accepted")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_suggestion"
    wrong_request = _feedback(system, "x", "accepted", request_id="req_missing")
    assert wrong_request.status_code == 404
    invalid = _feedback(system, "x", "loved-it")
    assert invalid.status_code == 422
    assert invalid.json()["error"]["details"][0]["field"] == "action"


def test_feedback_is_audited_with_redaction(system: System) -> None:
    view = complete(system, system.trigger(transcript="refund").json()["request_id"])
    target = view["suggestions"][0]["id"]
    assert _feedback(system, target, "copied", rating="positive").status_code == 202
    lines = [json.loads(x) for x in Path(system.settings.audit_log_path).read_text().splitlines()]
    recorded = [x for x in lines if x["type"] == "feedback_recorded"]
    assert recorded[-1]["data"]["action"] == "copied"
    assert recorded[-1]["data"]["rating"] == "positive"


# --- Genesys OAuth and submission ----------------------------------------------------------


def test_one_token_serves_many_requests_and_a_401_fetches_a_new_one(system: System) -> None:
    complete(system, system.trigger(transcript="refund").json()["request_id"])
    complete(system, system.trigger(conversation_id="c2", transcript="refund").json()["request_id"])
    assert len(records(system)["token_requests"]) == 1
    system.emulator.post("/emulator/revoke-tokens")
    view = complete(
        system, system.trigger(conversation_id="c3", transcript="refund").json()["request_id"]
    )
    assert view["status"] == "completed"
    tokens = records(system)["token_requests"]
    assert len(tokens) == 2 and all(t["ok"] for t in tokens)
    assert [q["status_code"] for q in records(system)["queries"]][-2:] == [401, 202]


def test_refused_credentials_fail_the_request_with_a_reason(
    system_factory: Callable[..., System],
) -> None:
    system = system_factory(genesys_client_secret="wrong-secret")
    view = complete(system, system.trigger(transcript="refund").json()["request_id"])
    assert view["status"] == "failed"
    assert "credentials" in view["error"]
    audit = Path(system.settings.audit_log_path).read_text()
    assert '"query_failed"' in audit and "wrong-secret" not in audit


def test_provider_errors_beyond_the_retry_budget_fail_the_request(
    system_factory: Callable[..., System],
) -> None:
    # One submission run (a retryable failure is otherwise tried again later, see
    # test_provider_circuit.py), two HTTP attempts, no circuit opening in between.
    system = system_factory(genesys_max_attempts=2, query_submit_attempts=1)
    system.emulator.post("/emulator/faults", json={"server_error_next": 5})
    view = complete(system, system.trigger(transcript="refund").json()["request_id"])
    assert view["status"] == "failed"
    assert "503" in view["error"]


def test_trigger_while_redis_is_unreachable_is_503(system_factory: Callable[..., System]) -> None:
    system = system_factory(redis_url="redis://127.0.0.1:1/0", redis_socket_timeout_s=0.5)
    response = system.trigger(transcript="refund")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.json()["error"]["code"] == "store_unavailable"
