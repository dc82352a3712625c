"""Notification channels and their topic subscriptions: the REST side of the Notifications API.

Mirrors the real contract (see `shared/reference/genesys-cloud.md`, section 2):

* a channel is `{connectUri, id, expires}`; it lives `channel_ttl_s` (24 h by default) and
  every successful POST/PUT of its subscriptions extends it by that much again;
* at most `MAX_CHANNELS` (20) channels per OAuth client: creating one more deletes the one
  used least recently, channels without a live socket first;
* at most `MAX_TOPICS` (1,000) topics per channel, more is a 400;
* topics the emulator can publish are `Permitted`, anything else is `Rejected`: the queue
  conversation topic, the transcription topic and the six Agent Copilot suggestion topics
  (`v2.conversations.{id}.suggestions.<kind>`, section 4b; `SUGGESTION_KINDS`).

Every OAuth token the emulator issues belongs to its one configured client, so "per OAuth
client" means "in this emulator". The registry is touched by Flask request threads and by
the WebSocket event loop, so all of it sits behind one lock; removals (eviction, expiry) are
reported through `on_removed` outside the lock so the socket side can close the sockets.

The module also builds the envelopes of the messages the socket itself produces
(heartbeat, pong, `v2.system.socket_closing`, the `{"result":"404"}` error frame).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

#: Channels per OAuth client (Genesys: "20 channels per user + OAuth-client pair").
MAX_CHANNELS = 20
#: Topics per channel; more is a 400.
MAX_TOPICS = 1000
#: The organisation every emulated event belongs to.
ORGANIZATION_ID = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"

QUEUE_TOPIC_RE = re.compile(r"^v2\.routing\.queues\.([A-Za-z0-9_-]+)\.conversations$")
TRANSCRIPTION_TOPIC_RE = re.compile(r"^v2\.conversations\.([A-Za-z0-9_-]+)\.transcription$")
#: The `<kind>` of the Agent Copilot suggestion topics `v2.conversations.{id}.suggestions.<kind>`
#: (the real names, `shared/reference/genesys-cloud.md` section 4b).
SuggestionKind = Literal[
    "knowledge.search", "knowledge.article", "response", "script", "intent", "thirdpartyaction"
]
SUGGESTION_KINDS: tuple[SuggestionKind, ...] = get_args(SuggestionKind)
SUGGESTION_TOPIC_RE = re.compile(
    r"^v2\.conversations\.([A-Za-z0-9_-]+)\.suggestions\.("
    + "|".join(re.escape(kind) for kind in SUGGESTION_KINDS)
    + ")$"
)
REJECTION_REASON = "topic not found"

HEARTBEAT_TOPIC = "channel.metadata"
SOCKET_CLOSING_TOPIC = "v2.system.socket_closing"

IncludeChannels = Literal["token", "oauthclient"]


def queue_topic(queue_id: str) -> str:
    return f"v2.routing.queues.{queue_id}.conversations"


def transcription_topic(conversation_id: str) -> str:
    return f"v2.conversations.{conversation_id}.transcription"


def suggestion_topic(conversation_id: str, kind: str) -> str:
    """`v2.conversations.{id}.suggestions.<kind>`, `kind` one of `SUGGESTION_KINDS`."""
    if kind not in SUGGESTION_KINDS:
        raise ValueError(f"unknown suggestion kind {kind!r}")
    return f"v2.conversations.{conversation_id}.suggestions.{kind}"


def conversation_topics(conversation_id: str) -> frozenset[str]:
    """Every topic the emulator publishes about one conversation (transcription, suggestions)."""
    return frozenset(
        [
            transcription_topic(conversation_id),
            *(suggestion_topic(conversation_id, kind) for kind in SUGGESTION_KINDS),
        ]
    )


def is_permitted(topic: str) -> bool:
    """True for the topics the emulator publishes (any ids); everything else is Rejected."""
    return bool(
        QUEUE_TOPIC_RE.match(topic)
        or TRANSCRIPTION_TOPIC_RE.match(topic)
        or SUGGESTION_TOPIC_RE.match(topic)
    )


def iso(epoch_s: float) -> str:
    """ISO-8601 in UTC with milliseconds and a `Z`, as Genesys Cloud writes date-times."""
    text = datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


# --- socket message envelopes ----------------------------------------------------------------


def envelope(topic_name: str, event_body: Any) -> str:
    """One notification as sent on the socket: `{topicName, version, eventBody, metadata}`."""
    return json.dumps(
        {
            "topicName": topic_name,
            "version": "2",
            "eventBody": event_body,
            "metadata": {"CorrelationId": str(uuid.uuid4())},
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def heartbeat_frame() -> str:
    return envelope(HEARTBEAT_TOPIC, {"message": "WebSocket Heartbeat"})


def pong_frame() -> str:
    return envelope(HEARTBEAT_TOPIC, {"message": "pong"})


def socket_closing_frame(channel_id: str, client_id: str) -> str:
    """`v2.system.socket_closing` with a `SystemMessageSystemMessage` body."""
    return envelope(
        SOCKET_CLOSING_TOPIC,
        {
            "channelId": channel_id,
            "correlationId": str(uuid.uuid4()),
            "organizationId": ORGANIZATION_ID,
            "oauthClientId": client_id,
            "oauthClientOrgId": ORGANIZATION_ID,
            "message": "The socket is closing for maintenance; reconnect to the same connectUri",
        },
    )


def error_frame(message: str) -> str:
    """The `{"result":"404","message":...}` frame sent before closing a socket whose channel
    is unknown, expired, evicted or taken over by a newer socket."""
    return json.dumps({"result": "404", "message": message}, separators=(",", ":"))


# --- channels --------------------------------------------------------------------------------


@dataclass
class Channel:
    """One notification channel. Mutated only under the registry's lock."""

    id: str
    token: str
    client_id: str
    connect_uri: str
    created: float  # epoch seconds
    expires: float  # epoch seconds
    last_used: float  # monotonic, for the least-recently-used eviction
    topics: dict[str, None] = field(default_factory=dict)  # an ordered set
    live: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"connectUri": self.connect_uri, "id": self.id, "expires": iso(self.expires)}


@dataclass(frozen=True)
class TopicResult:
    """One entry of a `ChannelTopicEntityListing`."""

    id: str
    permitted: bool

    def as_json(self, channel_id: str) -> dict[str, Any]:
        entity: dict[str, Any] = {
            "id": self.id,
            "state": "Permitted" if self.permitted else "Rejected",
            "selfUri": f"/api/v2/notifications/channels/{channel_id}/subscriptions",
        }
        if not self.permitted:
            entity["rejectionReason"] = REJECTION_REASON
        return entity


class ChannelNotFound(LookupError):
    """No such channel (never created, evicted or expired)."""


class TooManyTopics(ValueError):
    """The change would leave more than `MAX_TOPICS` topics on the channel."""

    def __init__(self, count: int) -> None:
        super().__init__(
            f"A channel may subscribe to at most {MAX_TOPICS} topics; "
            f"this request would leave {count}"
        )
        self.count = count


SubscriptionMode = Literal["add", "replace"]


class ChannelRegistry:
    """All notification channels of one emulator, safe to use from any thread."""

    def __init__(
        self,
        *,
        ttl_s: float,
        ws_base_url: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.Lock()
        self._ttl_s = ttl_s
        self._ws_base_url = ws_base_url.rstrip("/")
        self._clock = clock
        self._channels: dict[str, Channel] = {}
        #: Called as `(channel_id, reason)` after a channel is removed ("evicted"/"expired").
        self.on_removed: Callable[[str, str], None] = lambda _id, _reason: None
        #: Called as `(channel_id, topics)` after topics are newly added to a channel.
        self.on_subscribed: Callable[[str, list[str]], None] = lambda _id, _topics: None

    @property
    def ttl_s(self) -> float:
        return self._ttl_s

    # --- channels -------------------------------------------------------------------------

    def create(self, *, token: str, client_id: str) -> tuple[Channel, str | None]:
        """Create a channel; returns a copy of it and the id of the channel it evicted."""
        now = self._clock()
        channel_id = secrets.token_hex(12)
        channel = Channel(
            id=channel_id,
            token=token,
            client_id=client_id,
            connect_uri=f"{self._ws_base_url}/channels/{channel_id}",
            created=now,
            expires=now + self._ttl_s,
            last_used=time.monotonic(),
        )
        evicted: str | None = None
        with self._lock:
            own = [c for c in self._channels.values() if c.client_id == client_id]
            if len(own) >= MAX_CHANNELS:
                # Least recently used first, channels without a live socket before live ones.
                victim = min(own, key=lambda c: (c.live, c.last_used))
                del self._channels[victim.id]
                evicted = victim.id
            self._channels[channel_id] = channel
            snapshot = _copy(channel)
        if evicted is not None:
            self.on_removed(evicted, "evicted")
        return snapshot, evicted

    def listing(
        self, *, token: str, client_id: str, include: IncludeChannels
    ) -> list[dict[str, Any]]:
        """Entities of `GET /api/v2/notifications/channels`.

        `token`: the channels created with this token. `oauthclient`: every channel of the
        client, but (as Genesys documents) those of other tokens without their ids.
        """
        now = self._clock()
        with self._lock:
            channels = [c for c in self._channels.values() if c.expires > now]
            entities: list[dict[str, Any]] = []
            for channel in sorted(channels, key=lambda c: c.created):
                if channel.token == token:
                    entities.append(channel.as_json())
                elif include == "oauthclient" and channel.client_id == client_id:
                    entities.append({"expires": iso(channel.expires)})
            return entities

    def exists(self, channel_id: str) -> bool:
        """True if the channel exists and has not expired (expiry is also lazy here)."""
        with self._lock:
            channel = self._channels.get(channel_id)
            return channel is not None and channel.expires > self._clock()

    def get(self, channel_id: str) -> Channel:
        """A copy of the channel; raises `ChannelNotFound`."""
        with self._lock:
            return _copy(self._get(channel_id))

    def channel_ids(self) -> list[str]:
        with self._lock:
            return list(self._channels)

    def set_live(self, channel_id: str, live: bool) -> None:
        """Note whether the channel has a socket now (and that it was just used)."""
        with self._lock:
            channel = self._channels.get(channel_id)
            if channel is not None:
                channel.live = live
                channel.last_used = time.monotonic()

    def expire_due(self) -> list[str]:
        """Remove the channels whose `expires` has passed; returns their ids."""
        now = self._clock()
        with self._lock:
            due = [c.id for c in self._channels.values() if c.expires <= now]
            for channel_id in due:
                del self._channels[channel_id]
        for channel_id in due:
            self.on_removed(channel_id, "expired")
        return due

    def expire_all(self) -> list[str]:
        """Expire every channel now (the `expire_channels_now` fault)."""
        with self._lock:
            ids = list(self._channels)
            self._channels.clear()
        for channel_id in ids:
            self.on_removed(channel_id, "expired")
        return ids

    # --- subscriptions --------------------------------------------------------------------

    def topics(self, channel_id: str) -> list[str]:
        with self._lock:
            return list(self._get(channel_id).topics)

    def subscribe(
        self, channel_id: str, topics: Iterable[str], mode: SubscriptionMode
    ) -> tuple[list[TopicResult], list[str]]:
        """Add (POST) or replace (PUT) the channel's topics.

        Returns the listing to answer with (the channel's topics, then this request's
        rejected ones) and the rejected topics. Raises `ChannelNotFound` or `TooManyTopics`
        (nothing changes then). A successful call extends the channel's life.
        """
        requested = list(dict.fromkeys(topics))
        permitted = [t for t in requested if is_permitted(t)]
        rejected = [t for t in requested if not is_permitted(t)]
        with self._lock:
            channel = self._get(channel_id)
            before = channel.topics
            after = dict.fromkeys([*before, *permitted] if mode == "add" else permitted)
            if len(after) > MAX_TOPICS:
                raise TooManyTopics(len(after))
            channel.topics = after
            channel.expires = self._clock() + self._ttl_s
            channel.last_used = time.monotonic()
            added = [t for t in after if t not in before]
            listing = [TopicResult(t, True) for t in after]
        listing.extend(TopicResult(t, False) for t in rejected)
        if added:
            self.on_subscribed(channel_id, added)
        return listing, rejected

    def unsubscribe_all(self, channel_id: str) -> None:
        with self._lock:
            channel = self._get(channel_id)
            channel.topics = {}
            channel.last_used = time.monotonic()

    def subscribers(self, topic: str) -> list[str]:
        """Ids of the unexpired channels subscribed to `topic`."""
        now = self._clock()
        with self._lock:
            return [c.id for c in self._channels.values() if topic in c.topics and c.expires > now]

    def _get(self, channel_id: str) -> Channel:
        channel = self._channels.get(channel_id)
        if channel is None or channel.expires <= self._clock():
            raise ChannelNotFound(channel_id)
        return channel


def _copy(channel: Channel) -> Channel:
    return Channel(
        id=channel.id,
        token=channel.token,
        client_id=channel.client_id,
        connect_uri=channel.connect_uri,
        created=channel.created,
        expires=channel.expires,
        last_used=channel.last_used,
        topics=dict(channel.topics),
        live=channel.live,
    )
