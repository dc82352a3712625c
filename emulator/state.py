"""Mutable state of one emulator: issued tokens, injected faults and what it has seen.

Request threads (the HTTP server is threaded) and callback delivery threads all touch this
state, so every access goes through one lock. Readers get copies, never the live lists, so
a test can inspect records while deliveries continue.
"""

from __future__ import annotations

import copy
import enum
import math
import random
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field

#: Requests per rate-limit window advertised in `inin-ratelimit-allowed`. Informational
#: only: real 429s come from the rate-limit faults, so load tests are not throttled by
#: surprise.
RATE_LIMIT_ALLOWED = 180
RATE_LIMIT_WINDOW_S = 60.0
#: Knowledge search ids remembered for `PATCH .../documents/search/<searchId>`; the oldest
#: are forgotten beyond this, so a long load test does not grow the emulator without bound.
MAX_REMEMBERED_SEARCHES = 10_000
#: `webhook-id`s of training deliveries answered 204 remembered (for `duplicate`), likewise.
MAX_REMEMBERED_TRAINING_IDS = 10_000


class Faults(BaseModel):
    """Faults injected into the emulator's answers; all off by default.

    Strict so that `{"rate_limit_next": "3"}` or a misspelt field is refused rather than
    silently ignored: a fault test that injects nothing would pass for the wrong reason.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    rate_limit_next: int = Field(default=0, ge=0)
    rate_limit_ratio: float = Field(default=0.0, ge=0.0, le=1.0)
    retry_after_s: int = Field(default=1, ge=0)
    server_error_next: int = Field(default=0, ge=0)
    server_error_ratio: float = Field(default=0.0, ge=0.0, le=1.0)
    slow_ms: int = Field(default=0, ge=0)
    duplicate_deliveries: int = Field(default=0, ge=0)
    drop_callbacks: bool = False
    callback_delay_ms: int | None = Field(default=None, ge=0)
    analytics_error_next: int = Field(default=0, ge=0)
    #: Every analytics POST is answered 503 while set (set it back to false to recover); the
    #: calls do not consume `analytics_error_next` meanwhile.
    analytics_down: bool = False
    # --- notifications (REST side and WebSocket); see emulator.sockets -------------------
    #: The next N subscription calls (any method) are answered 429 with `Retry-After`.
    subscription_rate_limit_next: int = Field(default=0, ge=0)
    #: The next socket that sends a frame is aborted (no close frame) after N more frames.
    ws_drop_after_frames: int = Field(default=0, ge=0)
    #: Send `v2.system.socket_closing` on every live socket, then close them ~1 s later.
    socket_closing_next: bool = False
    #: Expire every channel at once (their sockets get a 404 frame and are closed).
    expire_channels_now: bool = False
    #: Inject this many malformed frames into the next conversation replay.
    malformed_frames_next: int = Field(default=0, ge=0)
    #: Inject this many ~100 KB frames into the next conversation replay.
    oversized_frame_next: int = Field(default=0, ge=0)
    #: Send neither heartbeats nor pongs while set.
    heartbeats_paused: bool = False
    #: While above 0, every live socket is aborted (the TCP connection cut, no close frame,
    #: as `ws_drop_after_frames` does) every this many seconds; the channels stay valid.
    socket_drop_every_s: float = Field(default=0.0, ge=0.0)
    # --- results webhook (`POST /results/suggestions`, our own contract) ----------------
    # Each call consumes at most one of these. The 429 and 503 are answered before the
    # bearer token is looked at (as a gateway would); the 401 and 403 only to calls whose
    # token is valid, so a call without a token still gets its genuine 401. The generic
    # REST faults above (rate_limit_next, ...) do not touch this route.
    #: The next N calls are answered 429 `too.many.requests` with `Retry-After: retry_after_s`.
    results_rate_limit_next: int = Field(default=0, ge=0)
    #: The next N calls are answered 503 `service.unavailable`.
    results_error_next: int = Field(default=0, ge=0)
    #: The next N calls with a valid token are answered 401 `bad.credentials` anyway, so the
    #: client has to get a new token.
    results_unauthorized_next: int = Field(default=0, ge=0)
    #: The next N calls with a valid token are answered 403 `not.authorized`.
    results_forbidden_next: int = Field(default=0, ge=0)
    # --- Agent Copilot suggestion events (scripted insights); see emulator.sockets -------
    # Each is taken whole by the next `POST /emulator/conversations`, like
    # `malformed_frames_next`.
    #: The next conversation sends each of its first N insights twice (the same frame: same
    #: `suggestionId`, same body).
    copilot_duplicate_next: int = Field(default=0, ge=0)
    #: The next conversation sends N bad suggestion events just before its first insight, to
    #: the knowledge search subscribers: confidence 1.7, confidence -0.2, no `suggestionId`,
    #: no `conversationId`, topic `v2.conversations.{id}.suggestions.bogus`, cycling.
    copilot_bad_insights_next: int = Field(default=0, ge=0)
    #: The next conversation sends its first N insights as BINARY frames, alternately the
    #: UTF-8 bytes of the envelope and the base64 of those bytes, after one binary garbage
    #: frame (neither JSON nor base64).
    copilot_binary_next: int = Field(default=0, ge=0)
    # --- training-platform receiver (`POST /training/insights`, our own contract) --------
    # Answered before the signature is checked, as a gateway would; every call is recorded.
    #: The next N calls are answered 503.
    training_error_next: int = Field(default=0, ge=0)
    #: Every call is answered 503 while set (set it back to false to recover); the calls
    #: do not consume `training_error_next` meanwhile.
    training_down: bool = False


class RestFault(enum.Enum):
    """How a token or query call is to be answered before looking at the request itself."""

    NONE = "none"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"


@dataclass(frozen=True)
class RestDecision:
    """The fault decision for one token/query call (taken under the lock, acted on outside)."""

    fault: RestFault
    slow_ms: int
    retry_after_s: int


@dataclass(frozen=True)
class RateLimitInfo:
    """Values for the `inin-ratelimit-*` response headers."""

    count: int
    allowed: int
    reset_s: int


class TokenRequestRecord(TypedDict):
    client_id: str | None
    ok: bool
    status: int


class QueryRecord(TypedDict):
    id: str | None
    status_code: int
    body: Any


class RestCallRecord(TypedDict):
    """One call through the REST faults (token, async query, knowledge search and update,
    Copilot engagement), whatever its answer, with its arrival time: what a test needs to
    count attempts per query and check that `Retry-After` was waited out."""

    #: The route's endpoint name: oauth_token, knowledge_query, knowledge_search, ...
    route: str
    #: Arrival time, epoch seconds.
    at: float
    status_code: int
    #: "rate_limited" or "server_error" when a REST fault answered it, else None.
    fault: str | None
    #: The `Retry-After` header sent (seconds), if any.
    retry_after_s: int | None
    #: The conversation the call is about (body `conversationId`, knowledge search
    #: `conversationContext.conversationId`, or the path's), if any.
    conversation_id: str | None


class CallbackRecord(TypedDict):
    webhook_id: str
    provider_request_id: str
    status: str
    #: 1-based count of sends of this message (webhook-id), across retries and duplicates.
    attempt: int
    #: 0 for the original delivery, k for the k-th extra copy (`duplicate_deliveries`).
    copy: int
    response_status: int | None
    error: str | None
    url: str
    #: True on the last failed attempt of a delivery whose retry schedule ran out.
    gave_up: bool


class ChannelRecord(TypedDict):
    id: str
    created: str
    #: The channel this creation evicted (the 21st channel of a client evicts one).
    evicted: str | None


class ChannelRemovedRecord(TypedDict):
    id: str
    #: "evicted" or "expired".
    reason: str


class SubscriptionCallRecord(TypedDict):
    channel_id: str
    method: str
    status: int
    #: The topics in the request body (empty for GET and DELETE).
    topics: list[str]
    rejected: list[str]


class ConnectionRecord(TypedDict):
    connection_id: str
    channel_id: str
    #: False when the channel did not exist: the socket got a 404 frame and a 1008 close.
    accepted: bool
    opened: str
    closed: str | None
    #: Why it closed: client, replaced, expired, evicted, dropped, socket_closing, shutdown.
    close_reason: str | None


class NotificationRecords(TypedDict):
    channels: list[ChannelRecord]
    channels_removed: list[ChannelRemovedRecord]
    subscription_calls: list[SubscriptionCallRecord]
    connections: list[ConnectionRecord]
    #: Frames sent per channel id (heartbeats, pongs, events, injected bad frames).
    frames_sent: dict[str, int]
    #: `{"message":"ping"}` frames received per channel id.
    pings_received: dict[str, int]


class KnowledgeSearchRecord(TypedDict):
    """One `POST /api/v2/knowledge/knowledgebases/<id>/documents/search`, whatever its answer."""

    knowledge_base_id: str
    status_code: int
    #: The `searchId` issued (only for a 200).
    search_id: str | None
    #: The request body as JSON, or as text when it was not JSON.
    body: Any


class KnowledgeSearchUpdateRecord(TypedDict):
    """One `PATCH .../documents/search/<searchId>`, whatever its answer."""

    knowledge_base_id: str
    search_id: str
    status_code: int
    body: Any


class ResultsRecord(TypedDict):
    """One `POST /results/suggestions` (the results webhook), whatever its answer."""

    status_code: int
    body: Any
    #: The request's `Idempotency-Key` header, if any.
    idempotency_key: str | None


class EngagementRecord(TypedDict):
    """One `POST /api/v2/conversations/<id>/suggestions/<id>/engagement`, whatever its answer."""

    conversation_id: str
    suggestion_id: str
    status_code: int
    body: Any


class TrainingRecord(TypedDict):
    """One `POST /training/insights` (the training-platform receiver), whatever its answer."""

    #: The `webhook-id` header, if any.
    webhook_id: str | None
    status_code: int
    #: The request body parsed as JSON, or None when it is not JSON.
    body: Any
    #: True if this `webhook-id` had already been answered 204 before this call.
    duplicate: bool


class Records(TypedDict):
    token_requests: list[TokenRequestRecord]
    rest_calls: list[RestCallRecord]
    queries: list[QueryRecord]
    callbacks: list[CallbackRecord]
    analytics_events: list[dict[str, Any]]
    notifications: NotificationRecords
    knowledge_searches: list[KnowledgeSearchRecord]
    knowledge_search_updates: list[KnowledgeSearchUpdateRecord]
    results: list[ResultsRecord]
    engagements: list[EngagementRecord]
    training: list[TrainingRecord]


def _empty_records() -> Records:
    return {
        "token_requests": [],
        "rest_calls": [],
        "queries": [],
        "callbacks": [],
        "analytics_events": [],
        "notifications": {
            "channels": [],
            "channels_removed": [],
            "subscription_calls": [],
            "connections": [],
            "frames_sent": {},
            "pings_received": {},
        },
        "knowledge_searches": [],
        "knowledge_search_updates": [],
        "results": [],
        "engagements": [],
        "training": [],
    }


class EmulatorState:
    """Tokens, faults and records of one emulator, safe to use from any thread."""

    def __init__(self, *, fault_seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._fault_seed = fault_seed
        self._rng = random.Random(fault_seed)
        self._faults = Faults()
        self._tokens: dict[str, float] = {}  # token -> expiry on the monotonic clock
        self._searches: dict[str, str] = {}  # knowledge search id -> knowledge base id
        self._training_answered: dict[str, None] = {}  # webhook-ids answered 204 (ordered)
        self._records = _empty_records()
        self._generation = 0
        self._window_start = time.monotonic()
        self._window_count = 0
        self._reset_listeners: list[Callable[[], None]] = []

    # --- faults ---------------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        with self._lock:
            return self._faults

    def update_faults(self, changes: Mapping[str, Any]) -> Faults:
        """Merge `changes` into the current faults; raises `pydantic.ValidationError`.

        The ratio generator is reseeded on every change so that a given sequence of calls
        after a fault change always meets the same sequence of faults.
        """
        with self._lock:
            merged = Faults.model_validate({**self._faults.model_dump(), **changes})
            self._faults = merged
            self._rng.seed(self._fault_seed)
            return merged

    def decide_rest_fault(self) -> RestDecision:
        """Consume one token/query call from the fault budget and say how to answer it."""
        with self._lock:
            faults = self._faults
            fault = RestFault.NONE
            if faults.rate_limit_next > 0:
                self._faults = faults.model_copy(
                    update={"rate_limit_next": faults.rate_limit_next - 1}
                )
                fault = RestFault.RATE_LIMITED
            elif faults.server_error_next > 0:
                self._faults = faults.model_copy(
                    update={"server_error_next": faults.server_error_next - 1}
                )
                fault = RestFault.SERVER_ERROR
            # Draw only while a ratio is set, so unrelated calls don't shift the sequence.
            elif faults.rate_limit_ratio > 0 and self._rng.random() < faults.rate_limit_ratio:
                fault = RestFault.RATE_LIMITED
            elif faults.server_error_ratio > 0 and self._rng.random() < faults.server_error_ratio:
                fault = RestFault.SERVER_ERROR
            return RestDecision(fault, faults.slow_ms, faults.retry_after_s)

    def take_analytics_fault(self) -> bool:
        """True if this analytics POST is to fail (`analytics_down`, or consumes
        `analytics_error_next`)."""
        with self._lock:
            if self._faults.analytics_down:
                return True
            if self._faults.analytics_error_next > 0:
                self._faults = self._faults.model_copy(
                    update={"analytics_error_next": self._faults.analytics_error_next - 1}
                )
                return True
            return False

    def take_fault(self, name: str) -> bool:
        """Consume one unit of the counter fault `name`; True if there was one to consume."""
        with self._lock:
            value = getattr(self._faults, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} is not a counter fault")
            if value <= 0:
                return False
            self._faults = self._faults.model_copy(update={name: value - 1})
            return True

    def take_all_of_fault(self, name: str) -> int:
        """Consume the whole counter fault `name` (set it to 0); returns what it was."""
        with self._lock:
            value = getattr(self._faults, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} is not a counter fault")
            if value:
                self._faults = self._faults.model_copy(update={name: 0})
            return value

    def take_fault_flag(self, name: str) -> bool:
        """Consume the one-shot flag fault `name` (set it to False); returns what it was."""
        with self._lock:
            value = getattr(self._faults, name)
            if not isinstance(value, bool):
                raise TypeError(f"{name} is not a flag fault")
            if value:
                self._faults = self._faults.model_copy(update={name: False})
            return value

    def count_rest_call(self) -> RateLimitInfo:
        """Count a token/query call in the current window, for the rate-limit headers."""
        with self._lock:
            now = time.monotonic()
            if now - self._window_start >= RATE_LIMIT_WINDOW_S:
                self._window_start = now
                self._window_count = 0
            self._window_count += 1
            reset = math.ceil(self._window_start + RATE_LIMIT_WINDOW_S - now)
            return RateLimitInfo(self._window_count, RATE_LIMIT_ALLOWED, max(reset, 0))

    # --- tokens ---------------------------------------------------------------------------

    def issue_token(self, ttl_s: int) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.monotonic() + ttl_s
        return token

    def token_is_valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._tokens.get(token)
            if expiry is None:
                return False
            if expiry <= time.monotonic():
                del self._tokens[token]
                return False
            return True

    def revoke_tokens(self) -> int:
        """Forget every issued token; returns how many there were."""
        with self._lock:
            count = len(self._tokens)
            self._tokens.clear()
            return count

    # --- knowledge searches ---------------------------------------------------------------

    def issue_search_id(self, knowledge_base_id: str) -> str:
        """A new knowledge `searchId`, remembered as belonging to `knowledge_base_id`."""
        search_id = str(uuid.uuid4())
        with self._lock:
            self._searches[search_id] = knowledge_base_id
            while len(self._searches) > MAX_REMEMBERED_SEARCHES:
                del self._searches[next(iter(self._searches))]
        return search_id

    def search_was_issued(self, knowledge_base_id: str, search_id: str) -> bool:
        """True if this emulator issued `search_id` for a search of `knowledge_base_id`."""
        with self._lock:
            return self._searches.get(search_id) == knowledge_base_id

    # --- records --------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """Bumped by `reset`; deliveries scheduled in an older generation are abandoned."""
        with self._lock:
            return self._generation

    def record_token_request(self, record: TokenRequestRecord) -> None:
        with self._lock:
            self._records["token_requests"].append(record)

    def record_rest_call(self, record: RestCallRecord) -> None:
        with self._lock:
            self._records["rest_calls"].append(record)

    def record_query(self, record: QueryRecord) -> None:
        with self._lock:
            self._records["queries"].append(record)

    def record_callback(self, record: CallbackRecord, generation: int) -> None:
        with self._lock:
            # A delivery that was in flight across a reset must not leak into the new records.
            if generation == self._generation:
                self._records["callbacks"].append(record)

    def record_analytics_events(self, events: list[dict[str, Any]]) -> None:
        with self._lock:
            self._records["analytics_events"].extend(events)

    def record_knowledge_search(self, record: KnowledgeSearchRecord) -> None:
        with self._lock:
            self._records["knowledge_searches"].append(record)

    def record_knowledge_search_update(self, record: KnowledgeSearchUpdateRecord) -> None:
        with self._lock:
            self._records["knowledge_search_updates"].append(record)

    def record_results(self, record: ResultsRecord) -> None:
        with self._lock:
            self._records["results"].append(record)

    def record_engagement(self, record: EngagementRecord) -> None:
        with self._lock:
            self._records["engagements"].append(record)

    def training_was_answered(self, webhook_id: str | None) -> bool:
        """True if a training delivery with this `webhook-id` was answered 204 before."""
        with self._lock:
            return webhook_id is not None and webhook_id in self._training_answered

    def record_training(self, record: TrainingRecord) -> None:
        """Record a training call; a 204 makes its `webhook-id` count as answered."""
        with self._lock:
            self._records["training"].append(record)
            webhook_id = record["webhook_id"]
            if record["status_code"] == 204 and webhook_id is not None:
                self._training_answered[webhook_id] = None
                while len(self._training_answered) > MAX_REMEMBERED_TRAINING_IDS:
                    del self._training_answered[next(iter(self._training_answered))]

    # --- notification records (see emulator.notifications and emulator.sockets) ----------

    def record_channel(self, record: ChannelRecord) -> None:
        with self._lock:
            self._records["notifications"]["channels"].append(record)

    def record_channel_removed(self, channel_id: str, reason: str) -> None:
        with self._lock:
            self._records["notifications"]["channels_removed"].append(
                {"id": channel_id, "reason": reason}
            )

    def record_subscription_call(self, record: SubscriptionCallRecord) -> None:
        with self._lock:
            self._records["notifications"]["subscription_calls"].append(record)

    def record_connection(self, record: ConnectionRecord) -> None:
        with self._lock:
            self._records["notifications"]["connections"].append(record)

    def record_connection_closed(self, connection_id: str, closed: str, reason: str) -> None:
        """Complete the record of a connection (ignored if a reset dropped that record)."""
        with self._lock:
            for record in self._records["notifications"]["connections"]:
                if record["connection_id"] == connection_id and record["closed"] is None:
                    record["closed"] = closed
                    record["close_reason"] = reason
                    return

    def count_frame_sent(self, channel_id: str) -> None:
        with self._lock:
            frames = self._records["notifications"]["frames_sent"]
            frames[channel_id] = frames.get(channel_id, 0) + 1

    def count_ping(self, channel_id: str) -> None:
        with self._lock:
            pings = self._records["notifications"]["pings_received"]
            pings[channel_id] = pings.get(channel_id, 0) + 1

    def records(self) -> Records:
        """A deep copy of everything recorded since the last reset."""
        with self._lock:
            return copy.deepcopy(self._records)

    def add_reset_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener` (outside the lock) after every `reset`."""
        with self._lock:
            self._reset_listeners.append(listener)

    def reset(self) -> None:
        """Clear records and faults, forget knowledge search ids and answered training
        webhook-ids, and abandon pending callbacks.

        Issued tokens stay valid.

        Reset listeners then run: the notification side stops and forgets its scripted
        conversations. Channels, subscriptions and live sockets stay, like tokens.
        """
        with self._lock:
            self._records = _empty_records()
            self._searches.clear()
            self._training_answered.clear()
            self._faults = Faults()
            self._rng.seed(self._fault_seed)
            self._generation += 1
            listeners = list(self._reset_listeners)
        for listener in listeners:
            listener()
