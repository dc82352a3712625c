"""Helpers the fault scenarios share: polling with a bound, reading what the system stored."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any, TypeVar

import redis

from assist.stores.keys import Keys
from tests.processes import ProcessSystem

T = TypeVar("T")
KEYS = Keys("assist:v1")  # the default ASSIST_KEY_PREFIX, which ProcessSystem keeps
QUEUE = "assist"  # the default ASSIST_QUEUE_NAME


def audit_records(system: ProcessSystem, event_type: str | None = None) -> list[dict[str, Any]]:
    if not system.audit_path.exists():
        return []
    records = [json.loads(line) for line in system.audit_path.read_text().splitlines()]
    return [r for r in records if event_type is None or r["type"] == event_type]


def per_request(records: Iterable[dict[str, Any]]) -> Counter[str]:
    return Counter(r["request_id"] for r in records if r.get("request_id"))


def request_statuses(client: redis.Redis, request_ids: list[str]) -> dict[str, str | None]:
    """Each request's stored status (None: not stored), read straight from Redis."""
    statuses: dict[str, str | None] = {}
    for start in range(0, len(request_ids), 500):
        chunk = request_ids[start : start + 500]
        values = client.mget([KEYS.request(r) for r in chunk])
        for request_id, raw in zip(chunk, values, strict=True):
            statuses[request_id] = json.loads(raw)["status"] if raw else None
    return statuses


def feed_lengths(client: redis.Redis, conversation_ids: Iterable[str]) -> dict[str, int]:
    """Entries on each conversation's live feed (one per delivered ranking)."""
    with client.pipeline(transaction=False) as pipe:
        ids = list(conversation_ids)
        for conversation_id in ids:
            pipe.xlen(KEYS.conversation_feed(conversation_id))
        return dict(zip(ids, pipe.execute(), strict=True))


def rq_worker_of_pid(client: redis.Redis, pid: int) -> dict[str, str] | None:
    """The RQ worker hash (`rq:worker:<name>`) of the worker process `pid`."""
    for key in client.smembers(f"rq:workers:{QUEUE}"):
        fields: dict[str, str] = client.hgetall(key)
        if fields.get("pid") == str(pid):
            return fields
    return None


def job_status(client: redis.Redis, job_id: str) -> str | None:
    status = client.hget(f"rq:job:{job_id}", "status")
    return str(status) if status is not None else None
