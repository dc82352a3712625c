"""Request rate limits shared by every web process, counted in Redis by the `limits` library.

Strategy: `limits`' moving window ("at most N requests in any W seconds"), exact, with a
Redis list per counter under `Keys.rate_limits()`. A refused request is not counted, and the
time until the oldest counted request leaves the window is the exact `Retry-After`.

Each request is checked against the agent's limits first, then the client address's: the
requests of one agent over its limit are refused before they reach the address counter, so a
runaway desk does not use up the budget of every desk behind the same NAT address. The
counters go through the app's own Redis pool, so an outage raises redis-py's connection
errors like any other store (the API answers 503 with `Retry-After`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from limits import RateLimitItem
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from assist.settings import Settings, rate_limit_items
from assist.stores.redis_client import RedisConnections

AGENT = "agent"
ADDRESS = "ip"


@dataclass(frozen=True)
class LimitExceeded:
    scope: str  # AGENT or ADDRESS
    limit: str  # e.g. "60 per 1 minute"
    retry_after_s: int


class RateLimits:
    def __init__(
        self,
        redis: RedisConnections,
        *,
        redis_url: str,
        agent: Sequence[RateLimitItem],
        address: Sequence[RateLimitItem],
    ) -> None:
        self._redis = redis.decoded
        self._counters_key = redis.keys.rate_limited_counters()
        storage = RedisStorage(
            redis_url,
            connection_pool=redis.decoded.connection_pool,
            key_prefix=redis.keys.rate_limits(),
        )
        self._limiter = MovingWindowRateLimiter(storage)
        self._limits = {AGENT: tuple(agent), ADDRESS: tuple(address)}
        self._namespaced: dict[tuple[str, str], tuple[RateLimitItem, ...]] = {}

    @classmethod
    def from_settings(cls, settings: Settings, redis: RedisConnections) -> RateLimits:
        return cls(
            redis,
            redis_url=settings.redis_url,
            agent=rate_limit_items(settings.rate_limit_agent),
            address=rate_limit_items(settings.rate_limit_ip),
        )

    @property
    def enabled(self) -> bool:
        return any(self._limits.values())

    def _items(self, endpoint: str, scope: str) -> tuple[RateLimitItem, ...]:
        """The scope's limits in the endpoint's namespace (the first part of their keys)."""
        cached = self._namespaced.get((endpoint, scope))
        if cached is None:
            cached = tuple(
                type(item)(item.amount, item.multiples, namespace=endpoint)
                for item in self._limits[scope]
            )
            self._namespaced[(endpoint, scope)] = cached
        return cached

    def hit(self, endpoint: str, *, agent: Sequence[str], address: str) -> LimitExceeded | None:
        """Count one request to `endpoint`; the first limit it exceeds, or None if allowed.

        `agent` is the parts that identify the agent desk, `address` the client address.
        """
        for scope, identity in ((AGENT, tuple(agent)), (ADDRESS, (address,))):
            for item in self._items(endpoint, scope):
                if self._limiter.hit(item, scope, *identity):
                    continue
                reset_at = self._limiter.get_window_stats(item, scope, *identity).reset_time
                self._redis.hincrby(self._counters_key, f"{endpoint}.{scope}", 1)
                return LimitExceeded(
                    scope=scope,
                    limit=str(item),
                    retry_after_s=max(1, math.ceil(reset_at - time.time())),
                )
        return None


def refused_counts(redis: RedisConnections) -> dict[str, int]:
    """Requests refused so far, by `<endpoint>.<scope>` (every process, all time)."""
    counts = redis.decoded.hgetall(redis.keys.rate_limited_counters())
    return {str(name): int(value) for name, value in counts.items()}
