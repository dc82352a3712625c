"""The stream process against the emulator's real Notifications API and WebSocket.

Each test runs `StreamProcess` on its own event loop in a background thread, with settings
pointing at an emulator (heartbeats every 0.2 s) and the test Redis, plays scripted calls
through `POST /emulator/conversations` and injects the socket faults. The C3 hooks are the
real ones, wrapped to count their calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from assist.adapters.genesys.schemas import queue_conversations_topic, transcription_topic
from assist.bootstrap import Services, build_services
from assist.core.redaction import redact_text
from assist.core.transcripts import Speaker, Utterance
from assist.services import keywords
from assist.stores.transcripts import StreamStatusStore, TranscriptStore
from emulator.config import EmulatorConfig
from emulator.scripts import Script, load_scripts
from emulator.server import EmulatorServer
from tests.conftest import CALLBACK_SECRET, CLIENT_ID, CLIENT_SECRET, make_settings, wait_for
from tests.redis_server import RedisServer
from workers.stream import StreamProcess

SCRIPTS = load_scripts()
BILLING = SCRIPTS["billing-dispute"]
PASSWORD = SCRIPTS["password-reset"]
QUEUES = ",".join(sorted({script.queue_id for script in SCRIPTS.values()}))


def start_emulator(**config: Any) -> EmulatorServer:
    server = EmulatorServer(
        EmulatorConfig(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            callback_secret=CALLBACK_SECRET,
            heartbeat_s=0.2,
            **config,
        )
    )
    server.start()
    return server


@pytest.fixture(scope="module")
def ws_emulator() -> Iterator[EmulatorServer]:
    server = start_emulator()
    yield server
    server.stop()


def expected_lines(script: Script) -> list[str]:
    return [f"{u.speaker}: {' '.join(redact_text(u.text).split())}" for u in script.utterances]


@dataclass
class Stream:
    process: StreamProcess
    services: Services
    emulator: httpx.Client
    thread: threading.Thread
    analysed: list[Utterance] = field(default_factory=list)
    resets: list[str] = field(default_factory=list)

    @property
    def store(self) -> TranscriptStore:
        return TranscriptStore(self.services.redis, window_size=30, ttl_s=3600)

    def counters(self) -> dict[str, int]:
        return StreamStatusStore(self.services.redis).counters()

    def counter(self, name: str) -> int:
        return self.process.counters()[name]

    def records(self) -> dict[str, Any]:
        notifications: dict[str, Any] = self.emulator.get("/emulator/records").json()[
            "notifications"
        ]
        return notifications

    def faults(self, **faults: Any) -> None:
        self.emulator.post("/emulator/faults", json=faults).raise_for_status()

    def call(self, script: Script, *, speed: float = 40, **options: Any) -> str:
        response = self.emulator.post(
            "/emulator/conversations", json={"script": script.name, "speed": speed, **options}
        )
        assert response.status_code == 201, response.text
        conversation_id: str = response.json()["conversation_id"]
        return conversation_id

    def wait_ended(self, conversation_id: str, timeout_s: float = 15) -> None:
        wait_for(lambda: self.store.is_closed(conversation_id), timeout_s=timeout_s)
        topic = transcription_topic(conversation_id)
        wait_for(lambda: topic not in self.process.client.topics, timeout_s=5)

    def connected(self) -> bool:
        sessions = self.process.client.sessions
        return bool(sessions) and all(s.connected.is_set() for s in sessions)

    def wait_live(self) -> None:
        """Connected, with the queue topics subscribed on the emulator's side."""
        wait_for(self.connected, timeout_s=10)
        queue_topic = queue_conversations_topic(BILLING.queue_id)
        wait_for(
            lambda: any(
                call["status"] == 200 and queue_topic in call["topics"]
                for call in self.records()["subscription_calls"]
            ),
            timeout_s=10,
        )

    def assert_alive(self) -> None:
        assert self.thread.is_alive()
        wait_for(self.connected, timeout_s=10)


@pytest.fixture
def stream_factory(
    tmp_path: Path,
    redis_server: RedisServer,
    ws_emulator: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., Stream]]:
    started: list[Stream] = []
    control_clients: list[httpx.Client] = []

    def build(emulator: EmulatorServer | None = None, **overrides: Any) -> Stream:
        emulator = emulator or ws_emulator
        control = httpx.Client(base_url=emulator.url, timeout=5)
        control_clients.append(control)
        control.post("/emulator/reset").raise_for_status()
        values: dict[str, Any] = {
            "redis_url": redis_server.url,
            "genesys_api_base_url": emulator.url,
            "genesys_login_base_url": emulator.url,
            "genesys_max_attempts": 4,
            "stream_queue_ids": QUEUES,
            "stream_heartbeat_timeout_s": 1.0,
            "stream_ping_interval_s": 0.3,
            "stream_backoff_base_s": 0.05,
            "stream_backoff_max_s": 0.5,
            "stream_end_grace_s": 5.0,
        }
        values.update(overrides)
        services = build_services(make_settings(tmp_path, **values))
        process = StreamProcess(services)
        thread = threading.Thread(target=asyncio.run, args=(process.run(),), daemon=True)
        stream = Stream(process, services, control, thread)

        real_handle, real_reset = keywords.handle_final_utterance, keywords.reset_buffer

        def handle(services: Services, utterance: Utterance) -> None:
            stream.analysed.append(utterance)
            real_handle(services, utterance)

        def reset(services: Services, conversation_id: str) -> int:
            stream.resets.append(conversation_id)
            return real_reset(services, conversation_id)

        monkeypatch.setattr(keywords, "handle_final_utterance", handle)
        monkeypatch.setattr(keywords, "reset_buffer", reset)
        thread.start()
        started.append(stream)
        stream.wait_live()
        return stream

    yield build
    for stream in started:
        stream.process.request_stop()
        stream.thread.join(timeout=15)
        assert not stream.thread.is_alive(), "the stream process did not stop"
        stream.services.close()
    for control in control_clients:
        with contextlib.suppress(httpx.HTTPError):  # an emulator the test already stopped
            control.post("/emulator/reset")
        control.close()


@pytest.fixture
def stream(stream_factory: Callable[..., Stream]) -> Stream:
    return stream_factory()


# --- a scripted call -----------------------------------------------------------------------


def test_a_call_fills_the_window_with_finals_and_analyses_passing_customer_finals(
    stream: Stream,
) -> None:
    cid = stream.call(BILLING, speed=20)
    stream.wait_ended(cid)

    # Finals only, each once (every utterance had partials first), in the order spoken.
    window = stream.store.window(cid)
    assert window == expected_lines(BILLING)
    assert stream.services.conversations.transcript_window(cid) == "\n".join(window)
    assert stream.store.partials(cid) == {}  # the live partial slot is cleared at the end

    decisions = list(stream.store.decisions(cid).values())
    customers = [u for u in BILLING.utterances if u.speaker == "customer"]
    assert decisions.count("agent_side") == len(BILLING.utterances) - len(customers)
    assert decisions.count("low_confidence") == 1  # "sorry the line is breaking up" at 0.35
    assert decisions.count("analysed") == len(customers) - 1

    # handle_final_utterance: exactly once per passing customer final.
    analysed = stream.analysed
    assert len(analysed) == len(customers) - 1
    assert len({u.utterance_id for u in analysed}) == len(analysed)
    assert all(u.speaker is Speaker.CUSTOMER and u.is_final for u in analysed)
    assert all(u.queue_id == BILLING.queue_id for u in analysed)
    assert "breaking up" not in " ".join(u.text for u in analysed)

    # The agent started at 33.2 s while the customer spoke until 34.8 s: one buffer reset.
    assert stream.resets == [cid]
    wait_for(lambda: stream.counters().get("interruptions") == 1, timeout_s=5)

    # SESSION_ENDED unsubscribed the conversation on the emulator too: a PUT without it.
    topic = transcription_topic(cid)

    def unsubscribed() -> bool:
        calls = stream.records()["subscription_calls"]
        added = next(i for i, c in enumerate(calls) if topic in c["topics"])
        return any(
            c["method"] == "PUT" and c["status"] == 200 and topic not in c["topics"]
            for c in calls[added + 1 :]
        )

    wait_for(unsubscribed, timeout_s=5)

    # One utterance_received record per final, with the decision and no text.
    lines = (Path(stream.services.settings.audit_log_path)).read_text().splitlines()
    received = [json.loads(line) for line in lines if '"utterance_received"' in line]
    assert len(received) == len(BILLING.utterances)
    assert {r["data"]["decision"] for r in received} == {"analysed", "agent_side", "low_confidence"}
    assert all(r["data"]["lag_ms"] is not None and r["data"]["lag_ms"] >= 0 for r in received)
    assert all("text" not in r["data"] and "transcript" not in r["data"] for r in received)
    assert "Bank of Ireland" not in "\n".join(lines)


def test_a_dialect_mismatch_is_kept_in_the_window_but_not_analysed(stream: Stream) -> None:
    cid = stream.call(PASSWORD)
    stream.wait_ended(cid)
    window = stream.store.window(cid)
    assert window == expected_lines(PASSWORD)
    assert any("español" in line for line in window)
    assert list(stream.store.decisions(cid).values()).count("language_mismatch") == 1
    assert all(u.dialect == "en-US" for u in stream.analysed)
    customers = [u for u in PASSWORD.utterances if u.speaker == "customer"]
    assert len(stream.analysed) == len(customers) - 1


# --- bad input -----------------------------------------------------------------------------


def test_malformed_and_oversized_frames_are_dropped_counted_and_survived(stream: Stream) -> None:
    stream.faults(malformed_frames_next=4, oversized_frame_next=1)
    cid = stream.call(BILLING)
    stream.wait_ended(cid)
    expected = {
        "dropped.invalid_json": 1,
        "dropped.binary": 1,
        "dropped.wrong_types": 1,
        "dropped.missing_ids": 1,
        "dropped.oversized": 1,
    }
    wait_for(lambda: {k: stream.counters().get(k) for k in expected} == expected, timeout_s=5)
    # The good frames of the call all made it.
    assert stream.store.window(cid) == expected_lines(BILLING)
    stream.assert_alive()
    assert stream.counter("connection.reconnects") == 0  # the oversized frame cost no reconnect


# --- faults --------------------------------------------------------------------------------


def test_a_dropped_socket_loses_no_resent_final_and_duplicates_nothing(stream: Stream) -> None:
    cid = stream.call(BILLING, speed=10, resend_last_n_after_reconnect=12)
    wait_for(lambda: len(stream.store.window(cid)) >= 4, timeout_s=10)
    stream.faults(ws_drop_after_frames=1)
    stream.wait_ended(cid)
    assert stream.counter("connection.reconnects") >= 1
    closes = [c["close_reason"] for c in stream.records()["connections"]]
    assert "dropped" in closes
    assert stream.counter("utterances.duplicate") >= 1  # re-sent finals were recognised
    assert stream.store.window(cid) == expected_lines(BILLING)
    ids = [u.utterance_id for u in stream.analysed]
    assert len(ids) == len(set(ids)) == 5


def test_socket_closing_reconnects_to_the_same_channel(stream: Stream) -> None:
    before = stream.records()
    channel_id = before["channels"][0]["id"]
    stream.faults(socket_closing_next=True)
    wait_for(lambda: stream.counter("connection.socket_closing") == 1, timeout_s=5)
    wait_for(
        lambda: (
            sum(
                1
                for c in stream.records()["connections"]
                if c["channel_id"] == channel_id and c["accepted"]
            )
            == 2
        ),
        timeout_s=5,
    )
    assert len(stream.records()["channels"]) == 1  # no new channel was needed
    cid = stream.call(BILLING)
    stream.wait_ended(cid)
    assert stream.store.window(cid) == expected_lines(BILLING)


def test_silent_heartbeats_trigger_the_watchdog(stream: Stream) -> None:
    stream.faults(heartbeats_paused=True)
    wait_for(lambda: stream.counter("connection.watchdog_reconnects") >= 1, timeout_s=5)
    assert stream.counter("connection.pings_sent") >= 1
    stream.faults(heartbeats_paused=False)
    stream.assert_alive()
    cid = stream.call(BILLING)
    stream.wait_ended(cid)
    assert stream.store.window(cid) == expected_lines(BILLING)


def test_an_expired_channel_is_replaced_and_resubscribed(stream: Stream) -> None:
    stream.faults(expire_channels_now=True)
    wait_for(lambda: len(stream.records()["channels"]) == 2, timeout_s=5)
    new_channel = stream.records()["channels"][1]["id"]
    queue_topic = queue_conversations_topic(BILLING.queue_id)
    wait_for(
        lambda: any(
            c["channel_id"] == new_channel and c["status"] == 200 and queue_topic in c["topics"]
            for c in stream.records()["subscription_calls"]
        ),
        timeout_s=5,
    )
    stream.assert_alive()
    cid = stream.call(BILLING)
    stream.wait_ended(cid)
    assert stream.store.window(cid) == expected_lines(BILLING)


def statuses_around(stream: Stream, topic: str) -> list[int]:
    """Statuses of the subscription call that added `topic` and of the one just before it.

    (The emulator records no topics for a call it refused before reading the body.)
    """
    calls = stream.records()["subscription_calls"]
    added = next(i for i, c in enumerate(calls) if topic in c["topics"] and c["status"] == 200)
    return [c["status"] for c in calls[max(0, added - 1) : added + 1]]


def test_a_rate_limited_subscription_is_retried_after_retry_after(stream: Stream) -> None:
    stream.faults(subscription_rate_limit_next=1, retry_after_s=1)
    started = time.monotonic()
    cid = stream.call(BILLING)
    stream.wait_ended(cid)
    assert statuses_around(stream, transcription_topic(cid)) == [429, 200]
    assert time.monotonic() - started >= 1.0
    assert stream.store.window(cid) == expected_lines(BILLING)


def test_a_token_revoked_mid_stream_is_replaced(stream: Stream) -> None:
    tokens_before = len(stream.emulator.get("/emulator/records").json()["token_requests"])
    stream.emulator.post("/emulator/revoke-tokens").raise_for_status()
    cid = stream.call(BILLING)
    stream.wait_ended(cid)
    assert statuses_around(stream, transcription_topic(cid)) == [401, 200]
    records = stream.emulator.get("/emulator/records").json()
    assert len(records["token_requests"]) > tokens_before
    assert stream.store.window(cid) == expected_lines(BILLING)
    # The channel made with the revoked token is replaced by one made with the new token.
    wait_for(lambda: stream.counter("connection.renewals") >= 1, timeout_s=5)
    stream.assert_alive()


def test_channels_are_renewed_before_they_expire_without_losing_a_final(
    stream_factory: Callable[..., Stream],
) -> None:
    short_lived = start_emulator(channel_ttl_s=2.0)
    stream: Stream | None = None
    try:
        stream = stream_factory(short_lived, stream_channel_renew_before_s=1)
        cid = stream.call(BILLING, speed=20)
        stream.wait_ended(cid)
        assert stream.counter("connection.renewals") >= 1
        assert stream.store.window(cid) == expected_lines(BILLING)
        ids = [u.utterance_id for u in stream.analysed]
        assert len(ids) == len(set(ids)) == 5
        stream.assert_alive()
    finally:
        if stream is not None:
            stream.process.request_stop()
            stream.thread.join(timeout=15)
        short_lived.stop()


# --- the process ---------------------------------------------------------------------------


def test_the_process_stops_cleanly_on_sigterm(
    tmp_path: Path, redis_server: RedisServer, ws_emulator: EmulatorServer
) -> None:
    control = httpx.Client(base_url=ws_emulator.url, timeout=5)
    control.post("/emulator/reset").raise_for_status()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ASSIST_", "EMULATOR_"))},
        "REDIS_URL": redis_server.url,
        "ASSIST_ENVIRONMENT": "production",
        "ASSIST_LOG_FORMAT": "json",
        "ASSIST_AUDIT_LOG_PATH": str(tmp_path / "audit.jsonl"),
        "ASSIST_GENESYS_API_BASE_URL": ws_emulator.url,
        "ASSIST_GENESYS_LOGIN_BASE_URL": ws_emulator.url,
        "ASSIST_GENESYS_CLIENT_ID": CLIENT_ID,
        "ASSIST_GENESYS_CLIENT_SECRET": CLIENT_SECRET,
        "ASSIST_STREAM_QUEUE_IDS": QUEUES,
    }
    log_path = tmp_path / "stream.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "workers.stream"],
            cwd=tmp_path,  # no .env here
            env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def live() -> bool:
            assert process.poll() is None, log_path.read_text()
            connections = control.get("/emulator/records").json()["notifications"]["connections"]
            return any(c["accepted"] and c["closed"] is None for c in connections)

        wait_for(live, timeout_s=15)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    connections = control.get("/emulator/records").json()["notifications"]["connections"]
    assert [c["close_reason"] for c in connections] == ["client"]
    output = log_path.read_text()
    assert '"stream.stopped"' in output and "Traceback" not in output
    control.close()
