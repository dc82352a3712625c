"""The `genesys-knowledge` provider and the outbound results webhook, against the emulator.

Genesys Knowledge is the real `POST …/knowledgebases/{id}/documents/search` (and the PATCH
that reports the accepted result); the results webhook is our own contract, served by the
emulator at `/results/suggestions`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.integration.conftest import System


@pytest.fixture
def gk_system(system_factory: Callable[..., System]) -> Callable[..., System]:
    def build(**overrides: Any) -> System:
        values: dict[str, Any] = {"genesys_knowledge_source_ids": "kb-tech"}
        values.update(overrides)
        return system_factory(**values)

    return build


# --- genesys-knowledge -------------------------------------------------------------------------


def test_a_genesys_knowledge_source_is_searched_with_the_real_contract(
    gk_system: Callable[..., System],
) -> None:
    system = gk_system()
    response = system.trigger(
        conversation_id="c-gk",
        knowledge_source_ids=["kb-tech"],
        transcript="customer: my router keeps dropping the wifi connection",
    )
    view = system.finished(response.json()["request_id"])
    assert view["status"] == "completed"
    assert view["suggestions"], "no knowledge results were ranked"
    assert all(s["sources"] == ["genesys-knowledge"] for s in view["suggestions"])
    assert all(s["knowledge_source_ids"] == ["kb-tech"] for s in view["suggestions"])
    search = system.records()["knowledge_searches"][-1]
    assert search["knowledge_base_id"] == "kb-tech"
    body = search["body"]
    assert body["queryType"] == "AutoSearch"
    assert body["conversationContext"]["conversationId"] == "c-gk"
    assert body["confidenceThreshold"] == system.settings.genesys_knowledge_confidence_threshold
    assert "router" in body["query"]
    # No async query went out: only the knowledge search answered this request.
    assert not system.records()["queries"]
    searched = system.audit("knowledge_searched")[-1]["data"]
    assert searched["provider"] == "genesys-knowledge" and searched["search_id"]


def test_genesys_local_and_async_sources_rank_together(
    gk_system: Callable[..., System],
) -> None:
    system = gk_system()
    response = system.trigger(
        conversation_id="c-three",
        knowledge_source_ids=["kb-tech", "kb-billing"],
        transcript="customer: my router is down and I was charged twice for it",
        max_results=10,
    )
    view = system.finished(response.json()["request_id"])
    sources = {source for s in view["suggestions"] for source in s["sources"]}
    assert sources == {"genesys-knowledge", "async-query"}
    scores = [s["score"] for s in view["suggestions"]]
    assert scores == sorted(scores, reverse=True)
    assert system.records()["queries"][-1]["body"]["knowledgeSourceIds"] == ["kb-billing"]


def test_accepting_a_knowledge_result_reports_it_to_genesys(
    gk_system: Callable[..., System],
) -> None:
    system = gk_system()
    response = system.trigger(
        conversation_id="c-accept",
        knowledge_source_ids=["kb-tech"],
        transcript="customer: the internet is down and the router lights are red",
    )
    view = system.finished(response.json()["request_id"])
    chosen = view["suggestions"][0]["id"]
    search_id = system.records()["knowledge_searches"][-1]["search_id"]
    for _ in range(2):  # the second acceptance is not counted, so not reported again
        feedback = system.client.post(
            "/v1/feedback",
            json={
                "conversation_id": "c-accept",
                "suggestion_id": chosen,
                "agent_id": "agent-1",
                "action": "accepted",
            },
        )
        assert feedback.status_code == 202
        system.run_jobs()
    updates = system.records()["knowledge_search_updates"]
    assert len(updates) == 1
    assert updates[0]["search_id"] == search_id
    assert updates[0]["status_code"] == 200
    assert updates[0]["body"] == {"answered": True, "selectedAnswer": {"document": {"id": chosen}}}
    reported = system.audit("knowledge_answer_reported")
    assert [r["data"]["suggestion_id"] for r in reported] == [chosen]


def test_a_failing_knowledge_base_fails_the_request_visibly(
    gk_system: Callable[..., System],
) -> None:
    system = gk_system(genesys_knowledge_source_ids="kb-tech,kb-unknown")
    response = system.trigger(
        conversation_id="c-404", knowledge_source_ids=["kb-unknown"], transcript="router broken"
    )
    view = system.finished(response.json()["request_id"])
    assert view["status"] == "failed"
    assert "404" in view["error"]
    assert system.audit("query_failed")[-1]["data"]["error_type"] == "ProvidersFailed"


def test_one_failing_knowledge_base_does_not_sink_the_others(
    gk_system: Callable[..., System],
) -> None:
    system = gk_system(genesys_knowledge_source_ids="kb-tech,kb-unknown")
    response = system.trigger(
        conversation_id="c-partial",
        knowledge_source_ids=["kb-unknown", "kb-tech"],
        transcript="customer: my router is broken",
    )
    view = system.finished(response.json()["request_id"])
    assert view["status"] == "completed"
    assert view["suggestions"]
    errors = [r["data"].get("error") for r in system.audit("knowledge_searched")]
    assert any(e and "404" in e for e in errors)


def test_rate_limited_knowledge_search_honours_retry_after(
    gk_system: Callable[..., System],
) -> None:
    system = gk_system()
    system.services.tokens.token()  # so the fault hits the search, not the token request
    system.emulator.post(
        "/emulator/faults", json={"rate_limit_next": 1, "retry_after_s": 1}
    ).raise_for_status()
    response = system.trigger(
        conversation_id="c-429", knowledge_source_ids=["kb-tech"], transcript="router wifi down"
    )
    view = system.finished(response.json()["request_id"])
    assert view["status"] == "completed"
    statuses = [s["status_code"] for s in system.records()["knowledge_searches"]]
    assert statuses == [429, 200]


# --- results webhook ---------------------------------------------------------------------------


@pytest.fixture
def results_system(gk_system: Callable[..., System], emulator: Any) -> Callable[..., System]:
    def build(**overrides: Any) -> System:
        values: dict[str, Any] = {"results_webhook_url": f"{emulator.url}/results/suggestions"}
        values.update(overrides)
        return gk_system(**values)

    return build


def ranked_request(system: System, conversation_id: str) -> str:
    response = system.trigger(
        conversation_id=conversation_id,
        knowledge_source_ids=["kb-tech"],
        transcript="customer: my router is broken",
    )
    request_id: str = response.json()["request_id"]
    assert system.finished(request_id)["status"] == "completed"
    return request_id


def test_ranked_results_are_posted_to_the_results_webhook(
    results_system: Callable[..., System],
) -> None:
    system = results_system()
    request_id = ranked_request(system, "c-results")
    system.run_jobs()
    delivered = system.records()["results"]
    assert [r["status_code"] for r in delivered] == [204]
    assert delivered[0]["idempotency_key"] == request_id
    body = delivered[0]["body"]
    assert body["request_id"] == request_id
    assert body["conversation_id"] == "c-results"
    view = system.client.get(f"/v1/suggestions/{request_id}").json()
    assert [s["id"] for s in body["suggestions"]] == [s["id"] for s in view["suggestions"]]
    assert system.audit("results_delivered")[-1]["request_id"] == request_id


def test_results_webhook_429_waits_and_401_refreshes_the_token(
    results_system: Callable[..., System],
) -> None:
    system = results_system()
    system.emulator.post(
        "/emulator/faults",
        json={"results_rate_limit_next": 1, "results_unauthorized_next": 1, "retry_after_s": 1},
    ).raise_for_status()
    tokens_before = len(system.records()["token_requests"])
    ranked_request(system, "c-results-retry")
    system.run_jobs()
    statuses = [r["status_code"] for r in system.records()["results"]]
    assert statuses[-1] == 204
    assert 429 in statuses and 401 in statuses
    assert len(system.records()["token_requests"]) > tokens_before, "no new token after the 401"
    assert len(system.audit("results_delivered")) == 1


def test_results_webhook_403_is_given_up_without_retrying(
    results_system: Callable[..., System],
) -> None:
    system = results_system()
    system.emulator.post("/emulator/faults", json={"results_forbidden_next": 5}).raise_for_status()
    ranked_request(system, "c-results-403")
    system.run_jobs()
    system.run_due_jobs()
    assert [r["status_code"] for r in system.records()["results"]] == [403]
    failed = system.audit("results_delivery_failed")
    assert len(failed) == 1 and failed[0]["data"]["retryable"] is False
    assert not system.audit("results_delivered")


def test_results_webhook_5xx_is_retried_later(results_system: Callable[..., System]) -> None:
    # One HTTP attempt per job, so the 503 fails the job and RQ's own retry delivers.
    system = results_system(genesys_max_attempts=1)
    system.emulator.post("/emulator/faults", json={"results_error_next": 1}).raise_for_status()
    request_id = ranked_request(system, "c-results-503")
    system.run_jobs()
    assert [r["status_code"] for r in system.records()["results"]] == [503]
    job = system.services.background.queue.fetch_job(f"results-{request_id}")
    assert job is not None and job.get_status() == "scheduled"

    def delivered() -> bool:
        system.run_due_jobs()
        return bool(system.audit("results_delivered"))

    wait_for(delivered, timeout_s=20)
    assert system.records()["results"][-1]["status_code"] == 204
