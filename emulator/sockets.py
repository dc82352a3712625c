"""The notifications WebSocket (the `connectUri` of channels) and the scripted-call player.

A `websockets` asyncio server runs on its own loopback port, in a background thread with
its own event loop. Everything that writes to a socket runs on that loop; Flask request
threads reach it through `call_soon_threadsafe` / `run_coroutine_threadsafe`.

Socket behaviour (the real contract is in `shared/reference/genesys-cloud.md`, section 2):

* path `/channels/<channelId>`; any other path is refused in the handshake with HTTP 404;
* one socket per channel: a new connection to a channel closes the previous one;
* a `channel.metadata` heartbeat every `heartbeat_s`; the text frame `{"message":"ping"}` is
  answered with a `channel.metadata` `pong`;
* nothing is kept for a channel without a live socket: its messages are dropped.

How the emulator ends a socket (the choice this emulator makes, tests rely on it):

* unknown channel, expired channel, channel evicted by a 21st one, socket replaced by a
  newer one on the same channel: a text frame `{"result":"404","message":...}`, then a
  close with code 1008 (policy violation) and a short reason;
* `socket_closing_next` fault: `v2.system.socket_closing`, then ~1 s later close code 1001
  (going away); the channel stays valid, so reconnecting to the same `connectUri` works;
* `ws_drop_after_frames` fault: the TCP connection is aborted, no close frame (the client
  sees 1006);
* `socket_drop_every_s` fault: the same abort of every live socket, every that many seconds
  while it is set (the channels stay valid);
* emulator shutdown: close code 1001.

Scripted conversations (`POST /emulator/conversations`): a queue conversation event to the
subscribers of `v2.routing.queues.{queueId}.conversations`, then, once some channel is
subscribed to `v2.conversations.{id}.transcription` (or after `subscribe_timeout_s`, when it
plays anyway and every frame is dropped, as a real call goes on regardless), the
transcription messages of the script at `speed` times real time, then the queue event with
`endTime`. The script's Agent Copilot insights are sent on the same timeline, each
`delay_ms` (scaled by `speed`) after the final message of its utterance, on its suggestion
topic `v2.conversations.{id}.suggestions.<kind>` to the channels subscribed to that topic
only, with a new `suggestionId` per replay and the `utteranceId` of that utterance's
transcription messages (bodies: `emulator.scripts.suggestion_event`). Knowledge search
suggestions get a `searchId` that `PATCH .../documents/search/<searchId>` accepts. A
`POST .../suggestions/<suggestionId>/engagement` re-sends the suggestion with its new state
(`engage`). `resend_last_n_after_reconnect` (a test knob, not Genesys behaviour) re-sends
the last N frames (of at most 500 kept: transcription messages and suggestion events) of the
conversation's topics a channel is subscribed to, whenever a socket opens on such a channel
or a live channel newly subscribes to such a topic; each topic once per socket.

Per replay the snapshot reports `finals_sent` (utterance ids of the final transcripts sent, in
order), `finals_missed_when_sent` (those no live socket received when they were sent) and
`finals_delivered` (those that reached at least one live socket, when first sent or re-sent):
a final sent while no socket was open is missed, as on Genesys, unless re-sent.

One-shot socket faults: `ws_drop_after_frames` is claimed by the next socket that sends a
frame; `socket_closing_next` stays armed until at least one socket is live;
`expire_channels_now` acts within `JANITOR_INTERVAL_S`; `malformed_frames_next` and
`oversized_frame_next` are taken by the next `POST /emulator/conversations` (one bad frame
before each transcription message after the opening status message), and so are the Copilot
faults: `copilot_duplicate_next` (its first N insights sent twice, the same frame),
`copilot_bad_insights_next` (N bad suggestion events to the knowledge search subscribers
just before the first insight) and `copilot_binary_next` (its first N insights as binary
frames, alternately raw UTF-8 and base64, after one binary garbage frame).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import http
import json
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from emulator.config import EmulatorConfig, require_loopback
from emulator.notifications import (
    SUGGESTION_KINDS,
    ChannelNotFound,
    ChannelRegistry,
    conversation_topics,
    envelope,
    error_frame,
    heartbeat_frame,
    iso,
    pong_frame,
    queue_topic,
    socket_closing_frame,
    suggestion_topic,
    transcription_topic,
)
from emulator.scripts import (
    Call,
    KnowledgeSearchInsight,
    PlannedInsight,
    PlannedMessage,
    Script,
    bad_insight_frame,
    binary_insight_frame,
    engaged_event,
    garbage_frame,
    load_scripts,
    malformed_frame,
    oversized_frame,
    plan_insights,
    plan_transcription,
    queue_conversation_event,
    suggestion_event,
)
from emulator.state import EmulatorState

log = logging.getLogger(__name__)

CHANNEL_PATH = re.compile(r"^/channels/([A-Za-z0-9_-]+)$")
#: How often the janitor expires channels and applies one-shot socket faults.
JANITOR_INTERVAL_S = 0.05
#: Between `v2.system.socket_closing` and the close (Genesys leaves about a minute).
SOCKET_CLOSING_GRACE_S = 1.0
#: How often a conversation waiting for a transcription subscriber looks again.
SUBSCRIBER_POLL_S = 0.02
DEFAULT_SUBSCRIBE_TIMEOUT_S = 10.0
#: Frames (transcription messages, suggestion events) kept per conversation for resends.
MAX_HISTORY = 500
#: How long an engagement call waits for its follow-up notification to be sent.
ENGAGEMENT_SEND_TIMEOUT_S = 5.0


class ConversationStart(BaseModel):
    """Body of `POST /emulator/conversations`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    script: str
    conversation_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]+$")
    queue_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]+$")
    speed: float = Field(default=1.0, gt=0, le=1000)
    resend_last_n_after_reconnect: int = Field(default=0, ge=0)
    subscribe_timeout_s: float = Field(default=DEFAULT_SUBSCRIBE_TIMEOUT_S, ge=0, le=600)


class UnknownScript(LookupError):
    pass


class ConversationExists(ValueError):
    pass


@dataclass
class _Suggestion:
    """A suggestion event the emulator sent: its topic and its latest eventBody."""

    topic: str
    body: dict[str, Any]


@dataclass
class _Conversation:
    """One replay. Progress fields are written on the loop and read under the table lock."""

    script: Script
    call: Call
    speed: float
    resend_last_n: int
    subscribe_timeout_s: float
    generation: int
    started: str
    messages_planned: int
    malformed_frames: int
    oversized_frames: int
    insights_planned: int
    #: Copilot faults taken by this replay (see `Faults`).
    copilot_duplicates: int
    copilot_bad_insights: int
    copilot_binary_insights: int
    state: str = "waiting_for_subscriber"
    done: bool = False
    messages_sent: int = 0
    frames_delivered: int = 0
    queue_events_delivered: int = 0
    #: Scripted insights sent (each once, whatever the faults) and their deliveries to
    #: channels (a duplicate copy is not counted again).
    insights_sent: int = 0
    insights_delivered: int = 0
    #: `(topic, frame)` of the transcription messages and suggestion events sent so far, in
    #: order (for `resend_last_n_after_reconnect`).
    history: collections.deque[tuple[str, str | bytes]] = field(
        default_factory=lambda: collections.deque(maxlen=MAX_HISTORY)
    )
    #: Every suggestion sent, by `suggestionId` (for the engagement endpoint).
    suggestions: dict[str, _Suggestion] = field(default_factory=dict)
    #: Utterance ids of the finals sent, in order; of those no socket received when sent;
    #: of those a live socket received (when sent or re-sent).
    finals_sent: list[str] = field(default_factory=list)
    finals_missed: set[str] = field(default_factory=set)
    finals_delivered: set[str] = field(default_factory=set)
    frames_resent: int = 0
    future: concurrent.futures.Future[None] | None = None

    def snapshot(self) -> dict[str, Any]:
        return {
            "conversation_id": self.call.conversation_id,
            "script": self.script.name,
            "queue_id": self.call.queue_id,
            "communication_id": self.call.communication_id,
            "agent_user_id": self.call.agent_user_id,
            "queue_topic": queue_topic(self.call.queue_id),
            "transcription_topic": transcription_topic(self.call.conversation_id),
            "suggestion_topics": {
                kind: suggestion_topic(self.call.conversation_id, kind) for kind in SUGGESTION_KINDS
            },
            "speed": self.speed,
            "resend_last_n_after_reconnect": self.resend_last_n,
            "started": self.started,
            "state": self.state,
            "done": self.done,
            "messages_planned": self.messages_planned,
            "messages_sent": self.messages_sent,
            "frames_delivered": self.frames_delivered,
            "queue_events_delivered": self.queue_events_delivered,
            "malformed_frames": self.malformed_frames,
            "oversized_frames": self.oversized_frames,
            "insights_planned": self.insights_planned,
            "insights_sent": self.insights_sent,
            "insights_delivered": self.insights_delivered,
            "copilot_duplicates": self.copilot_duplicates,
            "copilot_bad_insights": self.copilot_bad_insights,
            "copilot_binary_insights": self.copilot_binary_insights,
            "finals_sent": list(self.finals_sent),
            "finals_missed_when_sent": sorted(self.finals_missed),
            "finals_delivered": sorted(self.finals_delivered),
            "frames_resent": self.frames_resent,
        }


class _LiveSocket:
    """One accepted socket of one channel; used only on the event loop."""

    def __init__(
        self, ws: ServerConnection, channel_id: str, connection_id: str, state: EmulatorState
    ) -> None:
        self.ws = ws
        self.channel_id = channel_id
        self.connection_id = connection_id
        self._state = state
        #: Frames left before the `ws_drop_after_frames` fault aborts this socket.
        self._drop_after: int | None = None
        self.close_reason: str | None = None
        #: conversation id -> its topics whose frames were already resent on this socket.
        self.resent_for: dict[str, set[str]] = {}

    @property
    def ending(self) -> bool:
        return self.close_reason is not None

    async def send(self, frame: str | bytes) -> bool:
        """Send one frame; False if the socket is closed or being closed."""
        if self.ending:
            return False
        if self._drop_after is None:
            claimed = self._state.take_all_of_fault("ws_drop_after_frames")
            if claimed:
                self._drop_after = claimed
                log.info("socket %s will drop after %d frames (fault)", self.channel_id, claimed)
        try:
            await self.ws.send(frame)
        except ConnectionClosed:
            return False
        self._state.count_frame_sent(self.channel_id)
        if self._drop_after is not None:
            self._drop_after -= 1
            if self._drop_after <= 0:
                self.abort("dropped")
        return True

    def abort(self, reason: str) -> None:
        """Cut the TCP connection without a close frame."""
        self.close_reason = self.close_reason or reason
        self.ws.transport.abort()

    async def end(self, reason: str, message: str) -> None:
        """The 404 frame, then close 1008 (unknown/expired/evicted channel, replaced socket)."""
        if self.ending:
            return
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(error_frame(message))
            self._state.count_frame_sent(self.channel_id)
        self.close_reason = reason
        await self.ws.close(CloseCode.POLICY_VIOLATION, reason)

    async def going_away(self, reason: str) -> None:
        self.close_reason = self.close_reason or reason
        await self.ws.close(CloseCode.GOING_AWAY, reason)


class NotificationServer:
    """The WebSocket server, the channel registry and the conversation player.

    `start` binds the port (so `url` is known and `registry` exists when it returns) and
    runs the event loop in a daemon thread; `stop` closes every socket and joins it.
    """

    def __init__(
        self, config: EmulatorConfig, state: EmulatorState, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        require_loopback(host)
        self._config = config
        self._state = state
        self._host = host
        self._port = port
        self._sock: socket.socket | None = None
        self._bound_port: int | None = None
        self._registry: ChannelRegistry | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        # Loop-only state.
        self._sockets: dict[str, _LiveSocket] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Shared with request threads.
        self._lock = threading.Lock()
        self._conversations: dict[str, _Conversation] = {}
        state.add_reset_listener(self._on_reset)

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """`ws://127.0.0.1:<port>`: the base of every channel's `connectUri`."""
        if self._bound_port is None:
            raise RuntimeError("the notification server is not running; call start() first")
        return f"ws://{self._host}:{self._bound_port}"

    @property
    def registry(self) -> ChannelRegistry:
        if self._registry is None:
            raise RuntimeError("the notification server is not running; call start() first")
        return self._registry

    def start(self) -> None:
        if self._sock is not None:
            raise RuntimeError("the notification server is already running")
        self._sock = socket.create_server((self._host, self._port))
        self._bound_port = self._sock.getsockname()[1]
        registry = ChannelRegistry(ttl_s=self._config.channel_ttl_s, ws_base_url=self.url)
        registry.on_removed = self._on_channel_removed
        registry.on_subscribed = self._on_subscribed
        self._registry = registry
        self._started.clear()
        self._thread = threading.Thread(
            target=self._run, args=(self._sock,), name="emulator-ws", daemon=True
        )
        self._thread.start()
        # The socket already listens; wait only until the loop accepts cross-thread calls.
        if not self._started.wait(timeout=10):
            raise RuntimeError("the notification event loop did not start")

    def stop(self) -> None:
        """Close every socket, stop the players and the loop. Idempotent."""
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stopping.set)
        if thread is not None:
            thread.join(timeout=15)
        self._thread = None
        self._loop = None
        if self._sock is not None:
            self._sock.close()  # already closed by the server unless the loop never ran
            self._sock = None
        self._bound_port = None

    def _run(self, sock: socket.socket) -> None:
        asyncio.run(self._main(sock))

    async def _main(self, sock: socket.socket) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        async with serve(
            self._handle,
            sock=sock,
            process_request=self._check_path,
            ping_interval=None,  # Genesys health checks are application messages
            close_timeout=2,
        ):
            janitor = asyncio.create_task(self._janitor())
            self._started.set()
            await self._stopping.wait()
            janitor.cancel()
            with self._lock:
                conversations = list(self._conversations.values())
            for conversation in conversations:
                if conversation.future is not None:
                    conversation.future.cancel()
            for live in list(self._sockets.values()):
                live.close_reason = live.close_reason or "shutdown"
            # Leaving the block closes the server and every connection with 1001.

    def _call_soon(self, callback: Callable[..., None], *args: Any) -> None:
        """Run `callback(*args)` on the loop, from any thread; ignored once stopped."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # loop closed: the emulator is stopping
            loop.call_soon_threadsafe(callback, *args)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a coroutine as a task on the loop (call on the loop), keeping a reference."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- sockets --------------------------------------------------------------------------

    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        if CHANNEL_PATH.match(request.path.split("?", 1)[0]) is None:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "Not a channel\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None  # the handshake succeeded
        match = CHANNEL_PATH.match(ws.request.path.split("?", 1)[0])
        assert match is not None  # _check_path let it through
        channel_id = match.group(1)
        connection_id = str(uuid.uuid4())
        opened = iso(time.time())
        if not self.registry.exists(channel_id):
            self._state.record_connection(
                {
                    "connection_id": connection_id,
                    "channel_id": channel_id,
                    "accepted": False,
                    "opened": opened,
                    "closed": opened,
                    "close_reason": "unknown_channel",
                }
            )
            refused = _LiveSocket(ws, channel_id, connection_id, self._state)
            await refused.end("unknown channel", f"Channel {channel_id} not found or expired")
            return

        live = _LiveSocket(ws, channel_id, connection_id, self._state)
        previous = self._sockets.get(channel_id)
        self._sockets[channel_id] = live
        self.registry.set_live(channel_id, True)
        self._state.record_connection(
            {
                "connection_id": connection_id,
                "channel_id": channel_id,
                "accepted": True,
                "opened": opened,
                "closed": None,
                "close_reason": None,
            }
        )
        log.info("socket opened on channel %s", channel_id)
        if previous is not None:
            self._spawn(
                previous.end("replaced", "Another connection to this channel replaced this one")
            )
        heartbeats = asyncio.create_task(self._heartbeats(live))
        self._spawn(self._resend(live, None))
        try:
            async for message in ws:
                if isinstance(message, str) and _is_ping(message):
                    self._state.count_ping(channel_id)
                    if not self._state.faults.heartbeats_paused:
                        await live.send(pong_frame())
        except ConnectionClosed:
            pass
        finally:
            heartbeats.cancel()
            if self._sockets.get(channel_id) is live:
                del self._sockets[channel_id]
                self.registry.set_live(channel_id, False)
            reason = live.close_reason or "client"
            live.close_reason = reason
            self._state.record_connection_closed(connection_id, iso(time.time()), reason)
            log.info("socket on channel %s closed (%s)", channel_id, reason)

    async def _heartbeats(self, live: _LiveSocket) -> None:
        while not live.ending:
            await asyncio.sleep(self._config.heartbeat_s)
            if not self._state.faults.heartbeats_paused:
                await live.send(heartbeat_frame())

    async def _janitor(self) -> None:
        loop = asyncio.get_running_loop()
        last_drop: float | None = None  # when `socket_drop_every_s` last cut the sockets
        while True:
            try:
                every = self._state.faults.socket_drop_every_s
                if every <= 0:
                    last_drop = None
                elif last_drop is None:
                    last_drop = loop.time()
                elif loop.time() - last_drop >= every:
                    last_drop = loop.time()
                    for live in list(self._sockets.values()):
                        live.abort("dropped")
                    log.info("dropped %d sockets (fault, every %s s)", len(self._sockets), every)
                self.registry.expire_due()
                if self._state.faults.expire_channels_now and self._state.take_fault_flag(
                    "expire_channels_now"
                ):
                    expired = self.registry.expire_all()
                    log.info("expired %d channels (fault)", len(expired))
                # Stays armed until some socket is live to receive it.
                if (
                    self._sockets
                    and self._state.faults.socket_closing_next
                    and self._state.take_fault_flag("socket_closing_next")
                ):
                    for live in list(self._sockets.values()):
                        self._spawn(self._socket_closing(live))
            except Exception:  # keep the janitor alive whatever happens
                log.exception("notification janitor failed")
            await asyncio.sleep(JANITOR_INTERVAL_S)

    async def _socket_closing(self, live: _LiveSocket) -> None:
        await live.send(socket_closing_frame(live.channel_id, self._config.client_id))
        await asyncio.sleep(SOCKET_CLOSING_GRACE_S)
        await live.going_away("socket_closing")

    def _on_channel_removed(self, channel_id: str, reason: str) -> None:
        """Registry hook (any thread): record it and close the channel's socket."""
        self._state.record_channel_removed(channel_id, reason)
        self._call_soon(self._close_removed, channel_id, reason)

    def _close_removed(self, channel_id: str, reason: str) -> None:
        live = self._sockets.get(channel_id)
        if live is not None:
            self._spawn(live.end(reason, f"Channel {channel_id} was {reason}"))

    def _on_subscribed(self, channel_id: str, topics: list[str]) -> None:
        """Registry hook (request thread): a live channel may need a conversation resent."""
        self._call_soon(self._resend_soon, channel_id, topics)

    def _resend_soon(self, channel_id: str, topics: list[str]) -> None:
        live = self._sockets.get(channel_id)
        if live is not None:
            self._spawn(self._resend(live, set(topics)))

    async def _resend(self, live: _LiveSocket, topics: set[str] | None) -> None:
        """Re-send the last N frames of conversations with `resend_last_n_after_reconnect`.

        Only frames of the conversation's topics the channel is subscribed to (`topics`: the
        newly subscribed ones; None: all of them), and each topic once per socket.
        """
        if topics is None:
            try:
                subscribed = set(self.registry.topics(live.channel_id))
            except ChannelNotFound:
                return
        else:
            subscribed = topics
        todo: list[tuple[_Conversation, list[str | bytes]]] = []
        with self._lock:
            for c in self._conversations.values():
                if c.resend_last_n <= 0 or not c.history:
                    continue
                conversation_id = c.call.conversation_id
                done = live.resent_for.setdefault(conversation_id, set())
                wanted = (conversation_topics(conversation_id) & subscribed) - done
                if not wanted:
                    continue
                done |= wanted
                frames = [frame for topic, frame in c.history if topic in wanted]
                todo.append((c, frames[-c.resend_last_n :]))
        for conversation, frames in todo:
            for frame in frames:
                if await live.send(frame):
                    with self._lock:
                        conversation.frames_resent += 1
                        conversation.finals_delivered.update(_final_ids_in(frame))

    # --- conversations --------------------------------------------------------------------

    def start_conversation(self, request: ConversationStart) -> dict[str, Any]:
        """Start replaying a script (any thread); returns the conversation's snapshot."""
        scripts = load_scripts()
        script = scripts.get(request.script)
        if script is None:
            raise UnknownScript(
                f"unknown script {request.script!r}; known: {', '.join(sorted(scripts))}"
            )
        loop = self._loop
        if loop is None:
            raise RuntimeError("the notification server is not running")
        conversation_id = request.conversation_id or str(uuid.uuid4())
        call = Call.new(script, conversation_id, request.queue_id or script.queue_id)
        with self._lock:
            existing = self._conversations.get(conversation_id)
            if existing is not None and not existing.done:
                raise ConversationExists(f"conversation {conversation_id} is still playing")
            conversation = _Conversation(
                script=script,
                call=call,
                speed=request.speed,
                resend_last_n=request.resend_last_n_after_reconnect,
                subscribe_timeout_s=request.subscribe_timeout_s,
                generation=self._state.generation,
                started=iso(time.time()),
                messages_planned=len(plan_transcription(script, call, 0)),
                malformed_frames=self._state.take_all_of_fault("malformed_frames_next"),
                oversized_frames=self._state.take_all_of_fault("oversized_frame_next"),
                insights_planned=len(script.insights),
                copilot_duplicates=self._state.take_all_of_fault("copilot_duplicate_next"),
                copilot_bad_insights=self._state.take_all_of_fault("copilot_bad_insights_next"),
                copilot_binary_insights=self._state.take_all_of_fault("copilot_binary_next"),
            )
            self._conversations[conversation_id] = conversation
            conversation.future = asyncio.run_coroutine_threadsafe(self._play(conversation), loop)
            return conversation.snapshot()

    def conversations(self) -> list[dict[str, Any]]:
        with self._lock:
            return [c.snapshot() for c in self._conversations.values()]

    def _on_reset(self) -> None:
        """State reset listener (any thread): stop and forget every conversation."""
        with self._lock:
            conversations = list(self._conversations.values())
            self._conversations.clear()
        for conversation in conversations:
            if conversation.future is not None:
                conversation.future.cancel()

    async def _play(self, conversation: _Conversation) -> None:
        call = conversation.call
        loop = asyncio.get_running_loop()
        try:
            connected = time.time()
            await self._publish_queue_event(conversation, connected, None)
            topic = transcription_topic(call.conversation_id)
            deadline = loop.time() + conversation.subscribe_timeout_s
            while not self.registry.subscribers(topic) and loop.time() < deadline:
                await asyncio.sleep(SUBSCRIBER_POLL_S)
                if not self._current(conversation):
                    return
            self._progress(conversation, state="playing")
            start_ms = int(time.time() * 1000)
            plan = plan_transcription(conversation.script, call, start_ms)
            bad: list[str | bytes] = [
                malformed_frame(index, call, start_ms)
                for index in range(conversation.malformed_frames)
            ]
            bad += [oversized_frame(call, start_ms)] * conversation.oversized_frames
            # Transcription messages and insights on one timeline; at equal times the
            # transcription message goes first, so an insight always follows its final.
            timeline: list[tuple[int, int, int, PlannedMessage | PlannedInsight]] = [
                (message.at_ms, 0, index, message) for index, message in enumerate(plan)
            ]
            timeline += [
                (insight.at_ms, 1, index, insight)
                for index, insight in enumerate(plan_insights(conversation.script, call))
            ]
            timeline.sort(key=lambda step: step[:3])
            base = loop.time()
            sent_messages = 0
            sent_insights = 0
            for at_ms, _, _, step in timeline:
                due = base + at_ms / 1000 / conversation.speed
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not self._current(conversation):
                    return
                if isinstance(step, PlannedInsight):
                    await self._send_insight(conversation, step, sent_insights)
                    sent_insights += 1
                    continue
                if sent_messages >= 1 and bad:
                    # One bad frame before each transcript message, after the opening status.
                    await self._deliver(topic, bad.pop(0))
                sent_messages += 1
                frame = envelope(topic, step.body_at(time.time()))
                delivered = await self._deliver(topic, frame)
                finals = _final_ids(step.body) if step.kind == "final" else []
                with self._lock:
                    conversation.history.append((topic, frame))
                    conversation.messages_sent += 1
                    conversation.frames_delivered += delivered
                    conversation.finals_sent += finals
                    if delivered:
                        conversation.finals_delivered.update(finals)
                    else:
                        conversation.finals_missed.update(finals)
            await self._publish_queue_event(conversation, connected, time.time())
            self._progress(conversation, state="ended")
        except asyncio.CancelledError:
            self._progress(conversation, state="cancelled")
            raise
        except Exception:
            log.exception("conversation %s failed", call.conversation_id)
            self._progress(conversation, state="failed")
        finally:
            with self._lock:
                conversation.done = True

    async def _send_insight(
        self, conversation: _Conversation, planned: PlannedInsight, ordinal: int
    ) -> None:
        """Send the `ordinal`-th insight of a replay, with the Copilot faults it is due."""
        call = conversation.call
        topic = suggestion_topic(call.conversation_id, planned.kind)
        now = time.time()
        if ordinal == 0:
            # `copilot_bad_insights_next`: the bad events come before the first insight.
            search_topic = suggestion_topic(call.conversation_id, "knowledge.search")
            for index in range(conversation.copilot_bad_insights):
                bad = bad_insight_frame(index, call, planned.utterance_id, now)
                await self._deliver(search_topic, bad)
        insight = planned.insight
        search_id = (
            self._state.issue_search_id(insight.knowledge_base_id)
            if isinstance(insight, KnowledgeSearchInsight)
            else ""
        )
        suggestion_id = str(uuid.uuid4())
        body = suggestion_event(
            planned, call, suggestion_id=suggestion_id, now_s=now, search_id=search_id
        )
        text = envelope(topic, body)
        frame: str | bytes = text
        if ordinal < conversation.copilot_binary_insights:
            if ordinal == 0:
                await self._deliver(topic, garbage_frame())
            frame = binary_insight_frame(text, ordinal)
        with self._lock:
            # Known before anyone can see it, so an engagement may follow at once.
            conversation.suggestions[suggestion_id] = _Suggestion(topic, body)
        delivered = await self._deliver(topic, frame)
        if ordinal < conversation.copilot_duplicates:
            await self._deliver(topic, frame)  # the very same frame again
        with self._lock:
            conversation.history.append((topic, frame))
            conversation.insights_sent += 1
            conversation.insights_delivered += delivered

    def engage(
        self, conversation_id: str, suggestion_id: str, engagement_type: str, rating: str | None
    ) -> bool:
        """Apply an engagement to a suggestion this emulator sent (any thread).

        Sends the suggestion's follow-up event (new `state`, same `suggestionId`) on its topic
        before returning. False if the conversation never had that suggestion.
        """
        with self._lock:
            conversation = self._conversations.get(conversation_id)
            suggestion = (
                conversation.suggestions.get(suggestion_id) if conversation is not None else None
            )
            if conversation is None or suggestion is None:
                return False
            suggestion.body = engaged_event(suggestion.body, engagement_type, rating, time.time())
            topic, frame = suggestion.topic, envelope(suggestion.topic, suggestion.body)
        loop = self._loop
        if loop is not None:
            try:
                future = asyncio.run_coroutine_threadsafe(
                    self._publish_followup(conversation, topic, frame), loop
                )
            except RuntimeError:  # the loop is closed: the emulator is stopping
                return True
            # Cancelled: the emulator is stopping; the engagement itself still counts.
            with contextlib.suppress(
                concurrent.futures.TimeoutError, concurrent.futures.CancelledError
            ):
                future.result(timeout=ENGAGEMENT_SEND_TIMEOUT_S)
        return True

    async def _publish_followup(self, conversation: _Conversation, topic: str, frame: str) -> None:
        delivered = await self._deliver(topic, frame)
        log.info("engagement follow-up on %s delivered to %d channel(s)", topic, delivered)
        with self._lock:
            conversation.history.append((topic, frame))

    def _current(self, conversation: _Conversation) -> bool:
        return conversation.generation == self._state.generation

    def _progress(self, conversation: _Conversation, *, state: str) -> None:
        with self._lock:
            conversation.state = state

    async def _publish_queue_event(
        self, conversation: _Conversation, connected: float, ended: float | None
    ) -> None:
        call = conversation.call
        frame = envelope(
            queue_topic(call.queue_id), queue_conversation_event(call, connected, ended)
        )
        delivered = await self._deliver(queue_topic(call.queue_id), frame)
        with self._lock:
            conversation.queue_events_delivered += delivered

    async def _deliver(self, topic: str, frame: str | bytes) -> int:
        """Send to every live socket of a channel subscribed to `topic`; others miss it."""
        delivered = 0
        for channel_id in self.registry.subscribers(topic):
            live = self._sockets.get(channel_id)
            if live is not None and await live.send(frame):
                delivered += 1
        return delivered


def _final_ids(body: Mapping[str, Any]) -> list[str]:
    """Utterance ids of the final transcripts in a transcription eventBody."""
    transcripts = body.get("transcripts")
    if not isinstance(transcripts, list):
        return []
    return [
        t["utteranceId"]
        for t in transcripts
        if isinstance(t, dict) and t.get("isFinal") and isinstance(t.get("utteranceId"), str)
    ]


def _final_ids_in(frame: str | bytes) -> list[str]:
    """Utterance ids of the finals in a frame this emulator sent (none in other frames)."""
    if not isinstance(frame, str):
        return []
    try:
        data = json.loads(frame)
    except ValueError:
        return []
    body = data.get("eventBody") if isinstance(data, dict) else None
    topic = data.get("topicName") if isinstance(data, dict) else None
    if not isinstance(body, dict) or not str(topic).endswith(".transcription"):
        return []
    return _final_ids(body)


def _is_ping(message: str) -> bool:
    try:
        data = json.loads(message)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("message") == "ping"
