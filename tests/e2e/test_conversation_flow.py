"""End to end with real processes: redis-server, emulator, gunicorn (2 workers), rq worker.

Each test drives the public HTTP API only and checks what a contact-centre engineer would:
suggestions arrive ranked, feedback moves the ranking, duplicate and forged callbacks do no
harm, provider rate limits are absorbed, and an acknowledged callback survives a dead worker
and a Redis restart.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from tests.processes import CALLBACK_SECRET, ProcessSystem

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessSystem]:
    with ProcessSystem(tmp_path_factory.mktemp("e2e")) as running:
        yield running


@pytest.fixture(autouse=True)
def _clean_emulator(system: ProcessSystem) -> Iterator[None]:
    system.emulator.post("/emulator/reset")
    yield
    system.emulator.post("/emulator/reset")


def audit_lines(system: ProcessSystem) -> list[dict[str, Any]]:
    if not system.audit_path.exists():
        return []
    return [json.loads(line) for line in system.audit_path.read_text().splitlines()]


def wait_until(predicate: Any, timeout_s: float = 20) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not met within {timeout_s}s")


def test_trigger_rank_feedback_rerank(system: ProcessSystem) -> None:
    accepted = system.trigger(
        conversation_id="e2e-feedback-1",
        transcript="I was charged twice on my bill and want a refund",
        agent_skills=["billing"],
        knowledge_source_ids=["kb-billing", "kb-accounts"],
    )
    assert accepted.status_code == 202
    first = system.wait_terminal(accepted.json()["request_id"])
    assert first["status"] == "completed" and first["suggestions"]
    # Accept the lowest-ranked suggestion: the next ranking must lift it.
    target = first["suggestions"][-1]
    feedback = system.desk.post(
        "/v1/feedback",
        json={
            "conversation_id": "e2e-feedback-1",
            "suggestion_id": target["id"],
            "agent_id": "agent-1",
            "action": "accepted",
        },
    )
    assert feedback.status_code == 202
    second = system.wait_terminal(
        system.trigger(
            conversation_id="e2e-feedback-2",
            transcript="I was charged twice on my bill and want a refund",
            agent_skills=["billing"],
            knowledge_source_ids=["kb-billing", "kb-accounts"],
        ).json()["request_id"]
    )
    again = next(s for s in second["suggestions"] if s["id"] == target["id"])
    assert again["why"]["feedback_signal"] > target["why"]["feedback_signal"]
    assert again["score"] > target["score"]
    latest = system.desk.get("/v1/conversations/e2e-feedback-1/suggestions")
    assert latest.status_code == 200
    assert {s["id"] for s in latest.json()["suggestions"]} == {
        s["id"] for s in first["suggestions"]
    }


def test_five_deliveries_of_one_callback_rank_once(system: ProcessSystem) -> None:
    system.faults(duplicate_deliveries=4)
    request_id = system.trigger(conversation_id="e2e-dup", transcript="refund a double charge")
    request_id = request_id.json()["request_id"]
    assert system.wait_terminal(request_id)["status"] == "completed"

    def completed_deliveries() -> list[dict[str, Any]] | None:
        found = [c for c in system.records()["callbacks"] if c["status"] == "completed"]
        done = [c for c in found if c["response_status"] is not None]
        return done if len(done) >= 5 else None

    codes = sorted(c["response_status"] for c in wait_until(completed_deliveries))
    assert codes == [200, 200, 200, 200, 202]
    time.sleep(0.5)  # a second ranking, if there were one, would have been written by now
    ranked = [
        a
        for a in audit_lines(system)
        if a["type"] == "suggestions_ranked" and a["request_id"] == request_id
    ]
    assert len(ranked) == 1


def test_forged_and_stale_callbacks_are_refused_and_change_nothing(system: ProcessSystem) -> None:
    request_id = system.trigger(conversation_id="e2e-forged", transcript="refund").json()[
        "request_id"
    ]
    assert system.wait_terminal(request_id)["status"] == "completed"
    before = len(audit_lines(system))
    body = json.dumps({"id": "q_forged", "status": "completed", "suggestions": []})
    url = f"{system.web_url}/v1/callbacks/genesys?request_id={request_id}"
    forged = Webhook("whsec_ODK2QtRS3piknpqJLyw7rIwbonwhHL6o")  # not a configured secret
    now = time.time()
    cases = {
        "unsigned": {},
        "wrong secret": _signed_headers(forged, body, now),
        "stale": _signed_headers(Webhook(CALLBACK_SECRET), body, now - 600),
    }
    for label, headers in cases.items():
        response = httpx.post(
            url, content=body, headers={"Content-Type": "application/json", **headers}
        )
        assert response.status_code == 401, label
        assert response.json()["error"]["code"] in (
            "missing_signature",
            "invalid_signature",
            "expired_signature",
        )
    assert len(audit_lines(system)) == before


def _signed_headers(webhook: Webhook, body: str, at: float) -> dict[str, str]:
    from datetime import UTC, datetime

    msg_id = f"msg_{int(at * 1000)}"
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at)),
        "webhook-signature": webhook.sign(msg_id, datetime.fromtimestamp(at, UTC), body),
    }


def test_provider_429s_are_absorbed(system: ProcessSystem) -> None:
    system.faults(rate_limit_next=3, retry_after_s=1)
    request_id = system.trigger(conversation_id="e2e-429", transcript="refund please").json()[
        "request_id"
    ]
    view = system.wait_terminal(request_id)
    assert view["status"] == "completed", view
    records = system.records()
    refused = [t for t in records["token_requests"] if t["status"] == 429] + [
        q for q in records["queries"] if q["status_code"] == 429
    ]
    assert len(refused) == 3


def test_acknowledged_callback_survives_dead_worker_and_redis_restart(
    system: ProcessSystem,
) -> None:
    system.faults(callback_delay_ms=1500)
    request_id = system.trigger(conversation_id="e2e-durable", transcript="refund please").json()[
        "request_id"
    ]
    wait_until(
        lambda: system.desk.get(f"/v1/suggestions/{request_id}").json()["status"] == "submitted"
    )
    # The worker dies hard before the callback arrives: nobody can rank it.
    system.stop_process("worker", signal.SIGKILL)

    def acknowledged() -> bool:
        return any(
            c["status"] == "completed" and c["response_status"] == 202
            for c in system.records()["callbacks"]
        )

    wait_until(acknowledged)
    # Redis dies hard too, and comes back from its append-only file.
    assert system.redis.process is not None
    system.redis.process.kill()
    system.redis.process.wait()
    system.redis.process = None
    while_down = system.desk.get(f"/v1/suggestions/{request_id}")
    assert while_down.status_code == 503
    assert while_down.headers["Retry-After"]
    assert while_down.json()["error"]["code"] == "store_unavailable"
    system.redis.start()
    system.start_worker()
    view = system.wait_terminal(request_id)
    assert view["status"] == "completed" and view["suggestions"]


def test_trigger_while_redis_is_down_is_503_never_2xx(system: ProcessSystem) -> None:
    system.redis.stop()
    try:
        response = system.trigger(conversation_id="e2e-down", transcript="refund")
        assert response.status_code == 503
        assert int(response.headers["Retry-After"]) > 0
    finally:
        system.redis.start()
        system.wait_http(f"{system.web_url}/readyz")
    # The worker reconnects by itself once Redis is back.
    request_id = system.trigger(conversation_id="e2e-up", transcript="refund").json()["request_id"]
    assert system.wait_terminal(request_id)["status"] == "completed"


def test_audit_file_is_well_formed_with_several_writers(system: ProcessSystem) -> None:
    # gunicorn's two workers and the RQ worker all append to the same file.
    lines = Path(system.audit_path).read_text().splitlines()
    assert lines
    parsed = [json.loads(line) for line in lines]
    assert all({"event_id", "type", "ts", "data"} <= set(p) for p in parsed)
    assert len({p["event_id"] for p in parsed}) == len(parsed)
