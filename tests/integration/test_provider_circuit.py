"""Per-provider circuit breakers and the submission job's bounded retries, against the emulator.

The emulator answers 503 to every REST call while `server_error_ratio` is 1.0. With
`genesys_circuit_failures=1` the first 503 opens the circuit at once (no 3 s retry waits), so
each test runs in about the circuit's open time.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.conftest import System

# Long enough for the in-process worker runs below to see the circuit still open.
OPEN_S = 3.0


@pytest.fixture
def circuit_system(system_factory: Callable[..., System]) -> Callable[..., System]:
    def build(**overrides: Any) -> System:
        values: dict[str, Any] = {
            "genesys_max_attempts": 2,
            "genesys_circuit_failures": 1,
            "genesys_circuit_open_s": OPEN_S,
            "query_submit_attempts": 3,
        }
        values.update(overrides)
        system = system_factory(**values)
        # Fetch the OAuth token while the emulator is healthy (it is shared through Redis).
        system.services.tokens.token()
        return system

    return build


def calls(system: System, conversation_id: str, route: str = "knowledge_query") -> list[Any]:
    return [
        c
        for c in system.records()["rest_calls"]
        if c["route"] == route and c["conversation_id"] == conversation_id
    ]


def of_request(system: System, event_type: str, request_id: str) -> list[dict[str, Any]]:
    return [r for r in system.audit(event_type) if r["request_id"] == request_id]


def down(system: System) -> None:
    system.emulator.post("/emulator/faults", json={"server_error_ratio": 1.0}).raise_for_status()


def up(system: System) -> None:
    system.emulator.post("/emulator/faults", json={"server_error_ratio": 0.0}).raise_for_status()


def test_an_open_circuit_defers_the_query_until_a_probe_succeeds(
    circuit_system: Callable[..., System],
) -> None:
    system = circuit_system()
    down(system)
    request_id = system.trigger(conversation_id="c-defer", transcript="refund").json()["request_id"]
    system.run_jobs()

    assert system.client.get(f"/v1/suggestions/{request_id}").json()["status"] == "queued"
    [scheduled] = of_request(system, "query_retry_scheduled", request_id)
    assert scheduled["data"]["error_type"] == "GenesysCircuitOpenError"
    assert scheduled["data"]["provider"] == "async-query"
    assert (scheduled["data"]["attempt"], scheduled["data"]["counted"]) == (1, True)
    assert OPEN_S <= scheduled["data"]["retry_in_s"] <= OPEN_S * 1.1 + 0.01
    assert len(calls(system, "c-defer")) == 1  # the failure opened it: no retries sent
    assert system.services.breaker.status("async-query").state == "open"

    # Another query meanwhile fails fast: no call reaches the provider.
    other = system.trigger(conversation_id="c-fast", transcript="refund").json()["request_id"]
    system.run_jobs()
    assert calls(system, "c-fast") == []
    [turned_away] = of_request(system, "query_retry_scheduled", other)
    assert turned_away["data"]["counted"] is False  # no call sent: not one of its attempts

    up(system)
    time.sleep(OPEN_S * 1.1 + 0.1)
    system.run_due_jobs()
    view = system.finished(request_id)
    assert view["status"] == "completed"
    assert view["suggestions"]
    assert system.finished(other)["status"] == "completed"
    assert [c["status_code"] for c in calls(system, "c-defer")] == [503, 202]
    state = system.services.breaker.status("async-query")
    assert (state.state, state.opens) == ("closed", 1)
    metrics = system.client.get("/metrics").text
    assert 'assist_provider_circuit_opens_total{circuit="async-query"} 1.0' in metrics
    assert 'assist_provider_circuit_state{circuit="async-query",state="closed"} 1.0' in metrics


def test_a_query_fails_visibly_when_the_circuit_stays_open(
    circuit_system: Callable[..., System],
) -> None:
    system = circuit_system(query_submit_attempts=2)
    down(system)
    request_id = system.trigger(conversation_id="c-dead", transcript="refund").json()["request_id"]
    system.run_jobs()
    time.sleep(OPEN_S * 1.1 + 0.1)
    system.run_due_jobs()  # run 2: the half-open probe fails, the circuit opens again

    view = system.client.get(f"/v1/suggestions/{request_id}").json()
    assert view["status"] == "failed"
    assert "circuit" in view["error"]
    [failed] = of_request(system, "query_failed", request_id)
    assert failed["data"]["error_type"] == "GenesysCircuitOpenError"
    assert failed["data"]["retryable"] is True
    assert failed["data"]["attempt"] == 2
    # Two runs, each stopped by the circuit after one attempt: 2 calls (the bound is 2 x 2).
    assert [c["status_code"] for c in calls(system, "c-dead")] == [503, 503]
    assert system.services.breaker.status("async-query").opens == 2


def test_no_retry_is_scheduled_past_the_request_deadline(
    circuit_system: Callable[..., System],
) -> None:
    system = circuit_system(genesys_circuit_open_s=30, request_expiry_s=10)
    down(system)
    request_id = system.trigger(conversation_id="c-late", transcript="refund").json()["request_id"]
    system.run_jobs()
    view = system.client.get(f"/v1/suggestions/{request_id}").json()
    assert view["status"] == "failed"
    assert of_request(system, "query_retry_scheduled", request_id) == []
    assert of_request(system, "query_failed", request_id)[0]["data"]["attempt"] == 1


def test_rate_limits_after_the_retries_are_tried_again_after_retry_after(
    circuit_system: Callable[..., System],
) -> None:
    system = circuit_system()
    system.emulator.post(
        "/emulator/faults", json={"rate_limit_next": 2, "retry_after_s": 1}
    ).raise_for_status()
    request_id = system.trigger(conversation_id="c-429", transcript="refund").json()["request_id"]
    system.run_jobs()  # two attempts, both 429: the run ends rate limited
    [scheduled] = of_request(system, "query_retry_scheduled", request_id)
    assert scheduled["data"]["error_type"] == "GenesysRateLimitedError"
    assert 1.0 <= scheduled["data"]["retry_in_s"] <= 1.11
    assert system.services.breaker.status("async-query").state == "closed"
    time.sleep(1.2)
    system.run_due_jobs()
    assert system.finished(request_id)["status"] == "completed"
    made = calls(system, "c-429")
    assert [c["status_code"] for c in made] == [429, 429, 202]
    for previous, following in itertools.pairwise(made):
        assert following["at"] - previous["at"] >= previous["retry_after_s"]


def test_a_genesys_knowledge_outage_defers_the_query_too(
    circuit_system: Callable[..., System],
) -> None:
    system = circuit_system(genesys_knowledge_source_ids="kb-tech")
    down(system)
    request_id = system.trigger(
        conversation_id="c-gk-down",
        knowledge_source_ids=["kb-tech"],
        transcript="customer: my router keeps dropping the wifi connection",
    ).json()["request_id"]
    system.run_jobs()
    [scheduled] = of_request(system, "query_retry_scheduled", request_id)
    assert scheduled["data"]["provider"] == "genesys-knowledge"
    assert system.services.breaker.status("genesys-knowledge-search").state == "open"
    assert system.services.breaker.status("async-query").state == "closed"

    up(system)
    time.sleep(OPEN_S * 1.1 + 0.1)
    system.run_due_jobs()
    view = system.finished(request_id)
    assert view["status"] == "completed" and view["suggestions"]
    searches = calls(system, "c-gk-down", route="knowledge_search")
    assert [c["status_code"] for c in searches] == [503, 200]
