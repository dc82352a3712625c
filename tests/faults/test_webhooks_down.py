"""Fault: the analytics endpoint and the training-platform webhook down for a minute.

Both of the emulator's receivers answer 503 for 60 s (`analytics_down`, `training_down`)
while live calls produce keyword cards and Copilot insights and triggers produce ranked
suggestions: every record event goes to the analytics outbox (Redis) and every processed
insight to the training platform (one signed `sync_insight` job each). Then both come back.

Every analytics record (by `event_id`) and every processed insight (by insight id, which is
its `webhook-id`) must be delivered after the recovery, none missing, none accepted twice.

Retry schedules under test (README "Records"): analytics attempts 40, training attempts 40,
both waiting 1, 2, then 3 s between attempts (about 2 minutes of attempts, so a one-minute
outage is covered and delivery resumes within seconds of the recovery). The production
defaults (analytics 1, 5, 15, 30, 60, 120, 300 s; training 1, 5, 15, 60, 300 ... 1800 s) resume
within about a minute of a one-minute outage.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.faults.figures import FaultFigures
from tests.faults.support import KEYS, audit_records, request_statuses
from tests.processes import CALLBACK_SECRET, ProcessSystem

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

SCRIPTS_DIR = Path(__file__).resolve().parents[2] / "emulator" / "data" / "conversations"
SCRIPTS = {path.stem: json.loads(path.read_text()) for path in sorted(SCRIPTS_DIR.glob("*.json"))}
COPILOT_TOPICS = "knowledge.search,knowledge.article,response,script,intent,thirdpartyaction"
DOWN_S = 60.0
TRIGGERS = 30


@pytest.fixture
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessSystem]:
    running = ProcessSystem(
        tmp_path_factory.mktemp("fault-webhooks-down"),
        stream=True,
        extra_env={
            "ASSIST_STREAM_QUEUE_IDS": ",".join(s["queue_id"] for s in SCRIPTS.values()),
            "ASSIST_COPILOT_TOPICS": COPILOT_TOPICS,
            "ASSIST_KEYWORD_BUFFER_MS": "0",
            "ASSIST_KEYWORD_COOLDOWN_S": "0",
            "ASSIST_ANALYTICS_ATTEMPTS": "40",
            "ASSIST_ANALYTICS_RETRY_S": "1,2,3",
            "ASSIST_TRAINING_WEBHOOK_ATTEMPTS": "40",
            "ASSIST_TRAINING_WEBHOOK_RETRY_S": "1,2,3",
            "ASSIST_TRAINING_WEBHOOK_SECRET": CALLBACK_SECRET,
            "EMULATOR_HEARTBEAT_S": "5",
        },
    )
    running.env["ASSIST_TRAINING_WEBHOOK_URL"] = f"{running.emulator_url}/training/insights"
    with running:
        yield running


def analytics_outbox_ids(system: ProcessSystem) -> list[str]:
    client = system.redis_client()
    try:
        entries = client.xrange(KEYS.analytics_events())
    finally:
        client.close()
    return [json.loads(fields["record"])["event_id"] for _, fields in entries]


def test_a_minute_of_receivers_down_loses_and_duplicates_nothing(system: ProcessSystem) -> None:
    wait_for(
        lambda: any(
            c.get("status") == 200 for c in system.records()["notifications"]["subscription_calls"]
        ),
        timeout_s=30,
        what="the stream subscribed its queue topics",
    )
    system.faults(analytics_down=True, training_down=True)
    down_at = time.monotonic()
    delivered_before = len(system.records()["analytics_events"])
    calls = []
    for name in SCRIPTS:
        conversation_id = f"fault-hooks-{name}"
        started = system.emulator.post(
            "/emulator/conversations",
            json={"script": name, "conversation_id": conversation_id, "speed": 3.0},
        )
        assert started.status_code == 201, started.text
        calls.append(conversation_id)
    request_ids = []
    for index in range(TRIGGERS):
        response = system.trigger(
            conversation_id=f"fault-hooks-trigger-{index}", transcript="refund a double charge"
        )
        assert response.status_code == 202
        request_ids.append(response.json()["request_id"])
        time.sleep(0.5)

    def calls_played() -> bool:
        listing = system.emulator.get("/emulator/conversations").json()["conversations"]
        return all(c["done"] for c in listing if c["conversation_id"] in calls)

    wait_for(calls_played, timeout_s=DOWN_S, interval_s=0.5, what="every call played")
    store = system.redis_client()
    assert set(request_statuses(store, request_ids).values()) == {"completed"}
    store.close()
    failing = system.records()
    nothing_through = len(failing["analytics_events"]) == delivered_before
    refused_training = [t for t in failing["training"] if t["status_code"] == 503]
    time.sleep(max(0.0, down_at + DOWN_S - time.monotonic()))
    system.faults(analytics_down=False, training_down=False)
    up_at = time.monotonic()

    insights = {r["data"]["suggestion_id"] for r in audit_records(system, "insight_processed")}
    assert insights, "no Copilot insight was processed: nothing was exercised"

    def delivered() -> tuple[set[str], set[str]] | None:
        records = system.records()
        analytics = {e["event_id"] for e in records["analytics_events"]}
        training = {t["body"]["insight_id"] for t in records["training"] if t["status_code"] == 204}
        outbox = set(analytics_outbox_ids(system))
        return (analytics, training) if outbox <= analytics and insights <= training else None

    wait_for(delivered, timeout_s=60, interval_s=0.2, what="every record and insight delivered")
    recovery_s = time.monotonic() - up_at
    time.sleep(2)  # a second delivery of anything, if there were one, would have come by now
    records = system.records()
    outbox = analytics_outbox_ids(system)
    analytics_counts = Counter(e["event_id"] for e in records["analytics_events"])
    training_counts = Counter(
        t["body"]["insight_id"] for t in records["training"] if t["status_code"] == 204
    )
    expected = set(outbox) | insights
    missing = [i for i in outbox if analytics_counts[i] == 0] + [
        i for i in insights if training_counts[i] == 0
    ]
    twice = [i for i, n in analytics_counts.items() if n > 1] + [
        i for i, n in training_counts.items() if n > 1
    ]
    unknown = [i for i in training_counts if i not in insights]
    processed = sum(1 for i in outbox if analytics_counts[i]) + sum(
        1 for i in insights if training_counts[i]
    )
    during = [t for t in records["training"] if t["status_code"] == 503]
    FaultFigures(
        scenario=f"analytics endpoint + training webhook down {DOWN_S:.0f} s",
        sent=len(expected),
        acknowledged=len(expected),
        processed=processed,
        lost=len(missing),
        duplicated=len(twice) + len(unknown),
        recovery_s=recovery_s,
        notes=(
            f"{len(outbox)} analytics records (outbox) + {len(insights)} Copilot insights "
            f"from {len(calls)} calls and {TRIGGERS} triggers; {len(during)} training "
            f"attempts refused while down; everything delivered {recovery_s:.1f} s after the "
            "receivers came back (retry every 3 s)"
        ),
    ).check()
    assert nothing_through, "an analytics delivery went through while the endpoint was down"
    assert refused_training, "the training webhook was never refused"
    assert not unknown
    assert recovery_s < 15
    dead = system.redis_client()
    try:
        counters = dead.hgetall(KEYS.copilot_counters())
    finally:
        dead.close()
    assert "sync.dead_lettered" not in counters
