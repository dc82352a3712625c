"""Which Genesys knowledge search found each document shown in a conversation.

When the agent accepts a `genesys-knowledge` suggestion, Genesys wants to hear which result of
which search was used (`PATCH …/documents/search/{searchId}`); the search id is remembered
here, per conversation, when the results are gathered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from assist.stores.redis_client import RedisConnections


class KnowledgeSearchRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    knowledge_base_id: str
    search_id: str


class KnowledgeSearchStore:
    def __init__(self, redis: RedisConnections, *, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s

    def remember(self, conversation_id: str, found: Mapping[str, KnowledgeSearchRef]) -> None:
        """Document id -> the search that found it (a later search of the same id wins)."""
        if not found:
            return
        key = self._redis.keys.knowledge_searches(conversation_id)
        with self._redis.decoded.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={doc: ref.model_dump_json() for doc, ref in found.items()})
            pipe.expire(key, self._ttl_s)
            pipe.execute()

    def lookup(self, conversation_id: str, document_id: str) -> KnowledgeSearchRef | None:
        raw = self._redis.decoded.hget(
            self._redis.keys.knowledge_searches(conversation_id), document_id
        )
        if raw is None:
            return None
        return KnowledgeSearchRef.model_validate(json.loads(raw))
