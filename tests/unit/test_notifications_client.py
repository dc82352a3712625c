"""Notifications client pieces that need no socket: REST rules, limits, back-off, frame checks."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from assist.adapters.genesys.errors import (
    ChannelGoneError,
    GenesysAuthError,
    GenesysRateLimitedError,
    TopicLimitError,
)
from assist.adapters.genesys.http import ResilientHttp
from assist.adapters.genesys.notifications import (
    NotificationsApi,
    NotificationsClient,
    OpenChannel,
    StreamConfig,
    StreamItem,
    StreamStopping,
    backoff_delay,
    conversation_id_in,
    frame_size,
)
from assist.adapters.genesys.schemas import Channel

API = "https://api.test"
CHANNELS = f"{API}/api/v2/notifications/channels"


class FakeTokens:
    """TokenProvider's interface: hands out token-1, then token-2 after an invalidation."""

    def __init__(self) -> None:
        self.current = 1
        self.invalidated: list[str] = []

    def token(self) -> str:
        return f"token-{self.current}"

    def invalidate(self, token: str) -> None:
        self.invalidated.append(token)
        if token == self.token():
            self.current += 1


def api_with(
    handler: Any, *, waits: list[float] | None = None, stopping: threading.Event | None = None
) -> tuple[NotificationsApi, FakeTokens]:
    tokens = FakeTokens()
    http = ResilientHttp(
        httpx.Client(transport=httpx.MockTransport(handler)),
        max_attempts=3,
        max_retry_after_s=180,
        sleep=(waits.append if waits is not None else lambda _s: None),
        jitter=lambda _w: 0.0,
    )
    api = NotificationsApi(http, tokens, API, stopping=stopping)  # type: ignore[arg-type]
    return api, tokens


CHANNEL_BODY = {
    "connectUri": "wss://streaming.test/channels/ch-1",
    "id": "ch-1",
    "expires": "2026-11-21T10:00:00.000Z",
}


# --- REST ----------------------------------------------------------------------------------


def test_a_channel_is_created_with_the_bearer_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=CHANNEL_BODY)

    api, _ = api_with(handler)
    opened = api.create_channel()
    assert opened.channel.id == "ch-1" and opened.token == "token-1"
    assert seen[0].method == "POST" and str(seen[0].url) == CHANNELS
    assert seen[0].headers["Authorization"] == "Bearer token-1"


def test_subscriptions_send_topic_ids_and_report_rejections() -> None:
    seen: list[tuple[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append((request.method, body))
        entities = [{"id": t["id"], "state": "Permitted"} for t in body]
        entities.append({"id": "v2.bad", "state": "Rejected", "rejectionReason": "nope"})
        return httpx.Response(200, json={"entities": entities})

    api, _ = api_with(handler)
    assert api.replace_topics("ch-1", ["a", "b"]) == ["v2.bad"]
    assert api.add_topics("ch-1", ["c"]) == ["v2.bad"]
    assert seen == [("PUT", [{"id": "a"}, {"id": "b"}]), ("POST", [{"id": "c"}])]


def test_a_rejected_token_is_replaced_once() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["Authorization"] == "Bearer token-1":
            return httpx.Response(401, json={"message": "revoked"})
        return httpx.Response(200, json=CHANNEL_BODY)

    api, tokens = api_with(handler)
    assert api.create_channel().token == "token-2"
    assert tokens.invalidated == ["token-1"]


def test_a_second_401_is_an_auth_error() -> None:
    api, _ = api_with(lambda request: httpx.Response(401, json={}))
    with pytest.raises(GenesysAuthError):
        api.create_channel()


def test_404_means_the_channel_is_gone_and_400_the_topic_limit() -> None:
    api, _ = api_with(lambda request: httpx.Response(404, json={"message": "gone"}))
    with pytest.raises(ChannelGoneError):
        api.add_topics("ch-1", ["a"])
    assert api.channel_exists("ch-1") is False
    api, _ = api_with(lambda request: httpx.Response(400, json={"message": "too many topics"}))
    with pytest.raises(TopicLimitError, match="too many topics"):
        api.replace_topics("ch-1", ["a"])


def test_429_waits_retry_after_then_succeeds() -> None:
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "2"}, json={}),
            httpx.Response(200, json={"entities": []}),
        ]
    )
    waits: list[float] = []
    api, _ = api_with(lambda request: next(answers), waits=waits)
    assert api.add_topics("ch-1", ["a"]) == []
    assert waits == [2.0]


def test_429_beyond_the_attempts_is_reported_with_retry_after() -> None:
    api, _ = api_with(lambda request: httpx.Response(429, headers={"Retry-After": "7"}, json={}))
    with pytest.raises(GenesysRateLimitedError) as caught:
        api.create_channel()
    assert caught.value.retry_after_s == 7.0


def test_a_retry_wait_ends_at_shutdown() -> None:
    stopping = threading.Event()
    tokens = FakeTokens()
    http = ResilientHttp(
        httpx.Client(
            transport=httpx.MockTransport(
                lambda request: httpx.Response(429, headers={"Retry-After": "60"}, json={})
            )
        ),
        max_attempts=3,
        max_retry_after_s=180,
        sleep=NotificationsApi.interruptible_sleep(stopping),
    )
    api = NotificationsApi(http, tokens, API, stopping=stopping)  # type: ignore[arg-type]
    threading.Timer(0.05, stopping.set).start()
    with pytest.raises(StreamStopping):
        api.create_channel()
    with pytest.raises(StreamStopping):  # and no call at all once stopping
        api.create_channel()


# --- topics and channels -------------------------------------------------------------------


async def _ignore(item: StreamItem) -> None:
    return None


def test_topics_fill_a_channel_then_open_another_up_to_the_channel_limit() -> None:
    api, _ = api_with(lambda request: httpx.Response(500))
    client = NotificationsClient(
        api, StreamConfig(max_channels=2, max_topics_per_channel=2), _ignore
    )
    assert all(client.subscribe(f"t{i}") for i in range(4))
    assert [list(s.topics) for s in client.sessions] == [["t0", "t1"], ["t2", "t3"]]
    assert client.subscribe("t4") is False
    assert client.stats["topics_refused"] == 1
    assert client.subscribe("t0") is True  # already followed: nothing changes
    client.unsubscribe("t1")
    assert client.subscribe("t4") is True
    assert [list(s.topics) for s in client.sessions] == [["t0", "t4"], ["t2", "t3"]]
    client.unsubscribe("t2")
    client.unsubscribe("t3")
    assert len(client.sessions) == 1  # an emptied extra channel is given back
    assert client.topics == {"t0", "t4"}


def test_limits_from_settings_never_exceed_genesys_limits() -> None:
    config = StreamConfig()
    assert (config.max_channels, config.max_topics_per_channel) == (20, 1000)
    assert config.hard_frame_limit >= 4 * config.max_frame_bytes
    assert config.pong_wait_s <= config.heartbeat_timeout_s


# --- timing --------------------------------------------------------------------------------


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    low = [backoff_delay(n, base_s=0.5, max_s=30, rand=lambda: 0.0) for n in range(10)]
    high = [backoff_delay(n, base_s=0.5, max_s=30, rand=lambda: 1.0) for n in range(10)]
    assert low[:4] == [0.25, 0.5, 1.0, 2.0]
    assert high[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(high) == 30.0 and max(low) == 15.0
    assert backoff_delay(10_000, base_s=0.5, max_s=30) <= 30.0


def test_a_channel_is_renewed_before_it_expires_but_not_in_a_loop() -> None:
    now = datetime.now(UTC).timestamp()
    day = Channel.model_validate(
        {**CHANNEL_BODY, "expires": datetime.fromtimestamp(now + 86400, UTC).isoformat()}
    )
    opened = OpenChannel(day, "t", opened_at=now)
    renew_at = opened.renew_at(3600)
    assert renew_at is not None and renew_at == pytest.approx(now + 86400 - 3600, abs=0.01)
    short = Channel.model_validate(
        {**CHANNEL_BODY, "expires": (datetime.now(UTC) + timedelta(seconds=10)).isoformat()}
    )
    renew_short = OpenChannel(short, "t", opened_at=now).renew_at(3600)
    assert renew_short is not None and renew_short >= now + 4.9  # half its life at least
    never = Channel.model_validate({"connectUri": "wss://x/channels/a", "id": "a"})
    assert OpenChannel(never, "t").renew_at(3600) is None


# --- frames --------------------------------------------------------------------------------


def test_frame_size_is_utf8_bytes() -> None:
    assert frame_size("abc") == 3
    assert frame_size("é") == 2
    assert frame_size("€" * 10) == 30


def test_the_conversation_id_of_a_broken_frame_is_found_when_present() -> None:
    assert conversation_id_in('{"topicName":"v2.conversations.c-1.transcription","eventB') == "c-1"
    assert conversation_id_in('{"eventBody":{"conversationId": "c-2", "x') == "c-2"
    assert conversation_id_in("garbage") is None
