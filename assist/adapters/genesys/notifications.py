"""Genesys Cloud Notifications API client: channels, topics and the WebSocket (capability C2).

The real contract (reference/genesys-cloud.md §2): `POST /api/v2/notifications/channels`
gives `{connectUri, id, expires}`; `PUT`/`POST .../channels/{id}/subscriptions` with
`[{"id": topic}]` replaces/adds topics; the socket at `connectUri` carries envelopes
`{topicName, version, eventBody, metadata}`, a `channel.metadata` heartbeat about every 30 s,
a `pong` for each text `{"message":"ping"}`, and `v2.system.socket_closing` before a
maintenance close. Nothing is replayed after a disconnect.

Two layers:

- `NotificationsApi` (synchronous REST): the calls go through `ResilientHttp` (Genesys retry
  rules: 429 waits `Retry-After`, 5xx back off) with the shared `TokenProvider` (a 401 drops
  the token and retries once with a fresh one). The stream process calls it with
  `asyncio.to_thread`: REST calls are rare (a channel a day, a subscription per call), and
  reusing the one HTTP stack keeps a single implementation of the retry, rate-limit and
  token rules instead of an async copy of each. The sleeps between retries are interruptible
  (`stopping`), so shutdown never waits for a `Retry-After`.
- `NotificationsClient` (asyncio): the channels and their sockets. Each `ChannelSession` owns
  one channel, its topics and its socket, and runs:

  * channel creation with a `PUT` of its topics; later changes coalesced into one `POST`
    (additions) or `PUT` (any removal) per round;
  * the socket loop: every frame refreshes a liveness clock; a `{"message":"ping"}` every
    `ping_interval_s`; after `heartbeat_timeout_s` without any frame, one more ping and, if
    nothing answers within `pong_wait_s`, a reconnect (the watchdog);
  * `v2.system.socket_closing`: reconnect at once to the same `connectUri` (the channel stays
    valid); a `{"result":"404"}` frame or a failed `HEAD` check: the channel is gone, open a
    new one and resubscribe; any other failure: exponential back-off with jitter, a 429's
    `Retry-After` honoured;
  * renewal before `expires` (or when the OAuth token has rotated, since a channel may close
    with the token that created it): make before break. A new channel is created and
    subscribed, its socket opened, the old socket drained briefly and closed; events that
    arrive on both during the overlap are dropped by digest.

  Topics go to the first channel with room (at most `max_topics_per_channel`, Genesys: 1,000);
  a full set opens another channel, up to `max_channels` (Genesys: 20); beyond that the topic
  is refused and logged.

Frames are checked here, before anything else sees them. A binary frame is read as the UTF-8
bytes of a JSON envelope, or as the base64 of them; anything else in a binary frame is
dropped as `binary`. Frames larger than `max_frame_bytes`, invalid JSON and invalid
envelopes become `DroppedFrame`s as well; data topics
become `NotificationEvent`s. Both go to the `sink` (the stream process's queue), which
counts, logs and processes them, so this module does no Redis I/O of its own.

Frame size: the socket's own limit (`max_size`) is set to `hard_frame_limit` (4x the gate,
at least 1 MiB), so a frame somewhat over the gate is received, dropped and counted without
losing the connection; only a pathological frame above the hard limit makes `websockets`
close the socket (code 1009), which is counted as `oversized` and followed by a reconnect.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import enum
import hashlib
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.frames import CloseCode

from assist.adapters.genesys.auth import TokenProvider
from assist.adapters.genesys.errors import (
    ChannelGoneError,
    GenesysApiError,
    GenesysAuthError,
    GenesysError,
    GenesysRateLimitedError,
    TopicLimitError,
)
from assist.adapters.genesys.http import ResilientHttp
from assist.adapters.genesys.schemas import (
    HEARTBEAT_TOPIC,
    SOCKET_CLOSING_TOPIC,
    SYSTEM_TOPIC_PREFIX,
    Channel,
    ChannelMetadata,
    ChannelTopicListing,
    NotificationEnvelope,
    SystemMessage,
    transcription_conversation_id,
)
from assist.logconfig import get_logger
from assist.settings import Settings
from assist.stores.redis_client import REDIS_UNAVAILABLE_ERRORS

log = get_logger(__name__)

#: Genesys Cloud limits (reference/genesys-cloud.md §2, "Limits").
MAX_CHANNELS = 20
MAX_TOPICS_PER_CHANNEL = 1000
PING_FRAME = '{"message":"ping"}'
#: After a renewal, events seen on the old socket are dropped on the new one for this long.
OVERLAP_S = 30.0
#: How long the old socket is read after the new one is open (frames already in flight).
DRAIN_IDLE_S = 0.25
DRAIN_MAX_S = 2.0
#: A channel is never renewed before this share of its life has passed (a renew margin
#: larger than the channel's life would otherwise renew it in a loop).
MIN_LIFE_SHARE_BEFORE_RENEWAL = 0.5
_CONVERSATION_IN_TEXT = re.compile(
    r"v2\.conversations\.([A-Za-z0-9_-]+)\.|\"conversationId\"\s*:\s*\"([A-Za-z0-9_-]+)\""
)


class StreamStopping(Exception):
    """Raised inside a REST retry wait when the process is shutting down."""


#: Failures of the network, the peer or Redis: logged as warnings, then retried.
_EXPECTED_FAILURES: tuple[type[BaseException], ...] = (
    GenesysError,
    OSError,
    InvalidHandshake,
    TimeoutError,
    StreamStopping,
    *REDIS_UNAVAILABLE_ERRORS,
)


# --- configuration -----------------------------------------------------------------------


@dataclass(frozen=True)
class StreamConfig:
    max_frame_bytes: int = 64 * 1024
    heartbeat_timeout_s: float = 75.0
    ping_interval_s: float = 30.0
    renew_before_s: float = 3600.0
    max_channels: int = MAX_CHANNELS
    max_topics_per_channel: int = MAX_TOPICS_PER_CHANNEL
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    open_timeout_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> StreamConfig:
        return cls(
            max_frame_bytes=settings.stream_max_frame_bytes,
            heartbeat_timeout_s=settings.stream_heartbeat_timeout_s,
            ping_interval_s=settings.stream_ping_interval_s,
            renew_before_s=settings.stream_channel_renew_before_s,
            max_channels=min(settings.stream_max_channels, MAX_CHANNELS),
            max_topics_per_channel=min(
                settings.stream_max_topics_per_channel, MAX_TOPICS_PER_CHANNEL
            ),
            backoff_base_s=settings.stream_backoff_base_s,
            backoff_max_s=settings.stream_backoff_max_s,
            open_timeout_s=settings.genesys_timeout_s,
        )

    @property
    def pong_wait_s(self) -> float:
        """How long the watchdog waits for an answer to its ping before reconnecting."""
        return min(10.0, self.heartbeat_timeout_s / 3)

    @property
    def hard_frame_limit(self) -> int:
        """The socket's own message limit (`max_size`); see the module docstring."""
        return max(4 * self.max_frame_bytes, 1 << 20)


def backoff_delay(
    attempt: int, *, base_s: float, max_s: float, rand: Callable[[], float] = random.random
) -> float:
    """Exponential back-off with "equal jitter": half fixed, half random, capped at `max_s`.

    attempt 0 waits between base/2 and base, attempt n between half and all of base*2^n.
    """
    ceiling = min(max_s, base_s * float(2 ** min(attempt, 30)))
    return ceiling / 2 + rand() * ceiling / 2


def frame_size(frame: str) -> int:
    """UTF-8 size of a text frame (encoding only when it could matter)."""
    return len(frame) if frame.isascii() else len(frame.encode("utf-8", "surrogatepass"))


def conversation_id_in(text: str) -> str | None:
    """A conversation id found in (the start of) a frame that could not be parsed."""
    match = _CONVERSATION_IN_TEXT.search(text[:4096])
    if match is None:
        return None
    return match.group(1) or match.group(2)


# --- REST --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenChannel:
    """A channel and the token it was created with (a channel may end with its token)."""

    channel: Channel
    token: str
    opened_at: float = field(default_factory=time.time)

    @property
    def id(self) -> str:
        return self.channel.id

    def renew_at(self, renew_before_s: float) -> float | None:
        """Wall-clock time at which to replace the channel, or None if it never expires."""
        expires = self.channel.expires
        if expires is None:
            return None
        expires_at = expires.timestamp()
        life = max(0.0, expires_at - self.opened_at)
        return max(
            expires_at - renew_before_s, self.opened_at + life * MIN_LIFE_SHARE_BEFORE_RENEWAL
        )


class NotificationsApi:
    """The REST side: channels and subscriptions, with token handling. Blocking calls."""

    def __init__(
        self,
        http: ResilientHttp,
        tokens: TokenProvider,
        api_base_url: str,
        *,
        stopping: threading.Event | None = None,
    ) -> None:
        self._http = http
        self._tokens = tokens
        self._base = f"{api_base_url.rstrip('/')}/api/v2/notifications/channels"
        self.stopping = stopping or threading.Event()

    @staticmethod
    def interruptible_sleep(stopping: threading.Event) -> Callable[[float], None]:
        """A `sleep` for `ResilientHttp` that ends (raising `StreamStopping`) on shutdown."""

        def sleep(seconds: float) -> None:
            if stopping.wait(seconds):
                raise StreamStopping("shutting down")

        return sleep

    def current_token(self) -> str:
        return self._tokens.token()

    def invalidate_token(self, token: str) -> None:
        self._tokens.invalidate(token)

    def create_channel(self) -> OpenChannel:
        response, token = self._call("POST", self._base)
        if response.status_code not in (200, 201):
            raise self._error("channel creation", response)
        try:
            channel = Channel.model_validate_json(response.content)
        except ValidationError as exc:
            raise GenesysApiError(
                "channel creation answered an invalid body", status_code=response.status_code
            ) from exc
        return OpenChannel(channel, token)

    def channel_exists(self, channel_id: str) -> bool:
        """`HEAD /channels/{id}`: False when the channel is gone (404)."""
        response, _ = self._call("HEAD", f"{self._base}/{channel_id}")
        if response.status_code == 404:
            return False
        if response.status_code >= 400:
            raise self._error("channel check", response)
        return True

    def add_topics(self, channel_id: str, topics: Sequence[str]) -> list[str]:
        """`POST` (add) topics; returns the rejected ones."""
        return self._subscribe("POST", channel_id, topics)

    def replace_topics(self, channel_id: str, topics: Sequence[str]) -> list[str]:
        """`PUT` (replace) the channel's topics; returns the rejected ones."""
        return self._subscribe("PUT", channel_id, topics)

    def _subscribe(self, method: str, channel_id: str, topics: Sequence[str]) -> list[str]:
        url = f"{self._base}/{channel_id}/subscriptions"
        response, _ = self._call(method, url, json=[{"id": topic} for topic in topics])
        if response.status_code == 404:
            raise ChannelGoneError(f"channel {channel_id} is gone (404 on {method} subscriptions)")
        if response.status_code == 400:
            raise TopicLimitError(f"{method} subscriptions refused (400): {_message(response)}")
        if response.status_code not in (200, 201):
            raise self._error(f"{method} subscriptions", response)
        try:
            listing = ChannelTopicListing.model_validate_json(response.content)
        except ValidationError:
            return []
        for topic in listing.rejected():
            log.error(
                "stream.topic_rejected",
                topic=topic.id,
                reason=topic.rejection_reason,
                missing_permissions=topic.missing_permissions,
            )
        return [topic.id for topic in listing.rejected()]

    def _call(self, method: str, url: str, json: Any | None = None) -> tuple[httpx.Response, str]:
        if self.stopping.is_set():
            raise StreamStopping("shutting down")
        for attempt in (1, 2):
            token = self._tokens.token()
            response = self._http.send(
                method, url, json=json, headers={"Authorization": f"Bearer {token}"}
            )
            if response.status_code == 401 and attempt == 1:
                log.info("stream.token_rejected", method=method)
                self._tokens.invalidate(token)
                continue
            break
        if response.status_code == 401:
            raise GenesysAuthError(f"{method} {url}: a freshly fetched token was refused")
        return response, token

    @staticmethod
    def _error(what: str, response: httpx.Response) -> GenesysApiError:
        return GenesysApiError(
            f"{what} answered {response.status_code}: {_message(response)}",
            status_code=response.status_code,
            correlation_id=response.headers.get("ININ-Correlation-Id"),
        )


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("message", ""))[:200] if isinstance(body, dict) else ""


# --- what the socket produces ------------------------------------------------------------


def decode_binary_frame(frame: bytes) -> str | None:
    """The JSON text a binary frame carries (raw UTF-8, or base64 of it); None otherwise."""
    for candidate in (frame, _unbase64(frame)):
        if candidate is None:
            continue
        try:
            text = candidate.decode("utf-8")
        except UnicodeDecodeError:
            continue
        stripped = text.lstrip()
        if stripped.startswith(("{", "[")):
            return text
    return None


def _unbase64(frame: bytes) -> bytes | None:
    try:
        return base64.b64decode(frame, validate=True)
    except (binascii.Error, ValueError):
        return None


class DropReason(enum.StrEnum):
    OVERSIZED = "oversized"
    BINARY = "binary"
    INVALID_JSON = "invalid_json"
    INVALID_ENVELOPE = "invalid_envelope"
    OVERLAP_DUPLICATE = "overlap_duplicate"


@dataclass(frozen=True)
class NotificationEvent:
    """A well-formed envelope of a data topic, as received."""

    envelope: NotificationEnvelope
    received_at: datetime
    size: int
    channel_id: str

    @property
    def topic(self) -> str:
        return self.envelope.topic_name


@dataclass(frozen=True)
class DroppedFrame:
    """A frame that was not passed on, and why."""

    reason: DropReason
    size: int
    channel_id: str
    conversation_id: str | None = None
    detail: str = ""


StreamItem = NotificationEvent | DroppedFrame
Sink = Callable[[StreamItem], Awaitable[None]]


class _Outcome(enum.Enum):
    CLOSED = "closed"
    SOCKET_CLOSING = "socket_closing"
    WATCHDOG = "watchdog"
    CHANNEL_GONE = "channel_gone"
    RENEW = "renew"
    TOKEN_REVOKED = "token_revoked"
    RESUBSCRIBE = "resubscribe"


# --- one channel -------------------------------------------------------------------------


class ChannelSession:
    """One notification channel: its topics, its socket and its renewal (module docstring)."""

    def __init__(self, index: int, client: NotificationsClient) -> None:
        self.index = index
        self._client = client
        self._api = client.api
        self._config = client.config
        self.topics: dict[str, None] = {}  # ordered set of desired topics
        self._pending_add: set[str] = set()
        self._pending_replace = False
        self._sync_needed = asyncio.Event()
        self._lock = asyncio.Lock()  # channel creation and subscription calls
        self.open: OpenChannel | None = None
        self._ws: ClientConnection | None = None
        self._failures = 0
        self._verify_channel = False
        self._renew_not_before = 0.0
        self._forced_outcome: _Outcome | None = None
        self._overlap_digests: set[str] = set()
        self._overlap_until = 0.0
        self._data_frames = 0
        self.connected = asyncio.Event()
        self.last_frame_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.stopping = False

    # --- topics ---------------------------------------------------------------------------
    @property
    def full(self) -> bool:
        return len(self.topics) >= self._config.max_topics_per_channel

    def add(self, topic: str) -> None:
        self.topics[topic] = None
        self._pending_add.add(topic)
        self._sync_needed.set()

    def remove(self, topic: str) -> None:
        if topic not in self.topics:
            return
        del self.topics[topic]
        self._pending_add.discard(topic)
        self._pending_replace = True
        self._sync_needed.set()

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"notifications-channel-{self.index}")

    async def stop(self) -> None:
        """Cancel the session and wait for it to close its socket.

        The `stopping` flag backs the cancellation up: a loop that checks it ends even if a
        cancellation were lost on the way (`asyncio.wait_for` in Python 3.11 can swallow one;
        this module uses `asyncio.timeout` instead, but the flag keeps shutdown certain).
        """
        self.stopping = True
        task, self._task = self._task, None
        if task is None:
            return
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        with contextlib.suppress(asyncio.CancelledError):
            task.result()

    def request(self, outcome: _Outcome) -> None:
        """Make the socket loop end with `outcome` (from another task)."""
        self._forced_outcome = outcome
        ws = self._ws
        if ws is not None:
            asyncio.create_task(ws.close())  # noqa: RUF006 - the loop notices the close

    async def _run(self) -> None:
        sync = asyncio.create_task(self._sync_loop(), name=f"notifications-sync-{self.index}")
        ws: ClientConnection | None = None
        try:
            while not self.stopping:
                try:
                    if ws is None:
                        ws = await self._open()
                    outcome = await self._serve(ws)
                    ws = await self._after(outcome, ws)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    await self._close(ws)
                    ws = None
                    await self._wait_after_failure(exc)
        finally:
            sync.cancel()
            self.connected.clear()
            await self._close(ws)
            # Stopped during a renewal: the new socket is not `ws` yet.
            await self._close(self._ws)
            with contextlib.suppress(asyncio.CancelledError):
                await sync

    async def _open(self) -> ClientConnection:
        """A socket on a valid channel: the current one if it still exists, else a new one."""
        if self.open is not None and self._verify_channel:
            self._verify_channel = False
            if not await asyncio.to_thread(self._api.channel_exists, self.open.id):
                self._client.stats["channels_gone"] += 1
                log.info("stream.channel_gone", channel_id=self.open.id, index=self.index)
                self.open = None
        if self.open is None or time.time() >= (self._renew_at() or float("inf")):
            self.open = await self._create_channel()
        return await self._connect(self.open)

    async def _create_channel(self) -> OpenChannel:
        async with self._lock:
            opened = await asyncio.to_thread(self._api.create_channel)
            topics = list(self.topics)
            self._pending_add.clear()
            self._pending_replace = False
            self._client.stats["channels_created"] += 1
            if topics:
                rejected = await asyncio.to_thread(self._api.replace_topics, opened.id, topics)
                self._client.stats["subscription_calls"] += 1
                self._drop_rejected(rejected)
        log.info(
            "stream.channel_created",
            channel_id=opened.id,
            index=self.index,
            topics=len(topics),
            expires=opened.channel.expires.isoformat() if opened.channel.expires else None,
        )
        return opened

    async def _connect(self, opened: OpenChannel) -> ClientConnection:
        try:
            ws = await connect(
                opened.channel.connect_uri,
                max_size=self._config.hard_frame_limit,
                ping_interval=None,  # health checks are Genesys application pings
                open_timeout=self._config.open_timeout_s,
                close_timeout=2,
                user_agent_header="genesys-assist/0.1",
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                await asyncio.to_thread(self._api.invalidate_token, opened.token)
            if status in (401, 403, 404, 410):
                self.open = None  # the channel is not usable: a new one next time
            raise
        self._ws = ws
        self.connected.set()
        log.info("stream.connected", channel_id=opened.id, index=self.index)
        return ws

    async def _close(self, ws: ClientConnection | None) -> None:
        if ws is None:
            return
        if ws is self._ws:
            self._ws = None
            self.connected.clear()
        with contextlib.suppress(Exception):
            await ws.close()

    def _next_backoff(self) -> float:
        """The delay after one more consecutive failure (and count it)."""
        delay = backoff_delay(
            self._failures,
            base_s=self._config.backoff_base_s,
            max_s=self._config.backoff_max_s,
            rand=self._client.rand,
        )
        self._failures += 1
        return delay

    async def _wait_after_failure(self, exc: BaseException) -> None:
        delay = self._next_backoff()
        if isinstance(exc, GenesysRateLimitedError) and exc.retry_after_s:
            delay = max(delay, exc.retry_after_s)
        if isinstance(exc, _EXPECTED_FAILURES):
            log.warning(
                "stream.connect_failed",
                index=self.index,
                error=f"{type(exc).__name__}: {exc}",
                retry_in_s=round(delay, 3),
            )
        else:
            log.error(
                "stream.unexpected_error",
                index=self.index,
                retry_in_s=round(delay, 3),
                exc_info=exc,
            )
        self._client.stats["connect_failures"] += 1
        self._verify_channel = True
        await asyncio.sleep(delay)

    # --- the socket loop ------------------------------------------------------------------
    def _renew_at(self) -> float | None:
        if self.open is None:
            return None
        renew_at = self.open.renew_at(self._config.renew_before_s)
        return None if renew_at is None else max(renew_at, self._renew_not_before)

    async def _serve(self, ws: ClientConnection) -> _Outcome:
        loop = asyncio.get_running_loop()
        config = self._config
        last_alive = loop.time()
        next_ping = last_alive + config.ping_interval_s
        probe_deadline: float | None = None
        next_token_check = last_alive + config.ping_interval_s
        while not self.stopping:
            now = loop.time()
            renew_at = self._renew_at()
            if renew_at is not None and time.time() >= renew_at:
                return _Outcome.RENEW
            if probe_deadline is not None and now >= probe_deadline:
                log.warning(
                    "stream.watchdog_reconnect",
                    channel_id=self.open.id if self.open else None,
                    silent_s=round(now - last_alive, 2),
                )
                self._client.stats["watchdog_reconnects"] += 1
                return _Outcome.WATCHDOG
            if probe_deadline is None and now - last_alive >= config.heartbeat_timeout_s:
                await self._ping(ws)
                probe_deadline = now + config.pong_wait_s
            if now >= next_ping:
                await self._ping(ws)
                next_ping = now + config.ping_interval_s
            if now >= next_token_check:
                next_token_check = now + config.ping_interval_s
                if await self._token_rotated():
                    return _Outcome.RENEW
            wake = min(
                next_ping,
                next_token_check,
                probe_deadline
                if probe_deadline is not None
                else last_alive + config.heartbeat_timeout_s,
                now + 5.0,
            )
            if renew_at is not None:
                wake = min(wake, now + max(0.0, renew_at - time.time()))
            try:
                async with asyncio.timeout(max(0.0, wake - now)):
                    frame = await ws.recv()
            except TimeoutError:
                continue
            except ConnectionClosed as exc:
                return await self._closed(exc)
            last_alive = loop.time()
            self.last_frame_at = time.time()
            probe_deadline = None
            self._failures = 0
            outcome = await self._handle(frame)
            if outcome is not None:
                return outcome
        return _Outcome.CLOSED

    async def _closed(self, exc: ConnectionClosed) -> _Outcome:
        if self._forced_outcome is not None:
            outcome, self._forced_outcome = self._forced_outcome, None
            return outcome
        sent = exc.sent.code if exc.sent else None
        if sent == CloseCode.MESSAGE_TOO_BIG:
            await self._client.sink(
                DroppedFrame(
                    DropReason.OVERSIZED,
                    self._config.hard_frame_limit + 1,
                    self.open.id if self.open else "",
                    detail="over the socket's hard limit; connection closed",
                )
            )
        log.info(
            "stream.socket_closed",
            channel_id=self.open.id if self.open else None,
            code=exc.rcvd.code if exc.rcvd else None,
            reason=exc.rcvd.reason if exc.rcvd else None,
        )
        return _Outcome.CLOSED

    async def _ping(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(PING_FRAME)
            self._client.stats["pings_sent"] += 1

    async def _token_rotated(self) -> bool:
        if self.open is None:
            return False
        try:
            token = await asyncio.to_thread(self._api.current_token)
        except Exception as exc:  # a token fetch failure must not end a working socket
            log.warning("stream.token_check_failed", error=f"{type(exc).__name__}: {exc}")
            return False
        if token != self.open.token:
            log.info("stream.token_rotated", channel_id=self.open.id)
            return True
        return False

    async def _handle(self, frame: str | bytes) -> _Outcome | None:
        """Check one frame; pass data events on, act on control messages."""
        channel_id = self.open.id if self.open else ""
        received_at = datetime.now(UTC)
        if isinstance(frame, bytes):
            if len(frame) > self._config.max_frame_bytes * 2:  # checked again once decoded
                text = frame[:4096].decode("utf-8", "replace")
                await self._client.sink(
                    DroppedFrame(
                        DropReason.OVERSIZED, len(frame), channel_id, conversation_id_in(text)
                    )
                )
                return None
            decoded = decode_binary_frame(frame)
            if decoded is None:
                text = frame[:4096].decode("utf-8", "replace")
                await self._client.sink(
                    DroppedFrame(
                        DropReason.BINARY, len(frame), channel_id, conversation_id_in(text)
                    )
                )
                return None
            self._client.stats["binary_frames_decoded"] += 1
            frame = decoded
        size = frame_size(frame)
        if size > self._config.max_frame_bytes:
            await self._client.sink(
                DroppedFrame(DropReason.OVERSIZED, size, channel_id, conversation_id_in(frame))
            )
            return None
        try:
            data = json.loads(frame)
        except ValueError as exc:
            await self._client.sink(
                DroppedFrame(
                    DropReason.INVALID_JSON, size, channel_id, conversation_id_in(frame), str(exc)
                )
            )
            return None
        if isinstance(data, dict) and "topicName" not in data and "result" in data:
            return self._error_frame(data)
        try:
            envelope = NotificationEnvelope.model_validate(data)
        except ValidationError as exc:
            await self._client.sink(
                DroppedFrame(
                    DropReason.INVALID_ENVELOPE,
                    size,
                    channel_id,
                    conversation_id_in(frame),
                    _first_error(exc),
                )
            )
            return None
        topic = envelope.topic_name
        if topic == HEARTBEAT_TOPIC:
            try:
                message = ChannelMetadata.model_validate(envelope.event_body or {}).message
            except ValidationError:
                message = None
            self._client.stats["pongs" if message == "pong" else "heartbeats"] += 1
            return None
        if topic == SOCKET_CLOSING_TOPIC:
            log.info("stream.socket_closing", channel_id=channel_id)
            self._client.stats["socket_closing"] += 1
            return _Outcome.SOCKET_CLOSING
        if topic.startswith(SYSTEM_TOPIC_PREFIX):
            return self._system_message(envelope)
        if self._in_overlap():
            digest = _digest(envelope)
            if digest in self._overlap_digests:
                await self._client.sink(
                    DroppedFrame(
                        DropReason.OVERLAP_DUPLICATE,
                        size,
                        channel_id,
                        transcription_conversation_id(topic),
                    )
                )
                return None
            self._overlap_digests.add(digest)
        await self._client.sink(NotificationEvent(envelope, received_at, size, channel_id))
        self._data_frames += 1
        return None

    def _error_frame(self, data: dict[str, Any]) -> _Outcome | None:
        result, message = str(data.get("result")), str(data.get("message", ""))[:200]
        log.warning("stream.error_frame", result=result, message=message, index=self.index)
        if result in ("404", "410"):
            self._client.stats["channels_gone"] += 1
            return _Outcome.CHANNEL_GONE
        if result in ("401", "403"):
            return _Outcome.TOKEN_REVOKED
        return None

    def _system_message(self, envelope: NotificationEnvelope) -> _Outcome | None:
        try:
            body = SystemMessage.model_validate(envelope.event_body or {})
        except ValidationError:
            body = SystemMessage()
        kind = body.system_topic_type or envelope.topic_name.removeprefix(SYSTEM_TOPIC_PREFIX)
        log.info("stream.system_message", topic=envelope.topic_name, kind=kind, reason=body.reason)
        if "token_revoked" in kind or "token_revoked" in envelope.topic_name:
            self._client.stats["tokens_revoked"] += 1
            return _Outcome.TOKEN_REVOKED
        if "no_longer_subscribed" in kind or "no_longer_subscribed" in envelope.topic_name:
            return _Outcome.RESUBSCRIBE
        return None

    def _in_overlap(self) -> bool:
        """True during a renewal's overlap, when both sockets may carry the same event."""
        if time.monotonic() < self._overlap_until:
            return True
        self._overlap_digests.clear()
        return False

    # --- after the socket loop ------------------------------------------------------------
    async def _after(self, outcome: _Outcome, ws: ClientConnection) -> ClientConnection | None:
        """What to do once `_serve` ended; returns the socket to serve next (None: reopen)."""
        if self.stopping:
            return ws  # `_run` closes it on the way out
        if outcome is _Outcome.RENEW:
            return await self._renew(ws)
        if outcome is _Outcome.TOKEN_REVOKED:
            if self.open is not None:
                await asyncio.to_thread(self._api.invalidate_token, self.open.token)
            self._renew_not_before = 0.0
            return await self._renew(ws, force=True)
        await self._close(ws)
        self._client.stats["reconnects"] += 1
        if outcome is _Outcome.SOCKET_CLOSING:
            return None  # the same connectUri, at once: the channel stays valid
        if outcome is _Outcome.RESUBSCRIBE:
            self._pending_replace = True
            self._sync_needed.set()
            return None
        if outcome is _Outcome.CHANNEL_GONE:
            self.open = None
        else:  # closed or silent: check the channel before reusing it
            self._verify_channel = True
        await asyncio.sleep(self._next_backoff())
        return None

    async def _renew(
        self, old: ClientConnection, *, force: bool = False
    ) -> ClientConnection | None:
        """Make before break: new channel and socket first, then drain and close the old one."""
        old_channel = self.open
        try:
            opened = await self._create_channel()
            self.open = opened
            new = await self._connect(opened)
        except Exception as exc:
            self.open = old_channel
            delay = self._next_backoff()
            self._renew_not_before = time.time() + delay
            log.warning(
                "stream.renew_failed", error=f"{type(exc).__name__}: {exc}", retry_in_s=delay
            )
            if force:
                raise
            return old
        self._ws = new
        self.connected.set()
        self._overlap_until = time.monotonic() + OVERLAP_S
        await self._drain(old)
        with contextlib.suppress(Exception):
            await old.close()
        self._renew_not_before = 0.0
        self._client.stats["renewals"] += 1
        log.info(
            "stream.channel_renewed",
            old_channel_id=old_channel.id if old_channel else None,
            channel_id=opened.id,
        )
        return new

    async def _drain(self, old: ClientConnection) -> None:
        """Pass on what the old socket still holds (the overlap filter is already on).

        Reads until no data event came for `DRAIN_IDLE_S` (heartbeats do not count), at most
        `DRAIN_MAX_S`; the new socket buffers meanwhile.
        """
        loop = asyncio.get_running_loop()
        end = loop.time() + DRAIN_MAX_S
        idle_until = loop.time() + DRAIN_IDLE_S
        while (now := loop.time()) < min(end, idle_until):
            try:
                async with asyncio.timeout(min(end, idle_until) - now):
                    frame = await old.recv()
            except (TimeoutError, ConnectionClosed):
                return
            before = self._data_frames
            await self._handle(frame)  # control messages of a socket being closed are moot
            if self._data_frames != before:
                idle_until = loop.time() + DRAIN_IDLE_S

    # --- subscriptions --------------------------------------------------------------------
    async def _sync_loop(self) -> None:
        """Apply topic changes: one POST for additions, or one PUT when anything was removed."""
        while True:
            await self._sync_needed.wait()
            self._sync_needed.clear()
            opened = self.open
            if opened is None or not (self._pending_add or self._pending_replace):
                continue  # channel creation subscribes everything
            async with self._lock:
                if self.open is not opened:
                    continue
                replace, adds = self._pending_replace, sorted(self._pending_add & set(self.topics))
                self._pending_replace = False
                self._pending_add.clear()
                try:
                    if replace:
                        rejected = await asyncio.to_thread(
                            self._api.replace_topics, opened.id, list(self.topics)
                        )
                    elif adds:
                        rejected = await asyncio.to_thread(self._api.add_topics, opened.id, adds)
                    else:
                        continue
                    self._client.stats["subscription_calls"] += 1
                    self._drop_rejected(rejected)
                    continue
                except ChannelGoneError:
                    log.info("stream.channel_gone", channel_id=opened.id, index=self.index)
                    self.request(_Outcome.CHANNEL_GONE)
                    continue
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # Keep the changes and try again after a pause (a 429 says how long).
                    self._pending_replace = self._pending_replace or replace
                    self._pending_add.update(adds)
                    error = exc
            delay = backoff_delay(
                1,
                base_s=self._config.backoff_base_s,
                max_s=self._config.backoff_max_s,
                rand=self._client.rand,
            )
            if isinstance(error, GenesysRateLimitedError) and error.retry_after_s:
                delay = max(delay, error.retry_after_s)
            log.warning(
                "stream.subscription_failed",
                channel_id=opened.id,
                error=f"{type(error).__name__}: {error}",
                retry_in_s=round(delay, 3),
            )
            self._client.stats["subscription_failures"] += 1
            await asyncio.sleep(delay)
            self._sync_needed.set()

    def _drop_rejected(self, rejected: Iterable[str]) -> None:
        for topic in rejected:
            self.topics.pop(topic, None)
            self._client.forget(topic)
            self._client.stats["topics_rejected"] += 1


# --- every channel -----------------------------------------------------------------------


class NotificationsClient:
    """The channels of one process and the topics spread over them (module docstring)."""

    def __init__(
        self,
        api: NotificationsApi,
        config: StreamConfig,
        sink: Sink,
        *,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.api = api
        self.config = config
        self.sink = sink
        self.rand = rand
        self.stats: Counter[str] = Counter()
        self.sessions: list[ChannelSession] = []
        self._owner: dict[str, ChannelSession] = {}
        self._started = False
        self._next_index = 0

    # --- topics ---------------------------------------------------------------------------
    def subscribe(self, topic: str) -> bool:
        """Follow `topic`; False (logged, counted) when every allowed channel is full."""
        if topic in self._owner:
            return True
        session = next((s for s in self.sessions if not s.full), None)
        if session is None:
            if len(self.sessions) >= self.config.max_channels:
                log.error(
                    "stream.topic_refused",
                    topic=topic,
                    channels=len(self.sessions),
                    topics_per_channel=self.config.max_topics_per_channel,
                )
                self.stats["topics_refused"] += 1
                return False
            session = self._new_session()
        session.add(topic)
        self._owner[topic] = session
        return True

    def unsubscribe(self, topic: str) -> None:
        session = self._owner.pop(topic, None)
        if session is None:
            return
        session.remove(topic)
        if not session.topics and session is not self.sessions[0]:
            self.sessions.remove(session)
            if self._started:
                asyncio.create_task(session.stop())  # noqa: RUF006 - closes its socket

    def forget(self, topic: str) -> None:
        """Drop a topic the server rejected from the bookkeeping."""
        self._owner.pop(topic, None)

    @property
    def topics(self) -> set[str]:
        return set(self._owner)

    def _new_session(self) -> ChannelSession:
        session = ChannelSession(self._next_index, self)
        self._next_index += 1
        self.sessions.append(session)
        if self._started:
            session.start()
        return session

    # --- lifecycle ------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Hold the channels until `stop` is set, then close every socket."""
        if not self.sessions:
            self._new_session()
        self._started = True
        for session in self.sessions:
            session.start()
        try:
            await stop.wait()
        finally:
            self.api.stopping.set()
            await asyncio.gather(*(s.stop() for s in self.sessions), return_exceptions=True)
            self._started = False

    def status(self) -> dict[str, Any]:
        return {
            "channels": len(self.sessions),
            "connected": sum(1 for s in self.sessions if s.connected.is_set()),
            "topics": len(self._owner),
            "channel_ids": ",".join(s.open.id for s in self.sessions if s.open),
            "last_frame_at": max(
                (s.last_frame_at for s in self.sessions if s.last_frame_at), default=0.0
            ),
        }


def _digest(envelope: NotificationEnvelope) -> str:
    body = json.dumps(envelope.event_body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(
        f"{envelope.topic_name}\0{body}".encode(), usedforsecurity=False
    ).hexdigest()


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ()))
    return f"{where}: {error.get('msg', '')}"[:200]
