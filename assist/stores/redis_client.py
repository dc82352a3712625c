"""Redis connections and the one transaction helper.

Two clients share one URL: `decoded` (str replies) for our stores, `raw` (bytes) for RQ,
which needs undecoded replies. Writes that must land together with an RQ enqueue (a request
record and its submission job; a callback's dedup marker and its ranking job) go through
`transact` on the raw client, in one MULTI/EXEC under WATCH.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from redis.client import Pipeline

from assist.settings import Settings
from assist.stores.keys import Keys

T = TypeVar("T")

# What "Redis is unreachable" looks like from redis-py; the web layer answers 503 for these.
# OutOfMemoryError: a full Redis with `maxmemory-policy noeviction` (config/redis.conf)
# refuses writes; nothing was stored, so the caller is told to retry, as for an outage.
REDIS_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
)


@dataclass(frozen=True)
class RedisConnections:
    decoded: redis.Redis
    raw: redis.Redis
    keys: Keys
    # For blocking reads (the live feed's XREAD BLOCK), whose socket timeout must outlast
    # the block; everything else keeps the short timeout that turns an outage into a 503.
    blocking: redis.Redis

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisConnections:
        def client(max_connections: int, socket_timeout: float, **options: Any) -> redis.Redis:
            # A blocking pool makes a caller wait (cooperatively, under gevent) for a free
            # connection instead of failing at redis-py's default cap of 100.
            pool = redis.BlockingConnectionPool.from_url(
                settings.redis_url,
                max_connections=max_connections,
                timeout=settings.redis_socket_timeout_s,
                socket_timeout=socket_timeout,
                socket_connect_timeout=settings.redis_socket_timeout_s,
                health_check_interval=30,
                **options,
            )
            return redis.Redis(connection_pool=pool)

        short = settings.redis_socket_timeout_s
        size = settings.redis_max_connections
        return cls(
            decoded=client(size, short, decode_responses=True),
            raw=client(size, short),
            keys=Keys(settings.key_prefix),
            blocking=client(
                settings.feed_max_open,
                settings.feed_keepalive_s + short + 5,
                decode_responses=True,
            ),
        )

    def transact(self, watch: list[str], body: Callable[[Pipeline], T]) -> T:
        """Run `body` under WATCH; it reads through the pipeline, calls `multi()`, queues writes.

        Retried from the start when a watched key changes before EXEC, so `body` must be
        free of side effects outside Redis.
        """
        with self.raw.pipeline() as pipe:
            while True:
                try:
                    if watch:
                        pipe.watch(*watch)  # type: ignore[no-untyped-call]
                    result = body(pipe)
                    if pipe.explicit_transaction:
                        pipe.execute()
                    else:
                        pipe.reset()
                    return result
                except redis.WatchError:
                    continue

    @staticmethod
    def watch_and_read(
        pipe: Pipeline, watch: Sequence[str], reads: Sequence[tuple[Any, ...]]
    ) -> list[Any]:
        """In `transact`'s body: WATCH `watch`, then run the `reads` (commands as tuples,
        e.g. `("GET", key)`), all in one round trip; returns the reads' replies.

        redis-py sends each command of a WATCHing pipeline alone (one round trip each); this
        writes them together on the pipeline's connection and reads the replies in order, so
        the keys are watched before they are read, as with `pipe.watch` then `pipe.get`. May
        be called again (Redis adds to the watched keys until MULTI). A connection error
        disconnects the connection and is raised (the watch went with it); `transact`'s retry
        on `WatchError` does not apply. Reply errors are raised after every reply is read.
        """
        commands: list[tuple[Any, ...]] = [("WATCH", *watch), *reads] if watch else [*reads]
        connection = pipe.connection
        if connection is None:
            connection = pipe.connection_pool.get_connection()
            pipe.connection = connection  # `reset` (end of `transact`) releases it
        replies: list[Any] = []
        error: redis.ResponseError | None = None
        try:
            connection.send_packed_command(connection.pack_commands(commands))  # type: ignore[no-untyped-call]
            for command in commands:
                try:
                    # Applies the client's reply callbacks (HGETALL -> dict, ...) and marks
                    # the pipeline as watching after WATCH, as an immediate command would.
                    replies.append(pipe.parse_response(connection, command[0]))  # type: ignore[no-untyped-call]
                except redis.ResponseError as exc:
                    error = error or exc
                    replies.append(None)
        except BaseException:
            connection.disconnect()  # type: ignore[no-untyped-call]
            pipe.watching = False
            raise
        if error is not None:
            raise error
        return replies[1:] if watch else replies

    def close(self) -> None:
        self.decoded.close()
        self.raw.close()
        self.blocking.close()


def decode(value: bytes | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.decode()
