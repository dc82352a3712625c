"""A scripted customer call, end to end through every real process, the `stream` one included.

The emulator plays `billing-dispute` over its Notifications WebSocket; the stream process
discovers the call through the queue topic, follows its transcription topic, gates the
utterances and hands final customer utterances to keyword detection; the cards arrive on the
conversation's live feed, as the desk would receive them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from assist.core.audit import verify_chain
from tests.processes import CALLBACK_SECRET, CLIENT_SECRET, DESK_TOKEN, ProcessSystem

pytestmark = pytest.mark.e2e

SCRIPTS = Path(__file__).resolve().parents[2] / "emulator" / "data" / "conversations"
QUEUE_IDS = ",".join(
    json.loads(path.read_text())["queue_id"] for path in sorted(SCRIPTS.glob("*.json"))
)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessSystem]:
    running = ProcessSystem(
        tmp_path_factory.mktemp("live-call"),
        stream=True,
        extra_env={
            "ASSIST_STREAM_QUEUE_IDS": QUEUE_IDS,
            "ASSIST_KEYWORD_BUFFER_MS": "0",
            "ASSIST_KEYWORD_COOLDOWN_S": "0",
            "EMULATOR_HEARTBEAT_S": "5",
        },
    )
    with running:
        yield running


def wait_until_subscribed(system: ProcessSystem) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        calls = system.records()["notifications"]["subscription_calls"]
        if any(call.get("status") == 200 for call in calls):
            return
        time.sleep(0.2)
    raise AssertionError(f"the stream never subscribed: {system.log_tail('stream')}")


def feed_cards(system: ProcessSystem, conversation_id: str, want: set[str]) -> list[str]:
    """Read the live feed until every wanted card id arrived (bounded); returns ids in order."""
    url = f"{system.web_url}/v1/conversations/{conversation_id}/events?access_token={DESK_TOKEN}"
    seen: list[str] = []
    deadline = time.monotonic() + 60
    with httpx.stream("GET", url, timeout=httpx.Timeout(10, read=30)) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                seen += [s["id"] for s in json.loads(line[6:])["suggestions"]]
                if want <= set(seen):
                    break
            assert time.monotonic() < deadline, f"cards so far: {seen}"
    return seen


def test_a_scripted_call_puts_keyword_cards_on_the_feed(system: ProcessSystem) -> None:
    wait_until_subscribed(system)
    started = system.emulator.post(
        "/emulator/conversations",
        json={"script": "billing-dispute", "conversation_id": "live-call-1", "speed": 5},
    )
    assert started.status_code == 201
    # "charged twice ... Fibre Max" and "refund for the duplicate payment" in the script.
    seen = feed_cards(system, "live-call-1", {"kb-art-001", "kw-product-fibre-max"})
    assert len(seen) == len(set(seen)), "a card was delivered twice"
    # The live transcript window holds the call's final utterances, redacted.
    redis = system.redis_client()
    window = redis.lrange("assist:v1:conversation:live-call-1:transcript", 0, -1)
    assert any("charged twice" in line for line in window)
    assert not any("4 4 7 1 9 2 3 0" in line for line in window), "account number not redacted?"
    metrics = system.desk.get("/metrics").text
    assert "assist_stream_events_total" in metrics


def test_the_audit_written_by_every_process_is_one_unbroken_chain(system: ProcessSystem) -> None:
    # web, worker and stream all appended to the same file during this module's call.
    lines = system.audit_path.read_text().splitlines()
    writers = {json.loads(line)["type"] for line in lines}
    assert {"utterance_received", "keywords_detected"} <= writers
    verify_chain(lines)


def test_no_configured_secret_appears_in_any_process_log(system: ProcessSystem) -> None:
    logs = {path.name: path.read_text() for path in system.logs.glob("*.log")}
    assert {"web.log", "worker.log", "stream.log", "emulator.log"} <= set(logs)
    for secret in (DESK_TOKEN, CALLBACK_SECRET, CLIENT_SECRET):
        leaked = [name for name, text in logs.items() if secret in text]
        # The emulator is the other party: it may log what it received, our processes not.
        assert not [n for n in leaked if n != "emulator.log"], f"{secret[:6]}… in {leaked}"
