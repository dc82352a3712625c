"""Stream process entry point: `python -m workers.stream` (Procfile type `stream`, capability C2).

One asyncio loop holds the Genesys notification channels (`NotificationsClient`) and feeds
what they receive to `ASSIST_STREAM_CONSUMERS` consumers, each conversation always to the same
one, so a conversation's events are processed in the order they arrived while different
conversations' events are processed at once:

    sockets ──frames──▶ checks (size, binary, JSON, envelope) ──▶ queue[hash(conversation)]
    consumer ──to_thread──▶ TranscriptIngestor (Redis, RQ, records) ──▶ subscribe/unsubscribe

Why several consumers: each event costs a few Redis round trips, and with `appendfsync always`
each write waits for an fsync. One consumer waits for them one after another (about 265
events/s on 2 cores); several share Redis's fsyncs and the round trips overlap.

- At start it follows `v2.routing.queues.{id}.conversations` for `ASSIST_STREAM_QUEUE_IDS`
  and resubscribes the conversations a previous run was following (kept in Redis).
- A queue event about a new voice conversation subscribes its
  `v2.conversations.{id}.transcription` and, with `ASSIST_COPILOT_TOPICS`, its
  `v2.conversations.{id}.suggestions.<topic>` Copilot topics; `SESSION_ENDED` unsubscribes
  them. Copilot events are validated, filtered and deduplicated here and processed by the
  workers (`assist.services.copilot`). When the queue
  reports the call ended but no `SESSION_ENDED` arrives within `ASSIST_STREAM_END_GRACE_S`,
  the conversation is closed and unsubscribed anyway.
- Everything blocking (Redis, RQ, the audit file, Genesys REST) runs in worker threads, so
  the sockets keep answering heartbeats whatever Redis does. When Redis is unreachable the
  consumer retries the same event with back-off (finals are deduplicated, so a retry is
  safe); events keep queueing meanwhile.
- Bad input never ends the process: a malformed frame is dropped, counted under
  `dropped.<reason>` and logged once (`stream.frame_dropped`, with the conversation id when
  one can be found); an unexpected error while processing one event is logged and counted
  (`errors.processing`) and the next event goes on.
- Counters (frames dropped by reason, events, utterances and decisions, connection events as
  `connection.*`) are kept in memory and added to the Redis hash `Keys.stream_counters()`
  every second, with the connection status in `Keys.stream_status()`, for `/metrics`.
- SIGTERM or SIGINT: stop reading, close every socket, process what was already received,
  flush the counters and exit 0. Nothing in Redis is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from assist.adapters.genesys.auth import TokenProvider
from assist.adapters.genesys.http import ResilientHttp
from assist.adapters.genesys.notifications import (
    DroppedFrame,
    DropReason,
    NotificationEvent,
    NotificationsApi,
    NotificationsClient,
    StreamConfig,
    StreamItem,
    backoff_delay,
)
from assist.adapters.genesys.schemas import (
    queue_conversations_topic,
    queue_id_of,
    transcription_conversation_id,
    transcription_topic,
)
from assist.bootstrap import Services, build_services
from assist.core.insights import is_suggestion_topic
from assist.logconfig import configure_logging, get_logger
from assist.services import copilot
from assist.services.transcripts import TranscriptIngestor
from assist.settings import get_settings
from assist.stores.redis_client import REDIS_UNAVAILABLE_ERRORS
from assist.stores.transcripts import StreamStatusStore

log = get_logger(__name__)
T = TypeVar("T")

#: Events received and not yet processed, over all consumers, before the sockets wait.
QUEUE_MAX_ITEMS = 10_000
FLUSH_INTERVAL_S = 1.0
#: At shutdown, events already received are processed for at most this long.
SHUTDOWN_DRAIN_S = 5.0


def build_api(services: Services) -> NotificationsApi:
    """The REST client, on the process's HTTP client, with sleeps that end at shutdown."""
    settings = services.settings
    stopping = threading.Event()
    http = ResilientHttp(
        services.http_client,
        max_attempts=settings.genesys_max_attempts,
        max_retry_after_s=settings.genesys_max_retry_after_s,
        sleep=NotificationsApi.interruptible_sleep(stopping),
    )
    tokens = TokenProvider(settings, http, services.redis)
    return NotificationsApi(http, tokens, settings.api_base_url, stopping=stopping)


class StreamProcess:
    """The stream process's loop: channels, the event consumer and the counters."""

    def __init__(
        self,
        services: Services,
        *,
        api: NotificationsApi | None = None,
        config: StreamConfig | None = None,
        ingestor: TranscriptIngestor | None = None,
    ) -> None:
        self.services = services
        self.settings = services.settings
        self.config = config or StreamConfig.from_settings(self.settings)
        self.ingestor = ingestor or TranscriptIngestor(services)
        self.status_store = StreamStatusStore(services.redis)
        self.stats: Counter[str] = Counter()
        consumers = self.settings.stream_consumers
        self._queues: list[asyncio.Queue[StreamItem]] = [
            asyncio.Queue(maxsize=max(QUEUE_MAX_ITEMS // consumers, 100)) for _ in range(consumers)
        ]
        self.client = NotificationsClient(api or build_api(services), self.config, self._put)
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._end_timers: dict[str, asyncio.Task[None]] = {}
        self._flushed: Counter[str] = Counter()
        self.started = threading.Event()

    # --- control (any thread) ---------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask the loop to shut down cleanly; safe from any thread and from signal handlers."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already ended
            loop.call_soon_threadsafe(self._stop.set)

    # --- main loop ---------------------------------------------------------------------------
    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        # asyncio's default pool has min(32, cores + 4) threads: fewer than the consumers on a
        # small machine, which would serialise them again.
        executor = ThreadPoolExecutor(
            max_workers=len(self._queues) + 4, thread_name_prefix="stream-io"
        )
        self._loop.set_default_executor(executor)
        for queue_id in self.settings.stream_queue_ids:
            self.client.subscribe(queue_conversations_topic(queue_id))
        consumers = [
            asyncio.create_task(self._consume(queue), name=f"stream-consumer-{index}")
            for index, queue in enumerate(self._queues)
        ]
        flusher = asyncio.create_task(self._flush_loop(), name="stream-flush")
        resume = asyncio.create_task(self._resume_followed(), name="stream-resume")
        log.info(
            "stream.started",
            queues=list(self.settings.stream_queue_ids),
            max_frame_bytes=self.config.max_frame_bytes,
            consumers=len(consumers),
        )
        self.started.set()
        try:
            await self.client.run(self._stop)
        finally:
            resume.cancel()
            for timer in self._end_timers.values():
                timer.cancel()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SHUTDOWN_DRAIN_S):
                    for queue in self._queues:
                        await queue.join()
            for task in (*consumers, flusher):
                task.cancel()
            for task in (resume, *consumers, flusher):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            with contextlib.suppress(Exception):
                await self._flush()
            log.info("stream.stopped", unprocessed=self.queued())

    def queued(self) -> int:
        """Events received and not yet taken by a consumer."""
        return sum(queue.qsize() for queue in self._queues)

    async def _put(self, item: StreamItem) -> None:
        await self._queues[self._consumer_of(item)].put(item)

    def _consumer_of(self, item: StreamItem) -> int:
        """The consumer of the item's conversation (the same for all its events)."""
        if isinstance(item, DroppedFrame):
            key = item.conversation_id or ""
        else:
            key = transcription_conversation_id(item.topic) or ""
            body = item.envelope.event_body
            if not key and isinstance(body, dict):  # a queue event names its conversation
                key = str(body.get("id") or "")
        return zlib.crc32(key.encode()) % len(self._queues)

    async def _resume_followed(self) -> None:
        """Resubscribe what a previous run followed (waits for Redis if it is down)."""
        followed = await self._blocking(self.ingestor.followed, what="resume")
        for conversation_id in followed:
            self._follow(conversation_id)
        if followed:
            log.info("stream.resumed", conversations=len(followed))

    async def _blocking(self, func: Callable[..., T], *args: Any, what: str) -> T:
        """Run blocking I/O in a thread, retrying while Redis is unreachable."""
        attempt = 0
        while True:
            try:
                return await asyncio.to_thread(func, *args)
            except REDIS_UNAVAILABLE_ERRORS as exc:
                if self._stop.is_set():
                    raise
                delay = backoff_delay(
                    attempt,
                    base_s=self.settings.stream_backoff_base_s,
                    max_s=self.settings.stream_backoff_max_s,
                )
                attempt += 1
                self.stats["errors.redis_unavailable"] += 1
                log.warning(
                    "stream.redis_unavailable",
                    step=what,
                    error=str(exc),
                    retry_in_s=round(delay, 3),
                )
                await asyncio.sleep(delay)

    # --- events ------------------------------------------------------------------------------
    async def _consume(self, queue: asyncio.Queue[StreamItem]) -> None:
        while True:
            item = await queue.get()
            try:
                await self._process(item)
            except asyncio.CancelledError:
                raise
            except REDIS_UNAVAILABLE_ERRORS as exc:  # only when stopping
                self.stats["errors.lost_at_shutdown"] += 1
                log.error("stream.event_lost", error=str(exc))
            except Exception as exc:
                self.stats["errors.processing"] += 1
                log.error(
                    "stream.processing_failed", error=f"{type(exc).__name__}: {exc}", exc_info=exc
                )
            finally:
                queue.task_done()

    async def _process(self, item: StreamItem) -> None:
        if isinstance(item, DroppedFrame):
            self._dropped(item.reason.value, item.conversation_id, item.detail, item.size)
            return
        topic = item.topic
        if transcription_conversation_id(topic) is not None:
            await self._transcription(item)
        elif is_suggestion_topic(topic):
            await self._insight(item)
        elif queue_id_of(topic) is not None:
            await self._queue_event(item)
        else:
            self.stats["events.other_topic"] += 1
            log.debug("stream.other_topic", topic=topic)

    async def _transcription(self, event: NotificationEvent) -> None:
        result = await self._blocking(
            self.ingestor.ingest_transcription,
            event.envelope,
            event.received_at,
            what="transcription",
        )
        self.stats.update(result.counts)
        for rejection in result.rejections:
            self._dropped(rejection.reason, result.conversation_id, rejection.detail, event.size)
        if result.session_ended and result.conversation_id:
            self._unfollow(result.conversation_id, "session_ended")

    async def _insight(self, event: NotificationEvent) -> None:
        outcome = await self._blocking(
            copilot.ingest,
            self.services,
            event.topic,
            event.envelope.event_body,
            event.received_at,
            what="insight",
        )
        self.stats.update(outcome.counts)
        if outcome.rejection is not None:
            self._dropped(
                f"insight_{outcome.rejection.reason}",
                outcome.conversation_id,
                str(outcome.rejection),
                event.size,
            )

    def _topics_of(self, conversation_id: str) -> list[str]:
        """The conversation's transcription topic, then its Copilot topics."""
        return [
            transcription_topic(conversation_id),
            *(
                f"v2.conversations.{conversation_id}.suggestions.{kind}"
                for kind in self.settings.copilot_topics
            ),
        ]

    def _follow(self, conversation_id: str) -> bool:
        subscribed = [self.client.subscribe(topic) for topic in self._topics_of(conversation_id)]
        return subscribed[0]

    async def _queue_event(self, event: NotificationEvent) -> None:
        discovery = await self._blocking(
            self.ingestor.ingest_queue_event, event.envelope, what="queue_event"
        )
        self.stats["events.queue"] += 1
        if discovery.rejection is not None:
            self._dropped(
                discovery.rejection.reason,
                discovery.conversation_id,
                discovery.rejection.detail,
                event.size,
            )
            return
        cid = discovery.conversation_id
        if cid is None:
            return
        topic = transcription_topic(cid)
        if discovery.follow and topic not in self.client.topics:
            if self._follow(cid):
                self.stats["conversations.followed"] += 1
                log.info("stream.following", conversation_id=cid, queue_id=discovery.queue_id)
        elif discovery.ended and topic in self.client.topics and cid not in self._end_timers:
            self._end_timers[cid] = asyncio.create_task(self._end_after_grace(cid))

    async def _end_after_grace(self, conversation_id: str) -> None:
        try:
            await asyncio.sleep(self.settings.stream_end_grace_s)
            await self._blocking(self.ingestor.close, conversation_id, what="close")
            self._unfollow(conversation_id, "queue_ended")
        finally:
            self._end_timers.pop(conversation_id, None)

    def _unfollow(self, conversation_id: str, reason: str) -> None:
        timer = self._end_timers.pop(conversation_id, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
        topic = transcription_topic(conversation_id)
        if topic in self.client.topics:
            for each in self._topics_of(conversation_id):
                if each in self.client.topics:
                    self.client.unsubscribe(each)
            self.stats["conversations.unfollowed"] += 1
            log.info("stream.unfollowed", conversation_id=conversation_id, reason=reason)

    def _dropped(self, reason: str, conversation_id: str | None, detail: str, size: int) -> None:
        self.stats[f"dropped.{reason}"] += 1
        # A duplicate from a renewal's overlap is expected, not bad input.
        level = log.debug if reason == DropReason.OVERLAP_DUPLICATE else log.warning
        level(
            "stream.frame_dropped",
            reason=reason,
            conversation_id=conversation_id,
            detail=detail or None,
            size=size,
        )

    # --- counters ----------------------------------------------------------------------------
    def counters(self) -> Counter[str]:
        """Everything counted so far in this process (not yet necessarily in Redis)."""
        total = Counter(self.stats)
        total.update({f"connection.{k}": v for k, v in self.client.stats.items()})
        return total

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            try:
                await self._flush()
            except Exception as exc:  # Redis down: the counts stay for the next flush
                log.debug("stream.flush_failed", error=str(exc))

    async def _flush(self) -> None:
        current = self.counters()
        delta = {name: value - self._flushed[name] for name, value in current.items()}
        status = {
            **self.client.status(),
            "pid": os.getpid(),
            "updated_at": round(time.time(), 3),
            "queued_events": self.queued(),
        }

        def write() -> None:
            self.status_store.add(delta)
            self.status_store.set_status(status)

        await asyncio.to_thread(write)
        self._flushed = current


async def serve(services: Services) -> None:
    """Run the stream process until SIGTERM or SIGINT."""
    process = StreamProcess(services)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, process.request_stop)
    try:
        await process.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    services = build_services(settings)
    try:
        asyncio.run(serve(services))
    finally:
        services.close()


if __name__ == "__main__":
    main()
