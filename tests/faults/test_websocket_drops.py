"""Fault: the notifications WebSocket cut every few seconds during live calls.

The emulator plays scripted calls over its Notifications WebSocket while its
`socket_drop_every_s` fault aborts every live socket (TCP cut, no close frame: the client
sees 1006) every 3 s; the channel stays valid, so the stream process reconnects to the same
`connectUri` after its back-off.

What the emulator does, and so what "lost" means here. Genesys keeps nothing for a channel
without a live socket (shared/reference/genesys-cloud.md §2), and neither does the emulator:
a final utterance sent while the stream was reconnecting is missed, by contract, and counted
as such (not as a loss). Each call is also played with the emulator's test knob
`resend_last_n_after_reconnect` (the first round of calls; the second round is played as
Genesys does, with no re-sends): on every new socket the last frames of the call are sent
again, so a final is sometimes recovered, and more often received twice. The check is on
what reached a socket: every final utterance the emulator delivered (first sent or re-sent)
must be stored in the conversation's transcript exactly once (one `utterance_received` audit
line, one window line), and no keyword card may reach a conversation's feed twice.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from statistics import median
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.faults.figures import FaultFigures
from tests.faults.support import KEYS, audit_records
from tests.processes import ProcessSystem

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

SCRIPTS_DIR = Path(__file__).resolve().parents[2] / "emulator" / "data" / "conversations"
SCRIPTS = {path.stem: json.loads(path.read_text()) for path in sorted(SCRIPTS_DIR.glob("*.json"))}
DROP_EVERY_S = 3
ROUNDS = 2
SPEED = 3.0
RESEND_LAST_N = 4


@pytest.fixture
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessSystem]:
    running = ProcessSystem(
        tmp_path_factory.mktemp("fault-ws-drops"),
        stream=True,
        extra_env={
            "ASSIST_STREAM_QUEUE_IDS": ",".join(s["queue_id"] for s in SCRIPTS.values()),
            "ASSIST_KEYWORD_BUFFER_MS": "0",
            "ASSIST_KEYWORD_COOLDOWN_S": "0",
            "EMULATOR_HEARTBEAT_S": "5",
        },
    )
    with running:
        yield running


def live_socket(system: ProcessSystem) -> bool:
    connections = system.records()["notifications"]["connections"]
    return any(c["accepted"] and c["closed"] is None for c in connections)


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def reconnect_gaps(connections: list[dict[str, Any]]) -> list[float]:
    """For each dropped socket, the time until the next socket was accepted."""
    accepted = sorted((c for c in connections if c["accepted"]), key=lambda c: epoch(c["opened"]))
    gaps = []
    for index, connection in enumerate(accepted):
        if connection["close_reason"] != "dropped" or index + 1 >= len(accepted):
            continue
        gaps.append(epoch(accepted[index + 1]["opened"]) - epoch(connection["closed"]))
    return gaps


def feed_card_ids(system: ProcessSystem, conversation_id: str) -> list[str]:
    client = system.redis_client()
    try:
        entries = client.xrange(KEYS.conversation_feed(conversation_id))
    finally:
        client.close()
    ids: list[str] = []
    for _, fields in entries:
        ids += [s["id"] for s in json.loads(fields["event"]).get("suggestions", [])]
    return ids


def test_socket_drops_lose_no_delivered_final_and_duplicate_nothing(
    system: ProcessSystem,
) -> None:
    wait_for(
        lambda: any(
            c.get("status") == 200 for c in system.records()["notifications"]["subscription_calls"]
        ),
        timeout_s=30,
        what="the stream subscribed its queue topics",
    )
    system.faults(socket_drop_every_s=DROP_EVERY_S)
    started = time.monotonic()
    conversation_ids = []
    for round_ in range(ROUNDS):
        for name in SCRIPTS:
            # The call's start (its queue event) must reach the stream, or it is never
            # followed: start each call while a socket is up.
            wait_for(lambda: live_socket(system), timeout_s=15, interval_s=0.05)
            conversation_id = f"fault-ws-{name}-{round_}"
            response = system.emulator.post(
                "/emulator/conversations",
                json={
                    "script": name,
                    "conversation_id": conversation_id,
                    "speed": SPEED,
                    # Round 0 with re-sends, round 1 as Genesys does: none.
                    "resend_last_n_after_reconnect": RESEND_LAST_N if round_ == 0 else 0,
                },
            )
            assert response.status_code == 201, response.text
            conversation_ids.append(conversation_id)
        time.sleep(4)

    def all_played() -> list[dict[str, Any]] | None:
        calls = system.emulator.get("/emulator/conversations").json()["conversations"]
        ours = [c for c in calls if c["conversation_id"] in conversation_ids]
        return ours if len(ours) == len(conversation_ids) and all(c["done"] for c in ours) else None

    calls = wait_for(all_played, timeout_s=90, interval_s=0.5, what="every call played")
    played_s = time.monotonic() - started
    system.faults(socket_drop_every_s=0)
    time.sleep(3)  # the last events are processed and cards delivered by now

    client = system.redis_client()
    stored = {cid: set(client.hkeys(KEYS.conversation_utterances(cid))) for cid in conversation_ids}
    windows = {
        cid: client.lrange(KEYS.conversation_transcript(cid), 0, -1) for cid in conversation_ids
    }
    stream_counters = {k: int(v) for k, v in client.hgetall(KEYS.stream_counters()).items()}
    client.close()
    received = Counter(
        (r["conversation_id"], r["data"]["utterance_id"])
        for r in audit_records(system, "utterance_received")
    )
    connections = system.records()["notifications"]["connections"]
    drops = sum(1 for c in connections if c["close_reason"] == "dropped")
    gaps = reconnect_gaps(connections)

    sent = delivered = processed = 0
    lost: list[tuple[str, str]] = []
    duplicated: list[str] = []
    cards = 0
    for call in calls:
        cid = call["conversation_id"]
        delivered_ids = set(call["finals_delivered"])
        sent += len(call["finals_sent"])
        delivered += len(delivered_ids)
        processed += len(delivered_ids & stored[cid])
        lost += [(cid, u) for u in delivered_ids - stored[cid]]
        duplicated += [f"{c}/{u} x{n}" for (c, u), n in received.items() if c == cid and n > 1]
        duplicated += [
            f"{cid} window: {line}" for line, n in Counter(windows[cid]).items() if n > 1
        ]
        card_ids = feed_card_ids(system, cid)
        cards += len(card_ids)
        duplicated += [f"{cid} card {c} x{n}" for c, n in Counter(card_ids).items() if n > 1]
    resent = sum(c["frames_resent"] for c in calls)
    recovered = sum(
        len(set(c["finals_missed_when_sent"]) & set(c["finals_delivered"])) for c in calls
    )
    FaultFigures(
        scenario=f"notifications WebSocket dropped every {DROP_EVERY_S} s (live calls)",
        sent=sent,
        acknowledged=delivered,
        processed=processed,
        lost=len(lost),
        duplicated=len(duplicated),
        recovery_s=max(gaps) if gaps else None,
        notes=(
            f"{len(calls)} calls at {SPEED:g}x over {played_s:.0f} s; {drops} drops, "
            f"{len(gaps)} reconnects (same connectUri) after {median(gaps) if gaps else 0:.2f} s "
            f"median, {max(gaps) if gaps else 0:.2f} s max; finals sent {sent}, reaching a "
            f"socket {delivered} (missed while disconnected, as on Genesys: {sent - delivered}); "
            f"{resent} frames re-sent after reconnects ({recovered} finals recovered so), "
            f"{stream_counters.get('utterances.duplicate', 0)} re-sent finals dropped as "
            f"duplicates; {cards} cards on the feeds, none twice"
        ),
    ).check()
    assert not lost, lost[:5]
    assert not duplicated, duplicated[:5]
    assert drops >= 5, "the socket was hardly dropped: nothing was exercised"
    assert resent > 0 and stream_counters.get("utterances.duplicate", 0) > 0
    assert cards > 0
