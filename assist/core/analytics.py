"""Dashboard figures computed from record events (pure functions, no I/O).

Input: analytics records (`RecordEvent.to_record()` dicts) of a time range, oldest first.

- Acceptance rate = accepted / displayed, counting each (conversation, suggestion) pair once,
  so a desk that reloads and reports `displayed` again does not dilute it. An adoption
  (accepted or copied) also counts as displayed, since the agent evidently saw the card.
  Grouped by knowledge source, by article and by the agent's skills.
- Volume over time: requests, rankings, suggestions delivered and feedback per time bucket.
- Latency per stage, each measured from the trigger: submitted, callback (the final one),
  ranked, displayed (the first `displayed` reported for the request); p50 and p95.
- Dismissed articles: the knowledge-gap list, most dismissed first.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

ADOPTION = frozenset({"accepted", "copied"})
DISMISSAL = frozenset({"dismissed", "rejected"})
STAGES = (
    ("submitted", "Trigger → query submitted"),
    ("callback", "Trigger → final callback"),
    ("ranked", "Trigger → ranked"),
    ("displayed", "Trigger → displayed"),
    ("transcript_lag", "Speech → utterance received (transcription lag)"),
    ("utterance_to_card", "Final utterance received → cards on the feed"),
)


class RateRow(BaseModel):
    key: str
    label: str
    displayed: int
    accepted: int
    rate: float | None


class DismissedRow(BaseModel):
    key: str
    label: str
    dismissed: int
    displayed: int
    rate: float | None


class VolumeBucket(BaseModel):
    start: datetime
    requests: int = 0
    ranked: int = 0
    suggestions_delivered: int = 0
    feedback: int = 0


class Volume(BaseModel):
    bucket_s: int
    buckets: list[VolumeBucket]


class StageLatency(BaseModel):
    stage: str
    label: str
    count: int
    p50_ms: float | None
    p95_ms: float | None


class Acceptance(BaseModel):
    by_knowledge_source: list[RateRow]
    by_article: list[RateRow]
    by_skill: list[RateRow]


class Totals(BaseModel):
    requests: int
    displayed: int
    accepted: int
    dismissed: int
    acceptance_rate: float | None


class InsightTypeStats(BaseModel):
    """Copilot insights of one type (or all): how many, how fast from event to feed."""

    insight_type: str
    count: int
    delivered: int
    p50_ms: float | None
    p95_ms: float | None
    under_500ms: float | None


class Summary(BaseModel):
    start: datetime
    end: datetime
    acceptance: Acceptance
    volume: Volume
    latency: list[StageLatency]
    dismissed: list[DismissedRow]
    totals: Totals
    copilot: list[InsightTypeStats] = []


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (no interpolation): a value that was actually observed."""
    if not values:
        return None
    ordered = sorted(values)
    index = max(0, math.ceil(fraction * len(ordered)) - 1)
    return float(ordered[index])


def bucket_seconds(start: datetime, end: datetime) -> int:
    span = (end - start).total_seconds()
    if span <= 2 * 3600:
        return 300
    if span <= 2 * 86400:
        return 3600
    return 86400


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


class _Pair:
    """What happened to one suggestion in one conversation."""

    __slots__ = ("accepted", "dismissed", "displayed", "labels", "skills", "sources")

    def __init__(self) -> None:
        self.displayed = False
        self.accepted = False
        self.dismissed = False
        self.labels = ""
        self.sources: list[str] = []
        self.skills: list[str] = []


def _feedback_pairs(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], _Pair]:
    pairs: dict[tuple[str, str], _Pair] = {}
    for record in records:
        if record.get("type") != "feedback_recorded":
            continue
        data = record.get("data", {})
        key = (str(record.get("conversation_id")), str(data.get("suggestion_id")))
        pair = pairs.setdefault(key, _Pair())
        action = data.get("action")
        pair.displayed = True  # any action means the card was on screen
        pair.accepted |= action in ADOPTION
        pair.dismissed |= action in DISMISSAL
        pair.labels = data.get("title") or pair.labels
        for source in data.get("knowledge_source_ids") or []:
            if source not in pair.sources:
                pair.sources.append(source)
        for skill in data.get("agent_skills") or []:
            if skill not in pair.skills:
                pair.skills.append(skill)
    return pairs


def _rate_rows(groups: Mapping[str, list[_Pair]], labels: Mapping[str, str]) -> list[RateRow]:
    rows = []
    for key, pairs in groups.items():
        displayed = sum(p.displayed for p in pairs)
        accepted = sum(p.accepted for p in pairs)
        rows.append(
            RateRow(
                key=key,
                label=labels.get(key, key),
                displayed=displayed,
                accepted=accepted,
                rate=_rate(accepted, displayed),
            )
        )
    rows.sort(key=lambda r: (-r.displayed, r.key))
    return rows


def acceptance(pairs: Mapping[tuple[str, str], _Pair]) -> Acceptance:
    by_source: dict[str, list[_Pair]] = defaultdict(list)
    by_article: dict[str, list[_Pair]] = defaultdict(list)
    by_skill: dict[str, list[_Pair]] = defaultdict(list)
    titles: dict[str, str] = {}
    for (_, suggestion_id), pair in pairs.items():
        by_article[suggestion_id].append(pair)
        if pair.labels:
            titles[suggestion_id] = pair.labels
        for source in pair.sources:
            by_source[source].append(pair)
        for skill in pair.skills:
            by_skill[skill].append(pair)
    return Acceptance(
        by_knowledge_source=_rate_rows(by_source, {}),
        by_article=_rate_rows(by_article, titles),
        by_skill=_rate_rows(by_skill, {}),
    )


def dismissed(pairs: Mapping[tuple[str, str], _Pair], limit: int = 10) -> list[DismissedRow]:
    groups: dict[str, list[_Pair]] = defaultdict(list)
    titles: dict[str, str] = {}
    for (_, suggestion_id), pair in pairs.items():
        groups[suggestion_id].append(pair)
        titles[suggestion_id] = pair.labels or titles.get(suggestion_id, "")
    rows = []
    for key, group in groups.items():
        count = sum(p.dismissed for p in group)
        if count:
            shown = sum(p.displayed for p in group)
            rows.append(
                DismissedRow(
                    key=key,
                    label=titles.get(key) or key,
                    dismissed=count,
                    displayed=shown,
                    rate=_rate(count, shown),
                )
            )
    rows.sort(key=lambda r: (-r.dismissed, -(r.rate or 0), r.key))
    return rows[:limit]


def volume(records: Iterable[Mapping[str, Any]], start: datetime, end: datetime) -> Volume:
    step = bucket_seconds(start, end)
    first = datetime.fromtimestamp(start.timestamp() // step * step, tz=start.tzinfo)
    count = max(1, math.ceil((end - first).total_seconds() / step))
    buckets = [VolumeBucket(start=first + timedelta(seconds=i * step)) for i in range(count)]
    for record in records:
        ts = datetime.fromisoformat(str(record["ts"]))
        index = int((ts - first).total_seconds() // step)
        if not 0 <= index < count:
            continue
        bucket = buckets[index]
        kind = record.get("type")
        if kind == "query_requested":
            bucket.requests += 1
        elif kind == "suggestions_ranked":
            bucket.ranked += 1
        elif kind == "suggestions_delivered":
            bucket.suggestions_delivered += len(record.get("data", {}).get("suggestion_ids", []))
        elif kind == "feedback_recorded":
            bucket.feedback += 1
    return Volume(bucket_s=step, buckets=buckets)


def _stage_of(record: Mapping[str, Any]) -> str | None:
    kind = record.get("type")
    data = record.get("data", {})
    if kind == "query_submitted":
        return "submitted"
    if kind == "callback_received":
        final = data.get("callback_status") == "completed"
        return "callback" if final and not data.get("duplicate") else None
    if kind == "suggestions_ranked":
        return "ranked"
    if kind == "feedback_recorded" and data.get("action") == "displayed":
        return "displayed"
    if kind == "utterance_received" and data.get("lag_ms") is not None:
        return "transcript_lag"
    if kind == "keywords_detected":
        return "utterance_to_card"
    return None


def _latency_of(stage: str, record: Mapping[str, Any]) -> tuple[str, float] | None:
    """(what the figure is about, its value): per request for C1 stages, per event for C2."""
    data = record.get("data", {})
    value = data.get("lag_ms") if stage == "transcript_lag" else data.get("latency_ms")
    if value is None:
        return None
    subject = record.get("request_id") if stage in _PER_REQUEST else record.get("event_id")
    return (str(subject), float(value)) if subject is not None else None


_PER_REQUEST = frozenset({"submitted", "callback", "ranked", "displayed"})


def latency(records: Iterable[Mapping[str, Any]]) -> list[StageLatency]:
    # One figure per request and stage: the first observation (e.g. the first card displayed).
    first: dict[tuple[str, str], float] = {}
    for record in records:
        stage = _stage_of(record)
        observed = _latency_of(stage, record) if stage is not None else None
        if stage is None or observed is None:
            continue
        subject, value = observed
        first.setdefault((stage, subject), value)
    samples: dict[str, list[float]] = defaultdict(list)
    for (stage, _), value in first.items():
        samples[stage].append(value)
    return [
        StageLatency(
            stage=stage,
            label=label,
            count=len(samples[stage]),
            p50_ms=percentile(samples[stage], 0.5),
            p95_ms=percentile(samples[stage], 0.95),
        )
        for stage, label in STAGES
    ]


def copilot(records: Iterable[Mapping[str, Any]]) -> list[InsightTypeStats]:
    """Per insight type, then "all": count, delivered, latency p50/p95, share under 500 ms."""
    samples: dict[str, list[float]] = defaultdict(list)
    delivered: dict[str, int] = defaultdict(int)
    for record in records:
        if record.get("type") != "insight_processed":
            continue
        data = record.get("data", {})
        latency_ms = data.get("latency_ms")
        if latency_ms is None:
            continue
        for key in (str(data.get("insight_type", "other")), "all"):
            samples[key].append(float(latency_ms))
            delivered[key] += bool(data.get("delivered"))
    rows = []
    for key in sorted(samples, key=lambda k: (k == "all", k)):
        values = samples[key]
        rows.append(
            InsightTypeStats(
                insight_type=key,
                count=len(values),
                delivered=delivered[key],
                p50_ms=percentile(values, 0.5),
                p95_ms=percentile(values, 0.95),
                under_500ms=_rate(sum(v <= 500 for v in values), len(values)),
            )
        )
    return rows


def summarize(records: Sequence[Mapping[str, Any]], start: datetime, end: datetime) -> Summary:
    pairs = _feedback_pairs(records)
    displayed = sum(p.displayed for p in pairs.values())
    accepted = sum(p.accepted for p in pairs.values())
    return Summary(
        start=start,
        end=end,
        acceptance=acceptance(pairs),
        volume=volume(records, start, end),
        latency=latency(records),
        dismissed=dismissed(pairs),
        copilot=copilot(records),
        totals=Totals(
            requests=sum(1 for r in records if r.get("type") == "query_requested"),
            displayed=displayed,
            accepted=accepted,
            dismissed=sum(p.dismissed for p in pairs.values()),
            acceptance_rate=_rate(accepted, displayed),
        ),
    )
