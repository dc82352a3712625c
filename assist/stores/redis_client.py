"""Redis connections and the one transaction helper.

Two clients share one URL: `decoded` (str replies) for our stores, `raw` (bytes) for RQ,
which needs undecoded replies. Writes that must land together with an RQ enqueue (a request
record and its submission job; a callback's dedup marker and its ranking job) go through
`transact` on the raw client, in one MULTI/EXEC under WATCH.
"""

from __future__ import annotations

from collections.abc import Callable
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

    def close(self) -> None:
        self.decoded.close()
        self.raw.close()
        self.blocking.close()


def decode(value: bytes | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.decode()
