"""Copilot insights (C5) over the emulator's real WebSocket: stream → workers → feed, sync, engage.

The stream process runs in a thread on its own event loop (as in test_stream.py); jobs run in
an RQ `SimpleWorker` in this process, against the same real Redis.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from rq import SimpleWorker
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer

from assist.core.models import FeedbackAction
from assist.services.copilot import figures
from assist.services.feedback import FeedbackCommand, record_feedback
from tests.conftest import wait_for
from tests.integration.test_stream import (  # noqa: F401 - fixtures
    BILLING,
    PASSWORD,
    Stream,
    stream_factory,
    ws_emulator,
)
from workers import runtime

ALL_TOPICS = "knowledge.search,knowledge.article,response,script,intent,thirdpartyaction"


def run_jobs(stream: Stream, *, due: bool = False) -> None:
    runtime.install(stream.services)
    raw = stream.services.redis.raw
    queues = stream.services.settings.queues_to_work
    if due:
        scheduler = RQScheduler(queues, connection=raw, serializer=JSONSerializer)
        scheduler.acquire_locks()
        try:
            scheduler.enqueue_scheduled_jobs()
        finally:
            scheduler.release_locks()
    SimpleWorker(queues, connection=raw, serializer=JSONSerializer).work(burst=True)


def emulator_records(stream: Stream) -> dict[str, Any]:
    records: dict[str, Any] = stream.emulator.get("/emulator/records").json()
    return records


def conversation(stream: Stream, conversation_id: str) -> dict[str, Any]:
    listing = stream.emulator.get("/emulator/conversations").json()["conversations"]
    found: dict[str, Any] = next(c for c in listing if c["conversation_id"] == conversation_id)
    return found


def audit(stream: Stream, event_type: str, conversation_id: str) -> list[dict[str, Any]]:
    import json
    from pathlib import Path

    lines = Path(stream.services.settings.audit_log_path).read_text().splitlines()
    return [
        r
        for r in map(json.loads, lines)
        if r["type"] == event_type and r["conversation_id"] == conversation_id
    ]


def feed_cards(stream: Stream, conversation_id: str) -> list[dict[str, Any]]:
    import json

    entries = stream.services.redis.decoded.xrange(
        stream.services.redis.keys.conversation_feed(conversation_id)
    )
    cards = []
    for _, fields in entries:
        event = json.loads(fields["event"])
        if event.get("source") == "copilot":
            cards += event["suggestions"]
    return cards


@pytest.fixture
def copilot_stream(
    stream_factory: Callable[..., Stream],  # noqa: F811
    ws_emulator: Any,  # noqa: F811
) -> Callable[..., Stream]:
    def build(**overrides: Any) -> Stream:
        values: dict[str, Any] = {
            "copilot_topics": ALL_TOPICS,
            "training_webhook_url": f"{ws_emulator.url}/training/insights",
            "training_webhook_secret": "whsec_EIvYBSq82SpIf8kOR41fBTNqWxw58aSw",
        }
        values.update(overrides)
        return stream_factory(**values)

    return build


def play(stream: Stream, script: Any, **options: Any) -> str:
    conversation_id = stream.call(script, speed=60, **options)
    stream.wait_ended(conversation_id, timeout_s=20)
    wait_for(lambda: conversation(stream, conversation_id)["done"], timeout_s=10)
    return conversation_id


def processed_ids(stream: Stream, conversation_id: str) -> list[str]:
    return [r["data"]["suggestion_id"] for r in audit(stream, "insight_processed", conversation_id)]


def test_insights_are_scored_delivered_and_synced_once(
    copilot_stream: Callable[..., Stream],
) -> None:
    stream = copilot_stream()
    cid = play(stream, BILLING)
    run_jobs(stream)
    played = conversation(stream, cid)
    assert played["insights_delivered"] >= 4
    processed = audit(stream, "insight_processed", cid)
    assert len(processed) == played["insights_delivered"]
    assert len({r["data"]["suggestion_id"] for r in processed}) == len(processed)
    scoring = stream.services.settings.copilot_scoring
    for record in processed:
        data = record["data"]
        weight = scoring.weights[data["insight_type"]]
        assert data["relevance"] == pytest.approx(data["confidence"] * weight, abs=1e-6)
        assert data["latency_ms"] >= 0
    cards = feed_cards(stream, cid)
    assert cards, "no Copilot insight reached the feed"
    assert all(len(card["content"]) <= 250 for card in cards)
    assert all(card["sources"] == ["copilot"] for card in cards)
    by_id = {r["data"]["suggestion_id"]: r["data"] for r in processed}
    for card in cards:
        assert card["confidence"] == pytest.approx(by_id[card["id"]]["relevance"])
    # Every processed insight reached the training platform once, signed (204).
    training = [t for t in emulator_records(stream)["training"] if t["status_code"] == 204]
    delivered = Counter(t["body"]["insight_id"] for t in training)
    assert set(delivered) == set(by_id)
    assert set(delivered.values()) == {1}
    assert figures(stream.services).get("sync.delivered", 0) >= len(by_id)


def test_the_filter_keeps_and_drops_the_right_insights(
    copilot_stream: Callable[..., Stream],
) -> None:
    stream = copilot_stream(copilot_filter="insight_type:in:knowledge;confidence:gte:0.5")
    cid = play(stream, BILLING)
    run_jobs(stream)
    processed = audit(stream, "insight_processed", cid)
    assert processed, "the filter dropped everything"
    assert all(r["data"]["insight_type"] == "knowledge" for r in processed)
    assert all(r["data"]["confidence"] >= 0.5 for r in processed)
    counters = stream.counters()
    kept = len(processed)
    assert (
        counters.get("insights.filtered", 0)
        == conversation(stream, cid)["insights_delivered"] - kept
    )


def test_bad_events_duplicates_and_binary_frames(copilot_stream: Callable[..., Stream]) -> None:
    stream = copilot_stream()
    stream.faults(copilot_duplicate_next=2, copilot_bad_insights_next=5, copilot_binary_next=2)
    cid = play(stream, PASSWORD)
    run_jobs(stream)
    played = conversation(stream, cid)
    # Each insight processed once: duplicates and binary copies changed nothing.
    assert len(processed_ids(stream, cid)) == played["insights_planned"]
    counters = stream.counters()
    assert counters.get("insights.duplicate", 0) >= 2
    assert counters.get("dropped.insight_confidence_out_of_range", 0) >= 2
    assert counters.get("dropped.insight_missing_id", 0) >= 1
    assert counters.get("dropped.insight_unknown_topic", 0) >= 1
    assert counters.get("connection.binary_frames_decoded", 0) >= 2
    assert counters.get("dropped.binary", 0) >= 1
    stream.assert_alive()


def test_desk_engagements_reach_genesys(copilot_stream: Callable[..., Stream]) -> None:
    stream = copilot_stream()
    # Slow enough that the agent engages while the call (and its subscriptions) still run.
    cid = stream.call(BILLING, speed=8)

    def first_card() -> dict[str, Any] | None:
        run_jobs(stream)
        cards = feed_cards(stream, cid)
        return cards[0] if cards else None

    card: dict[str, Any] = wait_for(first_card, timeout_s=20, interval_s=0.2)
    record_feedback(
        stream.services,
        FeedbackCommand(
            conversation_id=cid,
            suggestion_id=card["id"],
            agent_id="agent-1",
            action=FeedbackAction.OPENED,
        ),
    )
    run_jobs(stream)
    engagements = emulator_records(stream)["engagements"]
    assert [(e["suggestion_id"], e["status_code"]) for e in engagements] == [(card["id"], 200)]
    assert engagements[0]["body"] == {"engagementType": "Opened"}
    # Genesys answers with a state notification for the same suggestion: an update, not new.
    wait_for(lambda: stream.process.counters().get("insights.state_update", 0) >= 1, timeout_s=10)
    stream.wait_ended(cid, timeout_s=30)
    run_jobs(stream)
    assert processed_ids(stream, cid).count(card["id"]) == 1


def test_a_training_platform_that_is_down_gets_every_insight_once_when_back(
    copilot_stream: Callable[..., Stream],
) -> None:
    stream = copilot_stream(training_webhook_attempts=6)
    stream.faults(training_down=True)
    cid = play(stream, BILLING)
    run_jobs(stream)
    insight_ids = set(processed_ids(stream, cid))
    assert insight_ids
    assert not [t for t in emulator_records(stream)["training"] if t["status_code"] == 204]
    assert figures(stream.services).get("sync.failed", 0) >= len(insight_ids)
    stream.faults(training_down=False)

    def all_delivered() -> bool:
        run_jobs(stream, due=True)
        ok = [t for t in emulator_records(stream)["training"] if t["status_code"] == 204]
        return {t["body"]["insight_id"] for t in ok} == insight_ids

    wait_for(all_delivered, timeout_s=30, interval_s=0.5)
    ok = Counter(
        t["body"]["insight_id"]
        for t in emulator_records(stream)["training"]
        if t["status_code"] == 204
    )
    assert set(ok.values()) == {1}, "an insight reached the training platform twice"
