"""Idempotency-Key records for `POST /v1/suggestions`.

A record holds the fingerprint of the first body sent with the key and the request id it
created. The same key with the same body returns the original request; with another body it
is a conflict. Keys are scoped to the caller (a digest of the desk token), so two desktops
cannot collide.
"""

from __future__ import annotations

import json

from pydantic import BaseModel
from redis.client import Pipeline

from assist.stores.redis_client import RedisConnections, decode


class IdempotencyRecord(BaseModel):
    fingerprint: str
    request_id: str


class IdempotencyStore:
    def __init__(self, redis: RedisConnections, *, ttl_s: int) -> None:
        self._keys = redis.keys
        self._ttl_s = ttl_s

    def key(self, scope: str, key_digest: str) -> str:
        return self._keys.idempotency(scope, key_digest)

    def read_in(self, pipe: Pipeline, key: str) -> IdempotencyRecord | None:
        raw = decode(pipe.get(key))
        return IdempotencyRecord.model_validate(json.loads(raw)) if raw else None

    def stage_save(self, pipe: Pipeline, key: str, record: IdempotencyRecord) -> None:
        pipe.set(key, record.model_dump_json(), ex=self._ttl_s)
