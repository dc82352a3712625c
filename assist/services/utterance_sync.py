"""Final utterances sent to a knowledge-engine webhook, signed, retried, never blocking the stream.

Each final utterance (text already redacted) is enqueued as a `sync_utterance` job; the
stream process only writes to Redis. The job POSTs it signed with Standard Webhooks
(`webhook-id` is stable per utterance, so the receiver can deduplicate retries). A failure is
retried by RQ with back-off; after `ASSIST_UTTERANCE_WEBHOOK_ATTEMPTS` attempts the delivery
is dead-lettered: it stays in RQ's failed-job registry, is listed (capped) under the
dead-letter key for operators, and an `utterance_sync_failed` record is written.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from assist.adapters.queue import attempts_retry
from assist.adapters.signed_webhook import WebhookDeliveryError, post_signed
from assist.bootstrap import Services
from assist.core.audit import EventType, RecordEvent
from assist.core.transcripts import Utterance
from assist.security import digest

RETRY_INTERVALS_S = [1, 5, 30, 120, 600, 1800]
DEAD_LETTERS_KEPT = 1000


class UtteranceSyncError(Exception):
    """The webhook did not take the utterance; the job raises it so RQ retries."""


def message_id(payload: dict[str, Any]) -> str:
    key = f"{payload['conversation_id']}|{payload['utterance_id']}"
    return f"utt_{digest(key)}"


def enqueue_sync(services: Services, utterance: Utterance) -> str | None:
    settings = services.settings
    if not settings.utterance_webhook_url:
        return None
    retry = attempts_retry(settings.utterance_webhook_attempts, RETRY_INTERVALS_S)
    return services.background.enqueue(
        "sync_utterance",
        utterance.model_dump(mode="json"),
        retry=retry,
        on_failure="utterance_sync_failed",
    )


def deliver(services: Services, payload: dict[str, Any]) -> None:
    settings = services.settings
    try:
        post_signed(
            services.http_client,
            settings.utterance_webhook_url,
            secret=settings.utterance_webhook_secret.get_secret_value(),
            message_id=message_id(payload),
            payload={"type": "utterance.final", "utterance": payload},
        )
    except WebhookDeliveryError as exc:
        raise UtteranceSyncError(f"utterance webhook: {exc}") from exc
    services.recorder.record(
        RecordEvent.create(
            EventType.UTTERANCE_SYNCED,
            conversation_id=payload.get("conversation_id"),
            utterance_id=payload.get("utterance_id"),
            latency_ms=_since_received(payload),
        )
    )


def dead_letter(services: Services, payload: dict[str, Any], error: str) -> None:
    """Called after the last failed attempt."""
    entry = {
        "message_id": message_id(payload),
        "conversation_id": payload.get("conversation_id"),
        "utterance_id": payload.get("utterance_id"),
        "error": error,
        "failed_at": datetime.now(UTC).isoformat(),
    }
    key = services.redis.keys.utterance_dead_letters()
    with services.redis.decoded.pipeline(transaction=True) as pipe:
        pipe.lpush(key, json.dumps(entry))
        pipe.ltrim(key, 0, DEAD_LETTERS_KEPT - 1)
        pipe.execute()
    services.recorder.record(
        RecordEvent.create(
            EventType.UTTERANCE_SYNC_FAILED,
            conversation_id=payload.get("conversation_id"),
            utterance_id=payload.get("utterance_id"),
            error=error,
        )
    )


def _since_received(payload: dict[str, Any]) -> int | None:
    received = payload.get("received_at")
    if not received:
        return None
    return int((time.time() - datetime.fromisoformat(received).timestamp()) * 1000)
