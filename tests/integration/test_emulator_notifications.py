"""Integration tests of the emulator's Notifications API: REST channels and subscriptions,
the WebSocket at `connectUri`, scripted conversation replays and the socket faults.

One emulator (fast heartbeats) serves the module and is reset before each test; tests that
need another configuration (channel TTL, a clean channel count) start their own. Clients
are real: httpx over loopback and the `websockets` sync client.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from emulator.config import ConfigError, EmulatorConfig
from emulator.notifications import MAX_CHANNELS, transcription_topic
from emulator.scripts import Call, load_scripts, plan_transcription
from emulator.server import EmulatorServer

CLIENT_ID = "notif-client"
CLIENT_SECRET = "notif-secret"
HEARTBEAT_S = 0.2
BILLING_QUEUE = load_scripts()["billing-dispute"].queue_id

ENVELOPE_FIELDS = {"topicName", "version", "eventBody", "metadata"}
MESSAGE_FIELDS = {
    "eventTime",
    "organizationId",
    "conversationId",
    "communicationId",
    "sessionStartTimeMs",
    "transcriptionStartTimeMs",
    "transcripts",
    "status",
}
TRANSCRIPT_FIELDS = {
    "utteranceId",
    "isFinal",
    "channel",
    "alternatives",
    "dialect",
    "engineProvider",
    "engineId",
    "engineName",
    "agentAssistEnabled",
    "voiceTranscriptionEnabled",
}
PARTIAL_ALTERNATIVE_FIELDS = {"confidence", "offsetMs", "durationMs", "transcript"}
WORD_FIELDS = {"confidence", "startTimeMs", "offsetMs", "durationMs", "word"}


# --- helpers ---------------------------------------------------------------------------------


def make_config(**overrides: Any) -> EmulatorConfig:
    values: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "heartbeat_s": HEARTBEAT_S,
    }
    values.update(overrides)
    return EmulatorConfig(**values)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    pytest.fail(f"condition not met within {timeout}s")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Api:
    """The REST side, as our stream process would use it."""

    http: httpx.Client
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def create_channel(self) -> dict[str, Any]:
        response = self.http.post("/api/v2/notifications/channels", headers=self.auth)
        assert response.status_code == 200, response.text
        channel: dict[str, Any] = response.json()
        return channel

    def subscriptions(
        self, method: str, channel_id: str, topics: list[str] | None = None
    ) -> httpx.Response:
        body = None if topics is None else [{"id": topic} for topic in topics]
        return self.http.request(
            method,
            f"/api/v2/notifications/channels/{channel_id}/subscriptions",
            json=body,
            headers=self.auth,
        )

    def subscribe(self, channel_id: str, *topics: str) -> None:
        response = self.subscriptions("POST", channel_id, list(topics))
        assert response.status_code == 200, response.text

    def head(self, channel_id: str) -> int:
        response = self.http.head(f"/api/v2/notifications/channels/{channel_id}", headers=self.auth)
        return response.status_code

    def start_conversation(self, **body: Any) -> dict[str, Any]:
        response = self.http.post("/emulator/conversations", json=body)
        assert response.status_code == 201, response.text
        snapshot: dict[str, Any] = response.json()
        return snapshot

    def conversation(self, conversation_id: str) -> dict[str, Any]:
        listing = self.http.get("/emulator/conversations").json()["conversations"]
        found: dict[str, Any] = next(c for c in listing if c["conversation_id"] == conversation_id)
        return found

    def records(self) -> dict[str, Any]:
        notifications: dict[str, Any] = self.http.get("/emulator/records").json()["notifications"]
        return notifications

    def set_faults(self, **faults: Any) -> None:
        response = self.http.post("/emulator/faults", json=faults)
        assert response.status_code == 200, response.text


def new_token(http: httpx.Client) -> str:
    response = http.post(
        "/oauth/token", auth=(CLIENT_ID, CLIENT_SECRET), data={"grant_type": "client_credentials"}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


class Socket:
    """A notification socket client: parsed messages, heartbeats kept apart."""

    def __init__(self, uri: str) -> None:
        self._stack = contextlib.ExitStack()
        self.ws: ClientConnection = self._stack.enter_context(
            # An unbounded queue: unread heartbeats must not stall the closing handshake.
            connect(uri, open_timeout=5, close_timeout=2, max_queue=None)
        )
        self.heartbeats = 0

    def recv(self, timeout: float = 3.0) -> str | bytes:
        return self.ws.recv(timeout=timeout)

    def next_event(self, timeout: float = 3.0) -> dict[str, Any]:
        """The next message that is not a heartbeat."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv(max(0.01, deadline - time.monotonic()))
            message: dict[str, Any] = json.loads(frame)
            if message.get("eventBody") == {"message": "WebSocket Heartbeat"}:
                self.heartbeats += 1
                continue
            return message

    def frames_until(
        self, done: Callable[[str | bytes], bool], timeout: float = 8.0
    ) -> list[str | bytes]:
        """Every non-heartbeat frame up to and including the first for which `done` holds."""
        deadline = time.monotonic() + timeout
        frames: list[str | bytes] = []
        while True:
            frame = self.recv(max(0.01, deadline - time.monotonic()))
            if isinstance(frame, str) and '"WebSocket Heartbeat"' in frame:
                self.heartbeats += 1
                continue
            frames.append(frame)
            if done(frame):
                return frames

    def close_code(self, timeout: float = 3.0) -> int | None:
        """Read until the server closes; the close code it sent (None: no close frame)."""
        deadline = time.monotonic() + timeout
        with pytest.raises(ConnectionClosed) as closed:
            while time.monotonic() < deadline:
                self.recv(max(0.01, deadline - time.monotonic()))
        rcvd = closed.value.rcvd
        return None if rcvd is None else int(rcvd.code)

    def close(self) -> None:
        self._stack.close()


def is_queue_end(frame: str | bytes) -> bool:
    if isinstance(frame, bytes):
        return False
    try:
        message = json.loads(frame)
    except ValueError:
        return False
    return message.get("topicName", "").endswith(".conversations") and all(
        "endTime" in p for p in message["eventBody"]["participants"]
    )


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    server = EmulatorServer(make_config())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sockets() -> Iterator[list[Socket]]:
    """Sockets a test opened, closed after it."""
    opened: list[Socket] = []
    yield opened
    for sock in opened:
        sock.close()


@pytest.fixture
def open_socket(sockets: list[Socket]) -> Callable[[str], Socket]:
    def _open(uri: str) -> Socket:
        sock = Socket(uri)
        sockets.append(sock)
        return sock

    return _open


@pytest.fixture
def api(emulator: EmulatorServer) -> Iterator[Api]:
    emulator.state.reset()
    with httpx.Client(base_url=emulator.url, timeout=5.0) as http:
        yield Api(http, new_token(http))
    emulator.state.reset()


@pytest.fixture
def fresh() -> Iterator[Callable[..., tuple[EmulatorServer, Api]]]:
    """A dedicated emulator with its own configuration (and no channels yet)."""
    started: list[tuple[EmulatorServer, httpx.Client]] = []

    def _start(**overrides: Any) -> tuple[EmulatorServer, Api]:
        server = EmulatorServer(make_config(**overrides))
        server.start()
        http = httpx.Client(base_url=server.url, timeout=5.0)
        started.append((server, http))
        return server, Api(http, new_token(http))

    yield _start
    for server, http in started:
        http.close()
        server.stop()


# --- channels --------------------------------------------------------------------------------


def test_create_channel_and_connect(
    api: Api, emulator: EmulatorServer, open_socket: Callable[[str], Socket]
) -> None:
    before = datetime.now(UTC)
    response = api.http.post("/api/v2/notifications/channels", headers=api.auth)

    assert response.status_code == 200
    channel = response.json()
    assert set(channel) == {"connectUri", "id", "expires"}
    assert channel["connectUri"] == f"{emulator.ws_url}/channels/{channel['id']}"
    lifetime = (parse_iso(channel["expires"]) - before).total_seconds()
    assert 86390 < lifetime <= 86401
    assert response.headers["ININ-Correlation-Id"]
    assert int(response.headers["inin-ratelimit-count"]) >= 1
    assert "inin-ratelimit-allowed" in response.headers

    sock = open_socket(channel["connectUri"])
    heartbeat = json.loads(sock.recv(timeout=2))
    assert set(heartbeat) == ENVELOPE_FIELDS
    assert heartbeat["topicName"] == "channel.metadata"
    assert heartbeat["version"] == "2"
    assert heartbeat["eventBody"] == {"message": "WebSocket Heartbeat"}
    assert heartbeat["metadata"]["CorrelationId"]

    assert api.head(channel["id"]) == 200
    assert api.head("no-such-channel") == 404
    listing = api.http.get("/api/v2/notifications/channels", headers=api.auth).json()
    assert channel in listing["entities"]
    records = api.records()
    assert [c["id"] for c in records["channels"]] == [channel["id"]]
    wait_until(lambda: api.records()["frames_sent"].get(channel["id"], 0) >= 1)
    connection = api.records()["connections"][0]
    assert connection["channel_id"] == channel["id"]
    assert connection["accepted"] is True
    assert connection["closed"] is None


def test_notification_routes_require_an_emulator_token(api: Api) -> None:
    channel = api.create_channel()
    calls = [
        ("POST", "/api/v2/notifications/channels"),
        ("GET", "/api/v2/notifications/channels"),
        ("GET", f"/api/v2/notifications/channels/{channel['id']}/subscriptions"),
        ("PUT", f"/api/v2/notifications/channels/{channel['id']}/subscriptions"),
    ]
    for method, path in calls:
        for headers in ({}, {"Authorization": "Bearer not-issued-here"}):
            response = api.http.request(method, path, headers=headers, json=[])
            assert response.status_code == 401, (method, path)
            body = response.json()
            assert body["code"] == "bad.credentials"
            assert body["status"] == 401
            assert body["contextId"] == response.headers["ININ-Correlation-Id"]
    head = api.http.head(f"/api/v2/notifications/channels/{channel['id']}")
    assert head.status_code == 401


def test_list_channels_per_token_or_oauth_client(api: Api) -> None:
    mine = api.create_channel()
    other = Api(api.http, new_token(api.http)).create_channel()

    by_token = api.http.get("/api/v2/notifications/channels", headers=api.auth).json()
    assert mine in by_token["entities"]
    assert all(e.get("id") != other["id"] for e in by_token["entities"])

    by_client = api.http.get(
        "/api/v2/notifications/channels?includechannels=oauthclient", headers=api.auth
    ).json()
    assert mine in by_client["entities"]
    # Other tokens' channels are shown to exist, without their ids.
    assert {"expires": other["expires"]} in by_client["entities"]

    bad = api.http.get("/api/v2/notifications/channels?includechannels=all", headers=api.auth)
    assert bad.status_code == 400
    assert bad.json()["code"] == "bad.request"


def test_21st_channel_evicts_the_least_recently_used_without_a_socket(
    fresh: Callable[..., tuple[EmulatorServer, Api]], open_socket: Callable[[str], Socket]
) -> None:
    _, api = fresh(heartbeat_s=30.0)

    def live_sockets(count: int) -> Callable[[], bool]:
        return lambda: sum(c["closed"] is None for c in api.records()["connections"]) == count

    channels = [api.create_channel() for _ in range(MAX_CHANNELS)]
    # The oldest channel has a live socket, so the second oldest goes instead.
    oldest = open_socket(channels[0]["connectUri"])
    wait_until(live_sockets(1))

    newest = api.create_channel()

    assert api.head(channels[1]["id"]) == 404
    assert api.head(channels[0]["id"]) == 200
    assert api.head(newest["id"]) == 200
    records = api.records()
    assert records["channels"][-1] == {
        "id": newest["id"],
        "created": records["channels"][-1]["created"],
        "evicted": channels[1]["id"],
    }
    assert {"id": channels[1]["id"], "reason": "evicted"} in records["channels_removed"]
    listing = api.http.get(
        "/api/v2/notifications/channels?includechannels=oauthclient", headers=api.auth
    ).json()["entities"]
    assert len(listing) == MAX_CHANNELS

    # When every channel has a socket, the least recently used one goes anyway; its socket
    # is told so and closed.
    for channel in [*channels[2:], newest]:
        open_socket(channel["connectUri"])
    wait_until(live_sockets(MAX_CHANNELS))
    api.create_channel()
    assert api.head(channels[0]["id"]) == 404
    event = oldest.next_event()
    assert event == {"result": "404", "message": f"Channel {channels[0]['id']} was evicted"}
    assert oldest.close_code() == 1008


# --- subscriptions ---------------------------------------------------------------------------


def test_subscriptions_permitted_rejected_add_replace_delete(api: Api) -> None:
    channel = api.create_channel()
    cid = channel["id"]
    queue = f"v2.routing.queues.{BILLING_QUEUE}.conversations"
    transcription = "v2.conversations.0b5e7d3c-1111-4a2b-9c3d-4e5f6a7b8c9d.transcription"

    put = api.subscriptions("PUT", cid, [queue, "v2.users.u1.presence", queue])
    assert put.status_code == 200
    assert put.headers["ININ-Correlation-Id"]
    self_uri = f"/api/v2/notifications/channels/{cid}/subscriptions"
    assert put.json() == {
        "entities": [
            {"id": queue, "state": "Permitted", "selfUri": self_uri},
            {
                "id": "v2.users.u1.presence",
                "state": "Rejected",
                "rejectionReason": "topic not found",
                "selfUri": self_uri,
            },
        ]
    }
    post = api.subscriptions("POST", cid, [transcription, "v2.conversations.x.transcripts"])
    assert [(e["id"], e["state"]) for e in post.json()["entities"]] == [
        (queue, "Permitted"),
        (transcription, "Permitted"),
        ("v2.conversations.x.transcripts", "Rejected"),
    ]
    get = api.subscriptions("GET", cid)
    assert [e["id"] for e in get.json()["entities"]] == [queue, transcription]

    replaced = api.subscriptions("PUT", cid, [transcription])
    assert [e["id"] for e in replaced.json()["entities"]] == [transcription]

    deleted = api.subscriptions("DELETE", cid)
    assert deleted.status_code == 204
    assert api.subscriptions("GET", cid).json() == {"entities": []}

    unknown = api.subscriptions("PUT", "no-such-channel", [queue])
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "not.found"
    for bad_body in ({"id": queue}, [queue], [{"id": ""}], [{"topic": queue}]):
        response = api.http.post(
            f"/api/v2/notifications/channels/{cid}/subscriptions", json=bad_body, headers=api.auth
        )
        assert response.status_code == 400, bad_body
        assert response.json()["code"] == "bad.request"

    calls = api.records()["subscription_calls"]
    assert [(c["method"], c["status"]) for c in calls[:5]] == [
        ("PUT", 200),
        ("POST", 200),
        ("GET", 200),
        ("PUT", 200),
        ("DELETE", 204),
    ]
    assert calls[0]["rejected"] == ["v2.users.u1.presence"]


def test_resubscribing_extends_the_channel(api: Api) -> None:
    channel = api.create_channel()
    time.sleep(0.05)
    api.subscribe(channel["id"], "v2.routing.queues.q1.conversations")
    listing = api.http.get("/api/v2/notifications/channels", headers=api.auth).json()
    renewed = next(e for e in listing["entities"] if e["id"] == channel["id"])
    assert parse_iso(renewed["expires"]) > parse_iso(channel["expires"])


def test_more_than_1000_topics_is_a_400(api: Api) -> None:
    cid = api.create_channel()["id"]
    topics = [f"v2.conversations.c{i}.transcription" for i in range(1000)]

    assert api.subscriptions("PUT", cid, topics).status_code == 200
    one_more = api.subscriptions("POST", cid, ["v2.routing.queues.q.conversations"])
    assert one_more.status_code == 400
    assert one_more.json()["code"] == "bad.request"
    assert "1000" in one_more.json()["message"]
    assert len(api.subscriptions("GET", cid).json()["entities"]) == 1000

    too_many = api.subscriptions("PUT", cid, [*topics, "v2.conversations.c1000.transcription"])
    assert too_many.status_code == 400
    # Rejected topics do not count.
    assert api.subscriptions("POST", cid, ["v2.nope"]).status_code == 200


def test_subscription_rate_limit_fault(api: Api) -> None:
    cid = api.create_channel()["id"]
    api.set_faults(subscription_rate_limit_next=2, retry_after_s=7)

    first = api.subscriptions("PUT", cid, ["v2.routing.queues.q.conversations"])
    second = api.subscriptions("GET", cid)
    third = api.subscriptions("PUT", cid, ["v2.routing.queues.q.conversations"])

    assert (first.status_code, second.status_code, third.status_code) == (429, 429, 200)
    assert first.headers["Retry-After"] == "7"
    assert first.json()["code"] == "too.many.requests"
    assert first.headers["ININ-Correlation-Id"] == first.json()["contextId"]
    assert [c["status"] for c in api.records()["subscription_calls"]] == [429, 429, 200]
    # Channel creation and the token endpoint are not affected.
    assert api.http.post("/api/v2/notifications/channels", headers=api.auth).status_code == 200


# --- the socket ------------------------------------------------------------------------------


def test_heartbeats_and_ping_pong(api: Api, open_socket: Callable[[str], Socket]) -> None:
    channel = api.create_channel()
    sock = open_socket(channel["connectUri"])
    started = time.monotonic()
    for _ in range(3):
        assert json.loads(sock.recv(timeout=2))["eventBody"]["message"] == "WebSocket Heartbeat"
    assert time.monotonic() - started >= 2.5 * HEARTBEAT_S

    sock.ws.send('{"message":"ping"}')
    pong = sock.next_event()
    assert pong["topicName"] == "channel.metadata"
    assert pong["eventBody"] == {"message": "pong"}
    assert api.records()["pings_received"] == {channel["id"]: 1}


def test_second_socket_on_a_channel_closes_the_first(
    api: Api, open_socket: Callable[[str], Socket]
) -> None:
    channel = api.create_channel()
    first = open_socket(channel["connectUri"])
    first.recv(timeout=2)

    second = open_socket(channel["connectUri"])

    error = first.next_event()
    assert error["result"] == "404"
    assert "replaced" in error["message"]
    assert first.close_code() == 1008
    assert json.loads(second.recv(timeout=2))["topicName"] == "channel.metadata"
    assert api.head(channel["id"]) == 200
    wait_until(lambda: api.records()["connections"][0]["close_reason"] == "replaced")


def test_unknown_channel_and_path(emulator: EmulatorServer, api: Api) -> None:
    sock = Socket(f"{emulator.ws_url}/channels/does-not-exist")
    try:
        assert sock.next_event() == {
            "result": "404",
            "message": "Channel does-not-exist not found or expired",
        }
        assert sock.close_code() == 1008
    finally:
        sock.close()
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{emulator.ws_url}/somewhere/else", open_timeout=2)
    assert refused.value.response.status_code == 404
    connection = api.records()["connections"][0]
    assert (connection["accepted"], connection["close_reason"]) == (False, "unknown_channel")


def test_channel_expiry_closes_the_socket(
    fresh: Callable[..., tuple[EmulatorServer, Api]], open_socket: Callable[[str], Socket]
) -> None:
    _, api = fresh(channel_ttl_s=0.6, heartbeat_s=5.0)
    channel = api.create_channel()
    sock = open_socket(channel["connectUri"])

    event = sock.next_event(timeout=3)

    assert event["result"] == "404"
    assert sock.close_code() == 1008
    assert api.head(channel["id"]) == 404
    assert api.subscriptions("GET", channel["id"]).status_code == 404
    assert {"id": channel["id"], "reason": "expired"} in api.records()["channels_removed"]
    listing = api.http.get("/api/v2/notifications/channels", headers=api.auth).json()
    assert listing == {"entities": []}


# --- scripted conversations ------------------------------------------------------------------


def test_conversation_replay(api: Api, open_socket: Callable[[str], Socket]) -> None:
    channel = api.create_channel()
    api.subscribe(channel["id"], f"v2.routing.queues.{BILLING_QUEUE}.conversations")
    sock = open_socket(channel["connectUri"])

    started = api.start_conversation(script="billing-dispute", speed=20)
    conversation_id = started["conversation_id"]
    assert started["queue_id"] == BILLING_QUEUE
    assert started["state"] == "waiting_for_subscriber"

    queue_event = sock.next_event()
    assert queue_event["topicName"] == f"v2.routing.queues.{BILLING_QUEUE}.conversations"
    body = queue_event["eventBody"]
    assert body["id"] == conversation_id
    customer, agent = body["participants"]
    assert set(customer) == {"id", "purpose", "queueId", "connectedTime"}
    assert customer["purpose"] == "customer"
    assert set(agent) == {"id", "purpose", "userId", "queueId", "connectedTime"}
    assert (agent["purpose"], agent["queueId"]) == ("agent", BILLING_QUEUE)

    # Our stream process reacts to the queue event by subscribing to the transcription.
    api.subscribe(channel["id"], transcription_topic(conversation_id))
    frames = sock.frames_until(is_queue_end, timeout=10)

    messages = [json.loads(frame) for frame in frames]
    end_event = messages.pop()
    assert all("endTime" in p for p in end_event["eventBody"]["participants"])
    assert all(m["topicName"] == transcription_topic(conversation_id) for m in messages)
    bodies = [m["eventBody"] for m in messages]
    for message, body in zip(messages, bodies, strict=True):
        assert set(message) == ENVELOPE_FIELDS and message["version"] == "2"
        assert set(body) == MESSAGE_FIELDS
        assert body["conversationId"] == conversation_id
        assert body["communicationId"] == started["communication_id"]
        assert set(body["status"]) == {"offsetMs", "status"}
        for transcript in body["transcripts"]:
            assert set(transcript) == TRANSCRIPT_FIELDS
            (alternative,) = transcript["alternatives"]
            if transcript["isFinal"]:
                assert set(alternative) == {*PARTIAL_ALTERNATIVE_FIELDS, "words"}
                assert all(set(word) == WORD_FIELDS for word in alternative["words"])
                words = " ".join(word["word"] for word in alternative["words"])
                assert words == alternative["transcript"]
            else:
                assert set(alternative) == PARTIAL_ALTERNATIVE_FIELDS

    # Status-only messages first, SESSION_ENDED last, SESSION_ONGOING in between.
    assert bodies[0]["transcripts"] == []
    assert bodies[0]["status"] == {"offsetMs": 0, "status": "SESSION_ONGOING"}
    assert bodies[-1]["transcripts"] == []
    assert bodies[-1]["status"]["status"] == "SESSION_ENDED"
    assert all(b["status"]["status"] == "SESSION_ONGOING" for b in bodies[:-1])
    offsets = [b["status"]["offsetMs"] for b in bodies]
    assert offsets == sorted(offsets)

    # Per utterance: partials with growing text, then one final with the whole text.
    results = [(t, i) for i, b in enumerate(bodies) for t in b["transcripts"]]
    by_utterance: dict[str, list[dict[str, Any]]] = {}
    for transcript, _ in results:
        by_utterance.setdefault(transcript["utteranceId"], []).append(transcript)
    script = load_scripts()["billing-dispute"]
    assert len(by_utterance) == len(script.utterances)
    for utterance, sequence in zip(script.utterances, by_utterance.values(), strict=True):
        *partials, final = sequence
        assert partials and all(not p["isFinal"] for p in partials)
        assert final["isFinal"]
        texts = [p["alternatives"][0]["transcript"] for p in partials]
        assert all(len(a) < len(b) for a, b in itertools.pairwise(texts))
        assert all(utterance.text.startswith(text) for text in texts)
        assert final["alternatives"][0]["transcript"] == utterance.text
        expected = "EXTERNAL" if utterance.speaker == "customer" else "INTERNAL"
        assert {t["channel"] for t in sequence} == {expected}
    assert {t["channel"] for t, _ in results} == {"EXTERNAL", "INTERNAL"}
    confidences = [t["alternatives"][0]["confidence"] for t, _ in results if t["isFinal"]]
    assert 0.35 in confidences

    # The interruption: the agent is heard before the customer's utterance is final.
    customer_finals = [i for t, i in results if t["isFinal"] and t["channel"] == "EXTERNAL"]
    agent_partials = [i for t, i in results if not t["isFinal"] and t["channel"] == "INTERNAL"]
    assert any(
        any(start < a < final for a in agent_partials)
        for start, final in zip(
            [i for t, i in results if t["channel"] == "EXTERNAL" and not t["isFinal"]],
            customer_finals,
            strict=False,
        )
    )

    wait_until(lambda: api.conversation(conversation_id)["done"])
    progress = api.conversation(conversation_id)
    assert progress["state"] == "ended"
    assert progress["messages_sent"] == progress["messages_planned"] == len(messages)
    assert progress["frames_delivered"] == len(messages)
    assert progress["queue_events_delivered"] == 2


def test_messages_without_a_live_socket_are_dropped_unless_resend_is_asked(
    api: Api, open_socket: Callable[[str], Socket]
) -> None:
    channel = api.create_channel()
    started = api.start_conversation(
        script="password-reset", speed=200, resend_last_n_after_reconnect=3
    )
    conversation_id = started["conversation_id"]
    api.subscribe(channel["id"], transcription_topic(conversation_id))
    wait_until(lambda: api.conversation(conversation_id)["done"])
    progress = api.conversation(conversation_id)
    assert progress["messages_sent"] == progress["messages_planned"]
    assert progress["frames_delivered"] == 0

    sock = open_socket(channel["connectUri"])
    resent = [sock.next_event() for _ in range(3)]

    assert [m["eventBody"]["transcripts"] != [] for m in resent] == [True, True, False]
    assert resent[-1]["eventBody"]["status"]["status"] == "SESSION_ENDED"
    assert all(m["eventBody"]["conversationId"] == conversation_id for m in resent)
    # A conversation without the knob is not resent.
    plain = api.start_conversation(script="cancellation", speed=500, subscribe_timeout_s=0)
    wait_until(lambda: api.conversation(plain["conversation_id"])["done"])
    api.subscribe(channel["id"], transcription_topic(plain["conversation_id"]))
    with pytest.raises(TimeoutError):
        sock.next_event(timeout=3 * HEARTBEAT_S)


def test_conversation_control_errors_and_scripts_listing(api: Api) -> None:
    unknown = api.http.post("/emulator/conversations", json={"script": "no-such-script"})
    assert unknown.status_code == 404
    assert "billing-dispute" in unknown.json()["description"]
    for body in ({}, {"script": "cancellation", "speed": 0}, {"script": "cancellation", "x": 1}):
        assert api.http.post("/emulator/conversations", json=body).status_code == 400, body
    conversation = {"script": "cancellation", "conversation_id": "conv-dup", "speed": 5}
    api.start_conversation(**conversation)
    assert api.http.post("/emulator/conversations", json=conversation).status_code == 409

    scripts = api.http.get("/emulator/scripts").json()["scripts"]
    assert {s["name"] for s in scripts} == {"billing-dispute", "password-reset", "cancellation"}


def test_reset_stops_and_forgets_conversations(
    api: Api, emulator: EmulatorServer, open_socket: Callable[[str], Socket]
) -> None:
    channel = api.create_channel()
    sock = open_socket(channel["connectUri"])
    started = api.start_conversation(script="billing-dispute", speed=10)
    api.subscribe(channel["id"], transcription_topic(started["conversation_id"]))
    assert sock.next_event()["eventBody"]["conversationId"] == started["conversation_id"]

    assert api.http.post("/emulator/reset").status_code == 200

    assert api.http.get("/emulator/conversations").json() == {"conversations": []}
    with pytest.raises(TimeoutError):
        sock.next_event(timeout=1.0)  # the replay has stopped
    assert sock.heartbeats >= 1  # the socket itself stays open, the channel too
    assert api.head(channel["id"]) == 200


# --- socket faults ---------------------------------------------------------------------------


def test_fault_ws_drop_after_frames(api: Api, open_socket: Callable[[str], Socket]) -> None:
    channel = api.create_channel()
    api.set_faults(ws_drop_after_frames=2)
    sock = open_socket(channel["connectUri"])

    sock.recv(timeout=2)
    sock.recv(timeout=2)

    assert sock.close_code() is None  # no close frame: the connection was cut
    assert api.http.get("/emulator/faults").json()["ws_drop_after_frames"] == 0
    wait_until(lambda: api.records()["connections"][0]["close_reason"] == "dropped")
    # The channel survives; a new socket works.
    again = open_socket(channel["connectUri"])
    assert json.loads(again.recv(timeout=2))["topicName"] == "channel.metadata"


def test_fault_socket_closing(api: Api, open_socket: Callable[[str], Socket]) -> None:
    channel = api.create_channel()
    sock = open_socket(channel["connectUri"])
    api.set_faults(socket_closing_next=True)

    warning = sock.next_event()
    assert warning["topicName"] == "v2.system.socket_closing"
    assert warning["eventBody"]["channelId"] == channel["id"]
    assert warning["eventBody"]["oauthClientId"] == CLIENT_ID
    warned = time.monotonic()
    assert sock.close_code() == 1001
    assert 0.8 < time.monotonic() - warned < 2.0
    assert api.http.get("/emulator/faults").json()["socket_closing_next"] is False

    assert api.head(channel["id"]) == 200
    again = open_socket(channel["connectUri"])
    assert json.loads(again.recv(timeout=2))["topicName"] == "channel.metadata"


def test_fault_expire_channels_now(api: Api, open_socket: Callable[[str], Socket]) -> None:
    channels = [api.create_channel() for _ in range(2)]
    sock = open_socket(channels[0]["connectUri"])
    sock.recv(timeout=2)

    api.set_faults(expire_channels_now=True)

    assert sock.next_event()["result"] == "404"
    assert sock.close_code() == 1008
    assert [api.head(c["id"]) for c in channels] == [404, 404]
    removed = api.records()["channels_removed"]
    assert {"id": channels[1]["id"], "reason": "expired"} in removed
    assert api.http.get("/emulator/faults").json()["expire_channels_now"] is False


def test_fault_malformed_and_oversized_frames(
    api: Api, open_socket: Callable[[str], Socket]
) -> None:
    channel = api.create_channel()
    sock = open_socket(channel["connectUri"])
    api.set_faults(malformed_frames_next=4, oversized_frame_next=1)
    started = api.start_conversation(script="password-reset", speed=50, subscribe_timeout_s=0)
    assert (started["malformed_frames"], started["oversized_frames"]) == (4, 1)
    api.subscribe(channel["id"], transcription_topic(started["conversation_id"]))

    def ended(frame: str | bytes) -> bool:
        return isinstance(frame, str) and '"SESSION_ENDED"' in frame

    frames = sock.frames_until(ended, timeout=8)

    binary = [f for f in frames if isinstance(f, bytes)]
    texts = [f for f in frames if isinstance(f, str)]
    assert len(binary) == 1
    parsed: list[dict[str, Any]] = []
    invalid = 0
    for text in texts:
        try:
            parsed.append(json.loads(text))
        except ValueError:
            invalid += 1
    assert invalid == 1
    transcripts = [t for m in parsed for t in m["eventBody"].get("transcripts", [])]
    assert any(
        t.get("isFinal") == "yes" and isinstance(t["alternatives"], dict) for t in transcripts
    )
    assert any("conversationId" not in m["eventBody"] for m in parsed)
    assert any("utteranceId" not in t for t in transcripts)
    oversized = [t for t in texts if len(t.encode()) >= 100_000]
    assert len(oversized) == 1
    # The good messages all still arrive.
    wait_until(lambda: api.conversation(started["conversation_id"])["done"])
    good = [m for m in parsed if "utteranceId" in json.dumps(m)]
    assert len(good) >= api.conversation(started["conversation_id"])["messages_planned"] - 3
    assert api.http.get("/emulator/faults").json()["malformed_frames_next"] == 0


def test_fault_heartbeats_paused(api: Api, open_socket: Callable[[str], Socket]) -> None:
    channel = api.create_channel()
    sock = open_socket(channel["connectUri"])
    sock.recv(timeout=2)
    api.set_faults(heartbeats_paused=True)
    time.sleep(HEARTBEAT_S / 2)
    with contextlib.suppress(TimeoutError):  # a heartbeat may have been on its way
        sock.recv(timeout=HEARTBEAT_S)

    sock.ws.send('{"message":"ping"}')
    with pytest.raises(TimeoutError):
        sock.recv(timeout=4 * HEARTBEAT_S)  # neither heartbeats nor a pong
    assert api.records()["pings_received"] == {channel["id"]: 1}

    api.set_faults(heartbeats_paused=False)
    assert json.loads(sock.recv(timeout=2))["topicName"] == "channel.metadata"


def test_socket_faults_are_validated(api: Api) -> None:
    for faults in (
        {"ws_drop_after_frames": -1},
        {"socket_closing_next": "yes"},
        {"heartbeats_paused": 1},
        {"oversized_frame_next": 1.5},
        {"websocket_chaos": True},
    ):
        response = api.http.post("/emulator/faults", json=faults)
        assert response.status_code == 400, faults
        assert response.json()["error"] == "invalid_faults"


# --- scripts and configuration (no I/O) ------------------------------------------------------


def test_bundled_scripts_cover_the_gates() -> None:
    scripts = load_scripts()
    assert set(scripts) == {"billing-dispute", "password-reset", "cancellation"}
    for script in scripts.values():
        ordered = script.utterances
        interruptions = [
            (a, b)
            for a, b in itertools.pairwise(ordered)
            if a.speaker != b.speaker and b.offset_ms < a.end_ms
        ]
        assert interruptions, script.name
        assert {u.speaker for u in ordered} == {"customer", "agent"}
    customer_text = " ".join(
        u.text.lower() for s in scripts.values() for u in s.utterances if u.speaker == "customer"
    )
    for phrase in ("charged twice", "refund", "password", "locked out", "cancel my contract"):
        assert phrase in customer_text
    assert "fibre max" in customer_text

    reset = scripts["password-reset"]
    plan = plan_transcription(reset, Call.new(reset, "c1", reset.queue_id), 1_700_000_000_000)
    dialects = {t["dialect"] for m in plan for t in m.body["transcripts"]}
    assert dialects == {"en-US", "es-ES"}


def test_config_from_env_notification_settings() -> None:
    config = EmulatorConfig.from_env(
        {"EMULATOR_WS_PORT": "9911", "EMULATOR_HEARTBEAT_S": "2.5", "EMULATOR_CHANNEL_TTL_S": "60"}
    )
    assert (config.ws_port, config.heartbeat_s, config.channel_ttl_s) == (9911, 2.5, 60.0)
    defaults = EmulatorConfig.from_env({})
    assert (defaults.ws_port, defaults.heartbeat_s, defaults.channel_ttl_s) == (
        8791,
        30.0,
        86400.0,
    )
    with pytest.raises(ConfigError, match="EMULATOR_WS_PORT"):
        EmulatorConfig.from_env({"EMULATOR_WS_PORT": "70000"})
    with pytest.raises(ConfigError, match="EMULATOR_HEARTBEAT_S"):
        EmulatorConfig.from_env({"EMULATOR_HEARTBEAT_S": "0"})
    with pytest.raises(ConfigError, match="EMULATOR_CHANNEL_TTL_S"):
        EmulatorConfig.from_env({"EMULATOR_CHANNEL_TTL_S": "soon"})
