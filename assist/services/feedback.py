"""Agent feedback on suggestions: counted for ranking, recorded for audit and analytics."""

from __future__ import annotations

from dataclasses import dataclass

from rq import Retry

from assist.bootstrap import Services
from assist.core.audit import EventType, RecordEvent
from assist.core.models import FeedbackAction, Rating, elapsed_ms, utcnow
from assist.errors import NotFoundError
from assist.services.copilot import copilot_suggestion_ids, engagement_of
from assist.services.knowledge import GENESYS_KNOWLEDGE


@dataclass(frozen=True)
class FeedbackCommand:
    conversation_id: str
    suggestion_id: str
    agent_id: str
    action: FeedbackAction
    rating: Rating | None = None
    request_id: str | None = None


def record_feedback(services: Services, command: FeedbackCommand) -> bool:
    """Count the action against the suggestion; returns whether the ranking inputs changed.

    Feedback is only taken for a suggestion that this server delivered in that conversation,
    so a typo in an id cannot silently train the ranking.
    """
    request = None
    if command.request_id is not None:
        request = services.requests.get(command.request_id)
        if request is None or request.conversation_id != command.conversation_id:
            raise NotFoundError(
                f"unknown request id {command.request_id!r} for this conversation",
                code="unknown_request",
            )
    suggestion = services.conversations.suggestion(command.conversation_id, command.suggestion_id)
    if suggestion is None:
        raise NotFoundError(
            f"suggestion {command.suggestion_id!r} was not delivered in conversation "
            f"{command.conversation_id!r}",
            code="unknown_suggestion",
        )
    changed = services.feedback.record(
        command.conversation_id, command.suggestion_id, command.action
    )
    _report_to_copilot(services, command, [suggestion.id, *suggestion.merged_ids])
    if (
        changed
        and command.action is FeedbackAction.ACCEPTED
        and GENESYS_KNOWLEDGE in suggestion.sources
    ):
        # Genesys learns which result of its search the agent used (PATCH …/search/{id}).
        services.background.enqueue(
            "report_knowledge_answer",
            command.conversation_id,
            command.suggestion_id,
            retry=Retry(max=3, interval=[2, 10, 60]),
        )
    services.recorder.record(
        RecordEvent.create(
            EventType.FEEDBACK_RECORDED,
            request_id=command.request_id,
            conversation_id=command.conversation_id,
            agent_id=command.agent_id,
            suggestion_id=command.suggestion_id,
            action=command.action.value,
            rating=command.rating.value if command.rating else None,
            counted=changed,
            # What the dashboard groups by, captured now (the suggestion may change later).
            title=suggestion.title,
            knowledge_source_ids=list(suggestion.knowledge_source_ids),
            agent_skills=list(request.agent_skills) if request else [],
            latency_ms=elapsed_ms(request.created_at, utcnow()) if request else None,
        )
    )
    return changed


def _report_to_copilot(services: Services, command: FeedbackCommand, ids: list[str]) -> None:
    """Engagements on Copilot suggestions go back to Genesys (opened, copied, dismissed, rated)."""
    engagement = engagement_of(command.action, command.rating)
    if engagement is None or not services.settings.copilot_topics:
        return
    for suggestion_id in copilot_suggestion_ids(services, command.conversation_id, ids):
        services.background.enqueue(
            "report_copilot_engagement",
            command.conversation_id,
            suggestion_id,
            engagement,
            retry=Retry(max=3, interval=[2, 10, 60]),
        )
