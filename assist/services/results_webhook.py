"""Optional outbound results webhook (DESIGN.md §5): ranked results POSTed to a results URL.

With `ASSIST_RESULTS_WEBHOOK_URL` set, every completed request with suggestions is also
delivered there by a `deliver_results` job, enqueued in the same Redis transaction that stores
the ranking (so an acknowledged ranking is never left undelivered). The body is the request's
id, conversation, status and ranked suggestions; the `Idempotency-Key` header is the request
id, so a receiver can drop a retried delivery.

Answers:

- 2xx (204 expected): delivered; a `results_delivered` record.
- 429: `Retry-After` is honoured by the Genesys HTTP client (bounded attempts); still 429
  after that, the job fails and RQ retries it later.
- 401: the shared OAuth token is dropped and a new one fetched, once, by `TokenProvider.send`;
  a second 401 is a refusal like 403.
- 403 (and any other 4xx): given up at once, no retry: a `results_delivery_failed` record.
- 5xx or a transport error: the job fails and RQ retries it; after
  `ASSIST_RESULTS_WEBHOOK_ATTEMPTS` attempts it stays in RQ's failed registry and a
  `results_delivery_failed` record is written.
"""

from __future__ import annotations

from typing import Any

from redis.client import Pipeline

from assist.adapters.genesys.circuit import RESULTS_WEBHOOK
from assist.adapters.genesys.errors import GenesysError
from assist.adapters.queue import attempts_retry
from assist.bootstrap import Services
from assist.core.audit import EventType
from assist.core.models import SuggestionRequest, elapsed_ms, utcnow
from assist.logconfig import get_logger

log = get_logger(__name__)

JOB = "deliver_results"
RETRY_INTERVALS_S = [2, 10, 60, 300, 900, 1800]


class ResultsDeliveryError(Exception):
    """Worth another attempt later (5xx, 429 after its retries, network)."""


def stage_delivery(services: Services, pipe: Pipeline, request: SuggestionRequest) -> None:
    """Queue the delivery job on the caller's transaction (after `multi()`); no-op when off."""
    settings = services.settings
    if not settings.results_webhook_url or not request.suggestions:
        return
    retry = attempts_retry(settings.results_webhook_attempts, RETRY_INTERVALS_S)
    services.background.enqueue(
        JOB,
        request.request_id,
        job_id=f"results-{request.request_id}",
        retry=retry,
        pipeline=pipe,
        on_failure="results_delivery_failed",
    )


def payload_of(request: SuggestionRequest) -> dict[str, Any]:
    return {
        "request_id": request.request_id,
        "conversation_id": request.conversation_id,
        "agent_id": request.agent_id,
        "status": request.status.value,
        "completed_at": request.completed_at.isoformat() if request.completed_at else None,
        "suggestions": [s.model_dump(mode="json") for s in request.suggestions],
    }


def deliver(services: Services, request_id: str) -> bool:
    """POST the request's ranked results; False when given up (4xx) or nothing to send."""
    request = services.requests.get(request_id)
    if request is None or not request.suggestions:
        log.info("results.nothing_to_deliver", request_id=request_id)
        return False
    url = services.settings.results_webhook_url
    try:
        response = services.tokens.send(
            "POST",
            url,
            circuit=RESULTS_WEBHOOK,
            json=payload_of(request),
            headers={"Idempotency-Key": request_id},
        )
    except GenesysError as exc:  # transport errors, Retry-After beyond the cap, circuit open
        raise ResultsDeliveryError(f"results webhook: {exc}") from exc
    status = response.status_code
    if 200 <= status < 300:
        services.recorder.record_for(
            request,
            EventType.RESULTS_DELIVERED,
            status_code=status,
            suggestion_ids=[s.id for s in request.suggestions],
            latency_ms=elapsed_ms(request.completed_at or request.created_at, utcnow()),
        )
        return True
    if status == 429 or status >= 500:
        raise ResultsDeliveryError(f"results webhook answered {status}")
    # 401 after a token refresh, 403, other 4xx: the receiver refuses; retrying cannot help.
    services.recorder.record_for(
        request,
        EventType.RESULTS_DELIVERY_FAILED,
        status_code=status,
        error=f"results webhook answered {status}; given up",
        retryable=False,
    )
    log.warning("results.given_up", request_id=request_id, status_code=status)
    return False


def dead_letter(services: Services, request_id: str, error: str) -> None:
    """After the last attempt: record the failure (the job stays in RQ's failed registry)."""
    request = services.requests.get(request_id)
    if request is None:
        return
    services.recorder.record_for(
        request,
        EventType.RESULTS_DELIVERY_FAILED,
        error=error,
        retryable=True,
        attempts=services.settings.results_webhook_attempts,
    )


__all__ = ["JOB", "ResultsDeliveryError", "dead_letter", "deliver", "payload_of", "stage_delivery"]
