"""Suggestion requests in Redis: one JSON value per request, with a TTL.

Updates are compare-and-set under WATCH so the submission job, the callback receiver, the
ranking job and the expiry job never overwrite each other's state transitions.
"""

from __future__ import annotations

from collections.abc import Callable

from redis.client import Pipeline

from assist.core.models import SuggestionRequest
from assist.stores.redis_client import RedisConnections


class RequestStore:
    def __init__(self, redis: RedisConnections, ttl_s: int) -> None:
        self._redis = redis
        self._keys = redis.keys
        self._ttl_s = ttl_s

    def get(self, request_id: str) -> SuggestionRequest | None:
        raw = self._redis.decoded.get(self._keys.request(request_id))
        return SuggestionRequest.model_validate_json(raw) if raw else None

    def read_in(self, pipe: Pipeline, request_id: str) -> SuggestionRequest | None:
        """Read through a WATCHing pipeline (immediate mode)."""
        return self.parse(pipe.get(self._keys.request(request_id)))

    @staticmethod
    def parse(raw: bytes | str | None) -> SuggestionRequest | None:
        """A request from the value of its key (as read by `read_in`, or with other reads)."""
        return SuggestionRequest.model_validate_json(raw) if raw else None

    def stage_save(self, pipe: Pipeline, request: SuggestionRequest) -> None:
        pipe.set(self._keys.request(request.request_id), request.model_dump_json(), ex=self._ttl_s)

    def stage_bind_provider(
        self, pipe: Pipeline, provider_request_id: str, request_id: str
    ) -> None:
        pipe.set(self._keys.provider_request(provider_request_id), request_id, ex=self._ttl_s)

    def resolve_provider(self, provider_request_id: str) -> str | None:
        value = self._redis.decoded.get(self._keys.provider_request(provider_request_id))
        return str(value) if value is not None else None

    def update(
        self,
        request_id: str,
        change: Callable[[SuggestionRequest], SuggestionRequest | None],
        *,
        extra: Callable[[Pipeline, SuggestionRequest], None] | None = None,
    ) -> SuggestionRequest | None:
        """Apply `change` atomically; `None` from `change` means "leave it as it is".

        `extra` may queue more writes into the same transaction. Returns the new request, or
        `None` when the request is missing or `change` declined.
        """

        def body(pipe: Pipeline) -> SuggestionRequest | None:
            current = self.read_in(pipe, request_id)
            updated = change(current) if current is not None else None
            if updated is None:
                return None
            pipe.multi()
            self.stage_save(pipe, updated)
            if extra is not None:
                extra(pipe, updated)
            return updated

        return self._redis.transact([self._keys.request(request_id)], body)
