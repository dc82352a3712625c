"""Keyword and entity detection (C3) end to end: buffer, job, cards on the feed, against real Redis.

Utterances are built directly (the stream process that produces them is tested elsewhere).
Most tests set `keyword_buffer_ms=0`, which enqueues the analysis job at once, and drain it
with `run_jobs()`; the buffer-window and cooldown tests use the real scheduled path
(`enqueue_at`) and move due jobs with `run_due_jobs()`, which runs RQ's scheduler once.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from assist.core.models import utcnow
from assist.core.transcripts import Speaker, Utterance
from assist.services import keywords
from assist.stores.keywords import KeywordStore
from tests.conftest import wait_for
from tests.integration.conftest import System
from tests.integration.test_feed_and_dashboard_api import read_events

CONFIG = Path(__file__).resolve().parents[2] / "config" / "keywords.json"
CID = "kw-conv-1"


def utterance(
    text: str,
    conversation_id: str = CID,
    *,
    speaker: Speaker = Speaker.CUSTOMER,
    is_final: bool = True,
) -> Utterance:
    return Utterance(
        conversation_id=conversation_id,
        utterance_id=f"u-{uuid.uuid4()}",
        speaker=speaker,
        text=text,
        is_final=is_final,
        confidence=0.9,
        received_at=utcnow(),
    )


@pytest.fixture
def build(system_factory: Callable[..., System]) -> Callable[..., System]:
    def factory(**overrides: Any) -> System:
        values: dict[str, Any] = {
            "keywords_config_path": str(CONFIG),
            "keyword_buffer_ms": 0,
            "keyword_cooldown_s": 0,
        }
        values.update(overrides)
        return system_factory(**values)

    return factory


def say(system: System, *texts: str, conversation_id: str = CID) -> None:
    for text in texts:
        keywords.handle_final_utterance(system.services, utterance(text, conversation_id))


def feed(system: System, conversation_id: str = CID) -> list[dict[str, Any]]:
    return [event for _, event in system.services.conversations.feed(conversation_id)]


def card_ids(event: dict[str, Any]) -> list[str]:
    return sorted(s["id"] for s in event["suggestions"])


def records(system: System, event_type: str) -> list[dict[str, Any]]:
    found = [r for r in system.services.analytics.recent(500) if r["type"] == event_type]
    return list(reversed(found))  # oldest first


def scheduled_jobs(system: System) -> list[str]:
    return list(system.services.queue.queue.scheduled_job_registry.get_job_ids())


def run_until(system: System, done: Callable[[], Any], timeout_s: float = 5.0) -> None:
    """Run due scheduled jobs (RQ schedules in whole seconds) until `done()` holds."""

    def step() -> Any:
        system.run_due_jobs()
        return done()

    wait_for(step, timeout_s=timeout_s, interval_s=0.1)


def test_fragments_within_the_buffer_window_are_analysed_together(
    build: Callable[..., System],
) -> None:
    system = build(keyword_buffer_ms=300)
    started = time.monotonic()
    say(system, "I think I was charged", "twice last month, and my router has no internet")
    assert len(scheduled_jobs(system)) == 1  # one job for the burst
    assert system.services.queue.depth() == 0
    system.run_due_jobs()
    assert feed(system) == []  # the window is still open
    run_until(system, lambda: feed(system))
    assert time.monotonic() - started >= 0.3

    [event] = feed(system)
    # "charged" + "twice" were two fragments: analysed together, the phrase still matched.
    assert card_ids(event) == ["kb-art-001", "kb-art-007"]
    assert event["type"] == "suggestions"
    assert event["source"] == "keywords"
    assert event["conversation_id"] == CID
    assert event["request_id"] is None
    assert event["detection_id"].startswith("kw_")
    assert [s["rank"] for s in event["suggestions"]] == [1, 2]
    assert all(s["sources"] == ["keywords"] for s in event["suggestions"])
    [record] = records(system, "keywords_detected")
    assert record["data"]["fragments"] == 2
    # The next fragment opens a new window.
    say(system, "and I'm travelling to Spain")
    assert len(scheduled_jobs(system)) == 1


def test_cards_reach_the_feed_the_suggestions_api_and_take_feedback(
    build: Callable[..., System],
) -> None:
    system = build()
    say(system, "Is Fibre Max available? Contoso offered me a better deal")
    system.run_jobs()

    [sse] = read_events(system, CID, 1)
    data = json.loads(sse["data"])
    assert sse["event"] == "suggestions"
    assert data["source"] == "keywords"
    assert card_ids(data) == ["kw-competitor", "kw-product-fibre-max"]

    response = system.client.get(f"/v1/conversations/{CID}/suggestions")
    assert response.status_code == 200
    listed = {s["id"]: s for s in response.json()["suggestions"]}
    assert set(listed) == {"kw-competitor", "kw-product-fibre-max"}
    assert listed["kw-competitor"]["knowledge_source_ids"] == ["keywords"]
    assert listed["kw-competitor"]["why"]["confidence"] == 0.7

    # The desk sends no request id for these cards (the event's is null), and feedback counts.
    feedback = {
        "conversation_id": CID,
        "suggestion_id": "kw-competitor",
        "agent_id": "agent-1",
        "action": "accepted",
    }
    assert system.client.post("/v1/feedback", json=feedback).status_code == 202


def test_a_card_is_never_repeated_in_a_conversation(build: Callable[..., System]) -> None:
    system = build()
    say(system, "I was charged twice")
    system.run_jobs()
    say(system, "I was double charged so I want a refund")
    system.run_jobs()
    say(system, "yes, CHARGED TWICE, and I want my money back")
    system.run_jobs()

    assert [card_ids(event) for event in feed(system)] == [["kb-art-001"], ["kb-art-003"]]
    third = records(system, "keywords_detected")[-1]["data"]
    assert third["delivered"] == []
    assert sorted(third["duplicates"]) == ["kb-art-001", "kb-art-003"]
    assert third["latency_ms"] is None
    # Another conversation starts afresh.
    say(system, "charged twice", conversation_id="kw-conv-2")
    system.run_jobs()
    assert [card_ids(event) for event in feed(system, "kw-conv-2")] == [["kb-art-001"]]


def test_new_cards_during_the_cooldown_are_deferred_to_its_end(
    build: Callable[..., System],
) -> None:
    system = build(keyword_cooldown_s=1.0)
    say(system, "my router is not working")
    system.run_jobs()
    assert [card_ids(event) for event in feed(system)] == [["kb-art-007"]]

    say(system, "and I was overcharged")
    system.run_jobs()
    assert len(feed(system)) == 1  # cooling down: nothing new on the feed yet
    deferred = records(system, "keywords_detected")[-1]["data"]
    assert deferred["delivered"] == []
    assert 0 < deferred["deferred_ms"] <= 1000
    store = KeywordStore(system.services.redis, ttl_s=60)
    assert [f.text for f in store.pending(CID)] == ["and I was overcharged"]
    assert len(scheduled_jobs(system)) == 1  # one job at the end of the cooldown
    say(system, "I also can't log in")  # joins the deferred buffer, schedules nothing more
    assert len(scheduled_jobs(system)) == 1

    run_until(system, lambda: len(feed(system)) > 1)
    events = feed(system)
    assert [card_ids(event) for event in events] == [["kb-art-007"], ["kb-art-003", "kb-art-004"]]
    delivered = records(system, "keywords_detected")[-1]["data"]
    assert delivered["latency_ms"] >= 1000  # from the first deferred utterance to delivery


def test_at_most_max_cards_per_analysis_and_the_rest_can_come_later(
    build: Callable[..., System],
) -> None:
    system = build(keyword_max_cards=2)
    say(system, "I'm locked out, my card was stolen and my router is dead")
    system.run_jobs()
    [event] = feed(system)
    # Best score first: the two most confident cards (0.85 and 0.8) beat the router (0.75).
    assert card_ids(event) == ["kb-art-004", "kb-art-005"]
    record = records(system, "keywords_detected")[-1]["data"]
    assert record["over_limit"] == ["kb-art-007"]
    say(system, "the router, yes")
    system.run_jobs()
    assert card_ids(feed(system)[-1]) == ["kb-art-007"]


def test_detection_is_recorded_in_the_audit_log_and_analytics(
    build: Callable[..., System],
) -> None:
    system = build()
    say(system, "I was CHARGED TWICE and my TV Essentials box is broken")
    system.run_jobs()

    [record] = records(system, "keywords_detected")
    assert record["conversation_id"] == CID
    data = record["data"]
    assert data["detection_id"] == feed(system)[0]["detection_id"]
    assert data["pipeline"] == "blank:en"
    assert data["matches"] == [
        {
            "kind": "phrase",
            "label": "billing_dispute",
            "card_id": "kb-art-001",
            "text": "CHARGED TWICE",
            "default_card": False,
        },
        {
            "kind": "entity",
            "label": "PRODUCT",
            "card_id": "kw-entity-product-tv-essentials",
            "text": "TV Essentials",
            "default_card": True,
        },
    ]
    assert sorted(data["delivered"]) == ["kb-art-001", "kw-entity-product-tv-essentials"]
    assert data["duplicates"] == data["suppressed"] == data["over_limit"] == []
    assert data["deferred_ms"] is None
    assert 0 <= data["latency_ms"] < 5000
    [delivered] = records(system, "suggestions_delivered")
    assert delivered["data"]["source"] == "keywords"
    assert sorted(delivered["data"]["suggestion_ids"]) == sorted(data["delivered"])

    audit = Path(system.settings.audit_log_path).read_text(encoding="utf-8").splitlines()
    lines = [json.loads(line) for line in audit]
    assert [line["event_id"] for line in lines if line["type"] == "keywords_detected"] == [
        record["event_id"]
    ]
    # The utterance itself is not in the records: only the matched phrases.
    assert "box is broken" not in "\n".join(audit)


def test_reset_buffer_drops_pending_fragments(build: Callable[..., System]) -> None:
    system = build(keyword_buffer_ms=200)
    say(system, "I was charged twice")
    assert keywords.reset_buffer(system.services, CID) == 1
    run_until(system, lambda: not scheduled_jobs(system))  # the window's job has run
    assert feed(system) == []
    assert records(system, "keywords_detected") == []
    assert keywords.reset_buffer(system.services, CID) == 0


def test_an_utterance_with_no_match_delivers_nothing(build: Callable[..., System]) -> None:
    system = build()
    say(system, "Thanks, that is all for today. Have a good evening.")
    system.run_jobs()
    assert feed(system) == []
    assert records(system, "keywords_detected") == []
    assert system.client.get(f"/v1/conversations/{CID}/suggestions").status_code == 404


def test_agent_and_partial_utterances_are_not_buffered(build: Callable[..., System]) -> None:
    system = build()
    keywords.handle_final_utterance(
        system.services, utterance("charged twice", speaker=Speaker.AGENT)
    )
    keywords.handle_final_utterance(system.services, utterance("charged twice", is_final=False))
    keywords.handle_final_utterance(system.services, utterance("   "))
    assert system.services.queue.depth() == 0
    assert KeywordStore(system.services.redis, ttl_s=60).pending(CID) == []


def test_conversation_ids_that_rq_job_ids_reject_still_schedule(
    build: Callable[..., System],
) -> None:
    system = build()
    say(system, "charged twice", conversation_id="tenant.a:conv@1")
    system.run_jobs()
    assert [card_ids(e) for e in feed(system, "tenant.a:conv@1")] == [["kb-art-001"]]


def test_delivered_cards_feed_the_keyword_auto_trigger_rule(
    build: Callable[..., System],
) -> None:
    system = build(autotrigger_card_ids="kb-art-001", autotrigger_knowledge_source_ids="kb-billing")
    transcript = system.services.redis.keys.conversation_transcript(CID)
    system.services.redis.decoded.rpush(transcript, "customer: I was charged twice")
    say(system, "I was charged twice")
    system.run_jobs()
    [auto] = records(system, "autotriggered")
    assert auto["conversation_id"] == CID
    assert auto["data"]["reason"] == "cards:kb-art-001"


def test_a_broken_configuration_fails_the_job_and_keeps_the_fragments(
    build: Callable[..., System], tmp_path: Path
) -> None:
    broken = tmp_path / "keywords.json"
    broken.write_text(json.dumps({"phrases": [{"id": "x", "patterns": []}]}), encoding="utf-8")
    system = build(keywords_config_path=str(broken))
    say(system, "I was charged twice")
    system.run_jobs()
    assert system.services.queue.queue.failed_job_registry.count == 1
    [error] = records(system, "error")
    assert error["data"]["job"] == "analyse_utterances"
    assert "phrases[0] (id 'x').patterns" in error["data"]["error"]
    assert [f.text for f in KeywordStore(system.services.redis, ttl_s=60).pending(CID)] == [
        "I was charged twice"
    ]
