"""Abuse protection against real Redis over real HTTP: rate limits and closed CORS.

Rate limits (webapp/throttle.py): per agent desk (agent id + conversation) and per client
address, on `POST /v1/suggestions` and `POST /v1/feedback`, each endpoint counted apart;
429 `rate_limited` in the one error shape with `Retry-After`. The test server is reached
from 127.0.0.1, so every request here shares one client address unless a trusted proxy
header says otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.integration.conftest import System

FEEDBACK = {"suggestion_id": "kb-x-1", "action": "displayed"}


def trigger(
    system: System, agent: str | None, conversation: str = "conv-1", **headers: str
) -> httpx.Response:
    body: dict[str, Any] = {
        "conversation_id": conversation,
        "knowledge_source_ids": ["kb-billing"],
        "transcript": "refund please",
    }
    if agent is not None:
        body["agent_id"] = agent
    return system.client.post("/v1/suggestions", json=body, headers=headers)


def feedback(system: System, agent: str, conversation: str = "conv-1") -> httpx.Response:
    body = {**FEEDBACK, "agent_id": agent, "conversation_id": conversation}
    return system.client.post("/v1/feedback", json=body)


def assert_rate_limited(response: httpx.Response, scope: str, window_s: int) -> int:
    """The 429 in the one error shape; returns its Retry-After."""
    assert response.status_code == 429, response.text
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= window_s
    error = response.json()["error"]
    assert set(error) == {"code", "message", "request_id", "details"}
    assert error["code"] == "rate_limited"
    assert error["request_id"] == response.headers["X-Request-ID"]
    assert [d["scope"] for d in error["details"]] == [scope]
    assert error["message"]
    return retry_after


def requested(system: System) -> int:
    return len(system.audit("query_requested"))


# --- per agent -------------------------------------------------------------------------------


def test_an_agent_over_its_limit_gets_429_and_another_agent_is_still_served(
    system_factory: Callable[..., System],
) -> None:
    system = system_factory(rate_limit_agent="3/minute")
    for _ in range(3):
        assert trigger(system, "agent-1").status_code == 202
    assert_rate_limited(trigger(system, "agent-1"), "agent", 60)
    assert requested(system) == 3  # the refused trigger created nothing
    # Same client address, same conversation, another agent: its own budget.
    assert trigger(system, "agent-2").status_code == 202
    # The same agent in another conversation is another desk.
    assert trigger(system, "agent-1", conversation="conv-2").status_code == 202
    # A trigger without agent_id is counted for its conversation.
    for _ in range(3):
        assert trigger(system, None, conversation="conv-3").status_code == 202
    assert_rate_limited(trigger(system, None, conversation="conv-3"), "agent", 60)


def test_feedback_is_limited_and_counted_apart_from_triggers(
    system_factory: Callable[..., System],
) -> None:
    system = system_factory(rate_limit_agent="2/minute")
    for _ in range(2):
        # Unknown suggestion (404), but served: the limit counts requests that passed validation.
        assert feedback(system, "agent-1").status_code != 429
    assert_rate_limited(feedback(system, "agent-1"), "agent", 60)
    assert feedback(system, "agent-2").status_code != 429
    # The feedback budget is not the trigger budget.
    assert trigger(system, "agent-1").status_code == 202


def test_invalid_requests_are_refused_before_they_are_counted(
    system_factory: Callable[..., System],
) -> None:
    system = system_factory(rate_limit_agent="2/minute")
    no_token = httpx.post(f"{system.base_url}/v1/suggestions", json={"conversation_id": "conv-1"})
    assert no_token.status_code == 401
    bad = {"conversation_id": "conv-1", "agent_id": "agent-1", "knowledge_source_ids": []}
    for _ in range(5):
        assert system.client.post("/v1/suggestions", json=bad).status_code == 422
    assert trigger(system, "agent-1").status_code == 202
    assert trigger(system, "agent-1").status_code == 202


# --- per client address -----------------------------------------------------------------------


def test_the_address_limit_holds_across_agents(system_factory: Callable[..., System]) -> None:
    system = system_factory(rate_limit_agent="100/minute", rate_limit_ip="4/minute")
    for n in range(4):
        assert trigger(system, f"agent-{n}", conversation=f"conv-{n}").status_code == 202
    assert_rate_limited(trigger(system, "agent-9", conversation="conv-9"), "ip", 60)
    # Feedback has its own address budget.
    assert feedback(system, "agent-9").status_code != 429


def test_an_agent_over_its_limit_does_not_use_up_the_address_budget(
    system_factory: Callable[..., System],
) -> None:
    system = system_factory(rate_limit_agent="2/minute", rate_limit_ip="5/minute")
    for _ in range(2):
        assert trigger(system, "runaway").status_code == 202
    for _ in range(10):
        assert_rate_limited(trigger(system, "runaway"), "agent", 60)
    # 2 of the address's 5 are used, whatever the runaway desk keeps sending.
    for n in range(3):
        assert trigger(system, f"agent-{n}").status_code == 202
    assert_rate_limited(trigger(system, "agent-x"), "ip", 60)


def test_x_forwarded_for_is_ignored_unless_a_proxy_is_trusted(
    system_factory: Callable[..., System],
) -> None:
    system = system_factory(rate_limit_agent="off", rate_limit_ip="2/minute")
    for n in range(2):
        assert trigger(system, f"a{n}", **{"X-Forwarded-For": f"198.51.100.{n}"}).status_code == 202
    # A forged header does not buy a new budget: the peer is 127.0.0.1 either way.
    forged = trigger(system, "a9", **{"X-Forwarded-For": "198.51.100.99"})
    assert_rate_limited(forged, "ip", 60)


def test_behind_a_trusted_proxy_the_forwarded_address_is_counted(
    system_factory: Callable[..., System],
) -> None:
    system = system_factory(rate_limit_agent="off", rate_limit_ip="2/minute", trusted_proxy_hops=1)

    def from_client(address: str, n: int) -> httpx.Response:
        # The proxy appends the peer it saw; what the client claims before it is not believed.
        return trigger(system, f"a{n}", **{"X-Forwarded-For": f"10.9.9.9, {address}"})

    assert from_client("203.0.113.7", 1).status_code == 202
    assert from_client("203.0.113.7", 2).status_code == 202
    assert_rate_limited(from_client("203.0.113.7", 3), "ip", 60)
    assert from_client("203.0.113.8", 4).status_code == 202
    # IPv6 clients count per /64: another address of the same block shares its budget.
    assert from_client("2001:db8:1:2::1", 5).status_code == 202
    assert from_client("2001:db8:1:2::ffff", 6).status_code == 202
    assert_rate_limited(from_client("2001:db8:1:2:abcd::1", 7), "ip", 60)
    assert from_client("2001:db8:1:3::1", 8).status_code == 202


# --- windows, switching off, metrics, Redis keys ------------------------------------------------


def test_the_limit_frees_up_after_the_window(system_factory: Callable[..., System]) -> None:
    system = system_factory(rate_limit_agent="3/2 seconds")
    for _ in range(3):
        assert trigger(system, "agent-1").status_code == 202
    retry_after = assert_rate_limited(trigger(system, "agent-1"), "agent", 2)
    # Refused requests are not counted: hammering on does not push the window out.
    for _ in range(5):
        assert trigger(system, "agent-1").status_code == 429
    time.sleep(retry_after + 0.1)
    assert trigger(system, "agent-1").status_code == 202
    time.sleep(2.1)  # a whole window later, the full budget is back
    for _ in range(3):
        assert trigger(system, "agent-1").status_code == 202


def test_off_disables_both_limits(system_factory: Callable[..., System]) -> None:
    system = system_factory(rate_limit_agent="off", rate_limit_ip="off")
    for _ in range(15):
        assert trigger(system, "agent-1").status_code == 202
        assert feedback(system, "agent-1").status_code != 429
    prefix = system.services.redis.keys.rate_limits()
    assert list(system.services.redis.decoded.scan_iter(f"{prefix}*")) == []


def test_counters_live_under_the_key_prefix_and_refusals_reach_metrics(
    system_factory: Callable[..., System],
) -> None:
    system = system_factory(rate_limit_agent="1/minute")
    assert trigger(system, "agent-1").status_code == 202
    assert trigger(system, "agent-1").status_code == 429
    assert feedback(system, "agent-1").status_code != 429
    assert feedback(system, "agent-1").status_code == 429
    assert feedback(system, "agent-1").status_code == 429
    redis = system.services.redis
    keys = sorted(redis.decoded.scan_iter(f"{redis.keys.rate_limits()}:*"))
    assert keys and all(k.startswith(f"{system.settings.key_prefix}:rate-limit:") for k in keys)
    assert any("trigger/agent/agent-1/conv-1/" in k for k in keys)
    assert any("feedback/ip/127.0.0.1/" in k for k in keys)
    for key in keys:
        assert 0 < redis.decoded.ttl(key) <= 60  # counters expire with their window
    metrics = system.client.get("/metrics").text
    assert 'assist_rate_limited_total{endpoint="trigger",limit="agent"} 1.0' in metrics
    assert 'assist_rate_limited_total{endpoint="feedback",limit="agent"} 2.0' in metrics


def test_redis_unreachable_is_503_not_500_through_the_limiter(
    system_factory: Callable[..., System],
) -> None:
    system = system_factory(redis_url="redis://127.0.0.1:1/0", redis_socket_timeout_s=0.5)
    for response in (trigger(system, "agent-1"), feedback(system, "agent-1")):
        assert response.status_code == 503
        assert int(response.headers["Retry-After"]) > 0
        assert response.json()["error"]["code"] == "store_unavailable"


# --- CORS is closed -------------------------------------------------------------------------------

EVIL = "https://evil.example"


def _cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def _every_operation(system: System) -> list[tuple[str, str]]:
    document = system.client.get("/openapi.json").json()
    operations = [
        (method.upper(), path.replace("{request_id}", "req-1").replace("{conversation_id}", "c-1"))
        for path, item in document["paths"].items()
        for method in item
    ]
    return [*operations, ("GET", "/desk?conversationId=c-1"), ("GET", "/dashboard")]


def test_no_path_answers_a_cross_origin_preflight(system: System) -> None:
    operations = _every_operation(system)
    assert len(operations) >= 15
    for method, path in operations:
        response = system.client.options(
            path,
            headers={
                "Origin": EVIL,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert _cors_headers(response) == {}, (method, path)


@pytest.mark.parametrize("authenticated", [True, False])
def test_no_path_lets_another_origin_read_its_answer(system: System, authenticated: bool) -> None:
    headers = {"Origin": EVIL}
    if not authenticated:
        headers["Authorization"] = ""
    for method, path in _every_operation(system):
        body = {"conversation_id": "c-1"} if method == "POST" else None
        with system.client.stream(method, path, json=body, headers=headers) as response:
            assert response.status_code < 500, (method, path)
            assert _cors_headers(response) == {}, (method, path)
