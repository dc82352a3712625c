"""RQ job functions. Each is a few lines: get the process's services, call one service function.

Jobs are enqueued by dotted path (`workers.jobs.<name>`) with JSON arguments.
"""

from __future__ import annotations

from typing import Any

from assist.services import (
    analytics,
    copilot,
    keywords,
    knowledge,
    results_webhook,
    suggestions,
    utterance_sync,
)
from workers.runtime import job, services


@job
def submit_query(request_id: str, attempt: int = 1, run: int = 1) -> str | None:
    request = suggestions.submit_query(services(), request_id, attempt, run)
    return request.status.value if request else None


@job
def rank_callback(request_id: str, payload: dict[str, Any], received_at: str) -> str | None:
    request = suggestions.rank_callback(services(), request_id, payload, received_at)
    return request.status.value if request else None


@job
def write_callback_records() -> int:
    """Write the `callback_received` records the callback script staged."""
    return suggestions.write_callback_records(services())


@job
def expire_request(request_id: str) -> str | None:
    request = suggestions.expire_request(services(), request_id)
    return request.status.value if request else None


@job
def deliver_analytics() -> int:
    return analytics.deliver_pending(services())


@job
def sync_utterance(payload: dict[str, Any]) -> None:
    utterance_sync.deliver(services(), payload)


def utterance_sync_failed(job: Any, connection: Any, exc_type: Any, exc: Any, tb: Any) -> None:
    """RQ failure callback: dead-letter the delivery once its last attempt has failed."""
    if job.retries_left:
        return
    utterance_sync.dead_letter(services(), job.args[0], f"{exc_type.__name__}: {exc}")


@job
def deliver_results(request_id: str) -> bool:
    """The optional results webhook: POST a request's ranked results."""
    return results_webhook.deliver(services(), request_id)


def results_delivery_failed(job: Any, connection: Any, exc_type: Any, exc: Any, tb: Any) -> None:
    """RQ failure callback: record the failure once the last attempt has failed."""
    if job.retries_left:
        return
    results_webhook.dead_letter(services(), job.args[0], f"{exc_type.__name__}: {exc}")


@job
def report_knowledge_answer(conversation_id: str, document_id: str) -> bool:
    """Tell Genesys which knowledge search result the agent accepted."""
    return knowledge.report_answer(services(), conversation_id, document_id)


@job
def process_insight(insight: dict[str, Any], received_at: str) -> bool:
    """C5: score, rank and deliver one Copilot insight."""
    return copilot.process(services(), insight, received_at)


@job
def sync_insight(payload: dict[str, Any]) -> None:
    """C5: deliver one processed insight to the training platform."""
    copilot.sync_training(services(), payload)


def insight_sync_failed(job: Any, connection: Any, exc_type: Any, exc: Any, tb: Any) -> None:
    """RQ failure callback: dead-letter the insight once its last attempt has failed."""
    if job.retries_left:
        return
    copilot.sync_dead_letter(services(), job.args[0], f"{exc_type.__name__}: {exc}")


@job
def report_copilot_engagement(
    conversation_id: str, suggestion_id: str, engagement: dict[str, Any]
) -> None:
    """C5: tell Genesys what the agent did with a Copilot suggestion."""
    copilot.report_engagement(services(), conversation_id, suggestion_id, engagement)


@job
def analyse_utterances(conversation_id: str) -> int:
    """C3: analyse a conversation's buffered customer fragments; returns cards delivered."""
    return len(keywords.analyse_utterances(services(), conversation_id))
