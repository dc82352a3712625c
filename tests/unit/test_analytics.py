"""Dashboard figures from record events (assist.core.analytics)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from assist.core.analytics import percentile, summarize

START = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
END = START + timedelta(hours=1)


def event(
    kind: str,
    minute: float = 0,
    request_id: str | None = None,
    conversation_id: str | None = "c1",
    **data: Any,
) -> dict[str, Any]:
    return {
        "type": kind,
        "ts": (START + timedelta(minutes=minute)).isoformat(),
        "request_id": request_id,
        "conversation_id": conversation_id,
        "data": data,
    }


def feedback(action: str, suggestion: str, conversation: str = "c1", **data: Any) -> dict[str, Any]:
    defaults = {
        "title": f"Title {suggestion}",
        "knowledge_source_ids": ["kb-billing"],
        "agent_skills": ["billing"],
    }
    return event(
        "feedback_recorded",
        conversation_id=conversation,
        suggestion_id=suggestion,
        action=action,
        **{**defaults, **data},
    )


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([5.0], 0.95) == 5.0
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0


def test_acceptance_counts_each_conversation_and_suggestion_once() -> None:
    records = [
        feedback("displayed", "a"),
        feedback("displayed", "a"),  # the desk reloaded: still one display
        feedback("accepted", "a"),
        feedback("accepted", "a"),  # replayed acceptance
        feedback("displayed", "b"),
        feedback("dismissed", "b"),
        feedback("copied", "a", conversation="c2"),  # an adoption implies a display
        feedback("displayed", "c", knowledge_source_ids=["kb-tech"], agent_skills=["tech"]),
    ]
    summary = summarize(records, START, END)
    assert (summary.totals.displayed, summary.totals.accepted) == (4, 2)
    assert summary.totals.acceptance_rate == 0.5
    by_article = {r.key: r for r in summary.acceptance.by_article}
    assert (by_article["a"].displayed, by_article["a"].accepted, by_article["a"].rate) == (
        2,
        2,
        1.0,
    )
    assert by_article["a"].label == "Title a"
    assert by_article["b"].rate == 0.0
    by_source = {r.key: r for r in summary.acceptance.by_knowledge_source}
    assert (by_source["kb-billing"].displayed, by_source["kb-billing"].accepted) == (3, 2)
    assert by_source["kb-tech"].rate == 0.0
    by_skill = {r.key: r.rate for r in summary.acceptance.by_skill}
    assert by_skill == {"billing": round(2 / 3, 4), "tech": 0.0}


def test_rates_are_none_without_displays_and_rows_sort_by_volume() -> None:
    summary = summarize([], START, END)
    assert summary.totals.acceptance_rate is None
    assert summary.acceptance.by_article == []
    records = [
        feedback("displayed", "x"),
        feedback("displayed", "y"),
        feedback("displayed", "y", conversation="c2"),
    ]
    rows = summarize(records, START, END).acceptance.by_article
    assert [r.key for r in rows] == ["y", "x"]


def test_dismissed_articles_are_the_knowledge_gap_list() -> None:
    records = [
        feedback("dismissed", "often"),
        feedback("rejected", "often", conversation="c2"),
        feedback("displayed", "often", conversation="c3"),
        feedback("dismissed", "once"),
        feedback("accepted", "liked"),
    ]
    rows = summarize(records, START, END).dismissed
    assert [(r.key, r.dismissed, r.displayed) for r in rows] == [("often", 2, 3), ("once", 1, 1)]
    assert rows[0].rate == round(2 / 3, 4)
    assert summarize(records, START, END).totals.dismissed == 3


def test_volume_buckets_cover_the_range() -> None:
    records = [
        event("query_requested", 1),
        event("query_requested", 7),
        event("suggestions_ranked", 8),
        event("suggestions_delivered", 8, suggestion_ids=["a", "b", "c"]),
        feedback("displayed", "a") | {"ts": (START + timedelta(minutes=59)).isoformat()},
        event("query_requested", 61),  # outside the range: ignored
    ]
    volume = summarize(records, START, END).volume
    assert volume.bucket_s == 300
    assert len(volume.buckets) == 12
    assert volume.buckets[0].start == START
    assert volume.buckets[0].requests == 1
    assert (volume.buckets[1].requests, volume.buckets[1].ranked) == (1, 1)
    assert volume.buckets[1].suggestions_delivered == 3
    assert volume.buckets[11].feedback == 1
    assert sum(b.requests for b in volume.buckets) == 2


def test_longer_ranges_use_coarser_buckets() -> None:
    assert summarize([], START, START + timedelta(days=1)).volume.bucket_s == 3600
    assert summarize([], START, START + timedelta(days=7)).volume.bucket_s == 86400


def test_latency_per_stage_uses_the_first_observation_per_request() -> None:
    records = []
    for n in range(1, 21):  # 20 requests: submitted after n ms, ranked after 10n ms
        rid = f"r{n}"
        records += [
            event("query_submitted", request_id=rid, latency_ms=n),
            event("callback_received", request_id=rid, callback_status="processing", latency_ms=1),
            event(
                "callback_received",
                request_id=rid,
                callback_status="completed",
                duplicate=False,
                latency_ms=5 * n,
            ),
            event(
                "callback_received",
                request_id=rid,
                callback_status="completed",
                duplicate=True,
                latency_ms=9999,
            ),
            event("suggestions_ranked", request_id=rid, latency_ms=10 * n),
            feedback("displayed", f"s{n}", request_id=rid, latency_ms=20 * n),
            feedback("displayed", f"t{n}", request_id=rid, latency_ms=99999),  # a later card
        ]
    stages = {s.stage: s for s in summarize(records, START, END).latency}
    assert [s for s in stages] == [
        "submitted",
        "callback",
        "ranked",
        "displayed",
        "transcript_lag",
        "utterance_to_card",
    ]
    assert (stages["submitted"].count, stages["submitted"].p50_ms) == (20, 10.0)
    assert stages["submitted"].p95_ms == 19.0
    assert stages["callback"].p50_ms == 50.0 and stages["callback"].p95_ms == 95.0
    assert stages["ranked"].p50_ms == 100.0
    assert stages["displayed"].p50_ms == 200.0 and stages["displayed"].p95_ms == 380.0


def test_live_transcript_stages_count_every_utterance() -> None:
    records = [
        event("utterance_received", request_id=None, lag_ms=lag) | {"event_id": f"e{lag}"}
        for lag in (1000, 2000, 3000, 4000)
    ] + [
        event("utterance_received", request_id=None) | {"event_id": "no-lag"},
        event("keywords_detected", request_id=None, latency_ms=120) | {"event_id": "k1"},
        event("keywords_detected", request_id=None, latency_ms=80) | {"event_id": "k2"},
    ]
    stages = {s.stage: s for s in summarize(records, START, END).latency}
    assert (stages["transcript_lag"].count, stages["transcript_lag"].p50_ms) == (4, 2000.0)
    assert stages["transcript_lag"].p95_ms == 4000.0
    assert (stages["utterance_to_card"].count, stages["utterance_to_card"].p50_ms) == (2, 80.0)
    assert stages["submitted"].count == 0 and stages["submitted"].p50_ms is None
