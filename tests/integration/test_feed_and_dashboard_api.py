"""The live feed (SSE) and the dashboard's JSON, against real Redis and the emulator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import DESK_TOKEN, wait_for
from tests.integration.conftest import System


def complete(system: System, **trigger: Any) -> dict[str, Any]:
    request_id = system.trigger(**trigger).json()["request_id"]

    def done() -> dict[str, Any] | None:
        system.run_jobs()
        view: dict[str, Any] = system.client.get(f"/v1/suggestions/{request_id}").json()
        return view if view["status"] in ("completed", "failed", "expired") else None

    result: dict[str, Any] = wait_for(done, timeout_s=15)
    return result


def read_events(
    system: System,
    conversation_id: str,
    count: int,
    *,
    headers: dict[str, str] | None = None,
    query: str = "",
) -> list[dict[str, str]]:
    """Read `count` SSE events (id + event + data) from a fresh connection."""
    url = f"{system.base_url}/v1/conversations/{conversation_id}/events?access_token={DESK_TOKEN}"
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    with httpx.stream("GET", url + query, headers=headers or {}, timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                if "id" in current:
                    events.append(current)
                    if len(events) >= count:
                        break
                current = {}
                continue
            field, _, value = line.partition(": ")
            if field in ("id", "event", "data"):
                current[field] = value
    return events


@pytest.fixture
def keepalive_system(system_factory: Callable[..., System]) -> System:
    return system_factory(feed_keepalive_s=1)


def test_feed_replays_early_suggestions_and_resumes_after_last_event_id(
    keepalive_system: System,
) -> None:
    system = keepalive_system
    complete(system, conversation_id="feed-1", transcript="refund double charge")
    complete(
        system,
        conversation_id="feed-1",
        transcript="router wifi down",
        knowledge_source_ids=["kb-tech"],
    )
    # A desk that opens after both rankings still gets them, in order.
    first_two = read_events(system, "feed-1", 2)
    assert [e["event"] for e in first_two] == ["suggestions", "suggestions"]
    assert first_two[0]["id"] < first_two[1]["id"]
    # Reconnecting after the first gets exactly the second; nothing twice.
    resumed = read_events(system, "feed-1", 1, headers={"Last-Event-ID": first_two[0]["id"]})
    assert resumed == [first_two[1]]


def test_malformed_last_event_id_starts_afresh(keepalive_system: System) -> None:
    system = keepalive_system
    complete(system, conversation_id="feed-2", transcript="refund")
    for bad in ("not-an-id", "../../etc", "1-2-3", "9" * 40):
        events = read_events(system, "feed-2", 1, headers={"Last-Event-ID": bad})
        assert len(events) == 1


def test_unknown_conversation_is_an_open_feed_that_fills_later(keepalive_system: System) -> None:
    system = keepalive_system
    url = f"{system.base_url}/v1/conversations/feed-later/events?access_token={DESK_TOKEN}"
    with httpx.stream("GET", url, timeout=10) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(lines).startswith("retry:")
        comments = []
        for line in lines:
            if line.startswith(":"):
                comments.append(line)
            if ": keep-alive" in comments:
                break
        assert ": keep-alive" in comments


def test_feed_needs_the_desk_token(system: System) -> None:
    response = httpx.get(f"{system.base_url}/v1/conversations/c/events", timeout=5)
    assert response.status_code == 401
    wrong = httpx.get(f"{system.base_url}/v1/conversations/c/events?access_token=x", timeout=5)
    assert wrong.status_code == 401


def test_dashboard_json_reflects_feedback(system: System) -> None:
    view = complete(
        system,
        conversation_id="dash-1",
        transcript="refund double charge",
        agent_skills=["billing"],
    )
    shown = view["suggestions"]
    for suggestion in shown:
        system.client.post(
            "/v1/feedback",
            json={
                "conversation_id": "dash-1",
                "suggestion_id": suggestion["id"],
                "agent_id": "a1",
                "action": "displayed",
                "request_id": view["request_id"],
            },
        )
    before = system.client.get("/v1/analytics/summary").json()
    assert before["totals"]["displayed"] == len(shown)
    assert before["totals"]["accepted"] == 0
    system.client.post(
        "/v1/feedback",
        json={
            "conversation_id": "dash-1",
            "suggestion_id": shown[0]["id"],
            "agent_id": "a1",
            "action": "accepted",
            "request_id": view["request_id"],
        },
    )
    after = system.client.get("/v1/analytics/summary").json()
    assert after["totals"]["accepted"] == 1
    assert after["totals"]["acceptance_rate"] == round(1 / len(shown), 4)
    by_skill = {r["key"]: r for r in after["acceptance"]["by_skill"]}
    assert by_skill["billing"]["accepted"] == 1
    stages = {s["stage"]: s for s in after["latency"]["stages"]}
    assert all(stages[s]["count"] == 1 for s in ("submitted", "callback", "ranked", "displayed"))
    assert stages["submitted"]["p50_ms"] <= stages["ranked"]["p50_ms"]
    assert stages["ranked"]["p50_ms"] <= stages["displayed"]["p50_ms"]
    assert sum(b["requests"] for b in after["volume"]["buckets"]) == 1
    by_article = system.client.get("/v1/analytics/acceptance?by=article").json()
    assert by_article["by"] == "article"
    assert {r["key"] for r in by_article["rows"]} == {s["id"] for s in shown}
    # An empty, earlier range has nothing in it.
    empty = system.client.get(
        "/v1/analytics/summary?from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z"
    ).json()
    assert empty["totals"]["displayed"] == 0


@pytest.mark.parametrize(
    "query",
    [
        "from=yesterday",
        "from=2026-11-20T10:00:00Z&to=2026-11-20T09:00:00Z",
        "from=2026-01-01T00:00:00Z&to=2026-11-01T00:00:00Z",
        "from=2026-11-20T10:00:00",
        "by=colour",
    ],
)
def test_bad_dashboard_queries_are_422(system: System, query: str) -> None:
    path = "/v1/analytics/acceptance" if query.startswith("by") else "/v1/analytics/summary"
    response = system.client.get(f"{path}?{query}")
    assert response.status_code == 422
    assert response.json()["error"]["details"]
