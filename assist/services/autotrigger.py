"""Auto-trigger rules: C1 queries that start from what the customer says, not from a click.

Two kinds of rule, from settings:

- every final customer utterance in one of `ASSIST_AUTOTRIGGER_QUEUE_IDS`;
- a keyword card in `ASSIST_AUTOTRIGGER_CARD_IDS` detected in the conversation (C3).

A triggered query uses the conversation's live transcript window (no transcript of its own)
and `ASSIST_AUTOTRIGGER_KNOWLEDGE_SOURCE_IDS`, and is debounced per conversation: at most one
in `ASSIST_AUTOTRIGGER_DEBOUNCE_S`, however many rules fire.
"""

from __future__ import annotations

from collections.abc import Iterable

from assist.bootstrap import Services
from assist.core.audit import EventType
from assist.core.transcripts import Speaker, Utterance
from assist.errors import FieldValidationError
from assist.logconfig import get_logger
from assist.services.suggestions import TriggerCommand, trigger

log = get_logger(__name__)


def on_final_utterance(services: Services, utterance: Utterance) -> str | None:
    """Apply the queue rule to a final customer utterance; returns a request id if triggered."""
    rules = services.settings.autotrigger_queue_ids
    if utterance.speaker is not Speaker.CUSTOMER or utterance.queue_id not in rules:
        return None
    return _trigger(services, utterance.conversation_id, f"queue:{utterance.queue_id}")


def on_cards_detected(
    services: Services, conversation_id: str, card_ids: Iterable[str]
) -> str | None:
    """Apply the keyword rule to the cards C3 just delivered; returns a request id if triggered."""
    wanted = set(services.settings.autotrigger_card_ids)
    matched = sorted(wanted.intersection(card_ids))
    if not matched:
        return None
    return _trigger(services, conversation_id, f"cards:{','.join(matched)}")


def _trigger(services: Services, conversation_id: str, reason: str) -> str | None:
    settings = services.settings
    if not settings.autotrigger_knowledge_source_ids:
        log.warning("autotrigger.no_knowledge_sources", conversation_id=conversation_id)
        return None
    if settings.autotrigger_debounce_s:
        debounce = services.redis.keys.autotrigger_debounce(conversation_id)
        if not services.redis.decoded.set(
            debounce, reason, nx=True, ex=settings.autotrigger_debounce_s
        ):
            return None
    try:
        result = trigger(
            services,
            TriggerCommand(
                conversation_id=conversation_id,
                knowledge_source_ids=tuple(settings.autotrigger_knowledge_source_ids[:10]),
            ),
        )
    except FieldValidationError:
        # No live transcript yet: nothing to ask about.
        log.info("autotrigger.no_transcript", conversation_id=conversation_id, reason=reason)
        return None
    services.recorder.record_for(result.request, EventType.AUTOTRIGGERED, reason=reason)
    return result.request.request_id
