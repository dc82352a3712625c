"""Synchronous knowledge providers, asked by the submit job: `local-kb` and `genesys-knowledge`.

`gather` searches the request's local knowledge bases (this server's indexes) and its Genesys
Cloud knowledge bases (the real documents search API), and returns their candidates for the
ranking, with one `knowledge_searched` record per provider. A provider that fails is recorded
and leaves the others alone; the caller decides what a request with no candidates and some
errors becomes.

`report_answer` tells Genesys which document of which search the agent accepted.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from assist.adapters.genesys.errors import GenesysCircuitOpenError, GenesysError
from assist.bootstrap import Services
from assist.core.audit import EventType, RecordEvent
from assist.core.models import Candidate, SuggestionRequest
from assist.core.retrieval import build_query, cut_at_word
from assist.logconfig import get_logger
from assist.services.local_kb import SNIPPET_CHARS
from assist.stores.knowledge import KnowledgeSearchRef, KnowledgeSearchStore

log = get_logger(__name__)

GENESYS_KNOWLEDGE = "genesys-knowledge"


@dataclass
class Gathered:
    candidates: list[Candidate] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: Whether every error is a Genesys "try later" one (rate limit, 5xx, network, open
    #: circuit), and the longest wait their servers or circuit breakers asked for.
    retryable: bool = True
    retry_in_s: float | None = None
    #: False once a Genesys knowledge call was sent (answered or not); True while every one
    #: was turned away by an open circuit before the network.
    nothing_sent: bool = True


def store_of(services: Services) -> KnowledgeSearchStore:
    return KnowledgeSearchStore(services.redis, ttl_s=services.settings.request_ttl_s)


def split_sources(
    services: Services, source_ids: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(local-kb, genesys-knowledge, async-query) knowledge source ids, in request order."""
    genesys = set(services.settings.genesys_knowledge_source_ids)
    local, rest = services.local_kb.split(source_ids)
    return local, tuple(s for s in rest if s in genesys), tuple(s for s in rest if s not in genesys)


def gather(
    services: Services,
    request: SuggestionRequest,
    local_ids: tuple[str, ...],
    genesys_ids: tuple[str, ...],
) -> Gathered:
    gathered = Gathered()
    if local_ids:
        _search_local(services, request, local_ids, gathered)
    if genesys_ids:
        _search_genesys(services, request, genesys_ids, gathered)
    return gathered


def _search_local(
    services: Services, request: SuggestionRequest, source_ids: tuple[str, ...], into: Gathered
) -> None:
    try:
        found = services.local_kb.search(source_ids, request.transcript, k=request.max_results)
    except Exception as exc:  # a broken model or index must not fail the other providers
        error = f"{type(exc).__name__}: {exc}"
        log.error("local_kb.search_failed", error=error, exc_info=exc)
        into.errors.append(f"local-kb: {error}")
        into.retryable = False
        services.recorder.record_for(
            request,
            EventType.KNOWLEDGE_SEARCHED,
            provider="local-kb",
            knowledge_source_ids=list(source_ids),
            error=error,
            hits=[],
        )
        return
    services.recorder.record_for(
        request,
        EventType.KNOWLEDGE_SEARCHED,
        knowledge_source_ids=list(source_ids),
        **found.record(),
    )
    into.candidates.extend(found.candidates)


def _query_text(transcript: str) -> str:
    """Genesys takes one query string: the weighted turns, most recent first, as plain text."""
    return " ".join(turn.text for turn in build_query(transcript))


def _search_genesys(
    services: Services, request: SuggestionRequest, source_ids: tuple[str, ...], into: Gathered
) -> None:
    settings = services.settings
    query = _query_text(request.transcript)
    remembered: dict[str, KnowledgeSearchRef] = {}
    for kb_id in source_ids:
        hits: list[dict[str, object]] = []
        error: str | None = None
        search_id: str | None = None
        if query:
            try:
                result = services.knowledge.search(
                    kb_id,
                    query=query,
                    conversation_id=request.conversation_id,
                    page_size=request.max_results,
                    confidence_threshold=settings.genesys_knowledge_confidence_threshold,
                )
            except GenesysError as exc:
                error = f"{type(exc).__name__}: {exc}"
                into.errors.append(f"{GENESYS_KNOWLEDGE} {kb_id}: {exc}")
                into.retryable = into.retryable and exc.retryable
                if exc.retry_in_s is not None:
                    into.retry_in_s = max(into.retry_in_s or 0.0, exc.retry_in_s)
                if not (isinstance(exc, GenesysCircuitOpenError) and exc.nothing_sent):
                    into.nothing_sent = False
                log.warning("genesys_knowledge.search_failed", knowledge_base_id=kb_id, error=error)
            else:
                into.nothing_sent = False
                search_id = result.search_id
                for item in result.results:
                    document = item.document
                    text = html.unescape(document.text())
                    into.candidates.append(
                        Candidate(
                            id=document.id,
                            title=document.title or document.id,
                            content=cut_at_word(text, SNIPPET_CHARS),
                            confidence=item.confidence,
                            knowledge_source_id=kb_id,
                            tags=document.label_names(),
                            source=GENESYS_KNOWLEDGE,
                            url=document.external_url,
                        )
                    )
                    hits.append({"id": document.id, "score": item.confidence})
                    if search_id:
                        remembered[document.id] = KnowledgeSearchRef(
                            knowledge_base_id=kb_id, search_id=search_id
                        )
        services.recorder.record_for(
            request,
            EventType.KNOWLEDGE_SEARCHED,
            provider=GENESYS_KNOWLEDGE,
            knowledge_source_ids=[kb_id],
            search_id=search_id,
            hits=hits,
            empty_query=not query,
            error=error,
        )
    store_of(services).remember(request.conversation_id, remembered)


def report_answer(services: Services, conversation_id: str, document_id: str) -> bool:
    """PATCH the search that found `document_id` as answered by it; False if none is known.

    Raises `GenesysError` on a failure, so the job that calls it is retried.
    """
    ref = store_of(services).lookup(conversation_id, document_id)
    if ref is None:
        log.info("genesys_knowledge.no_search", document_id=document_id)
        return False
    services.knowledge.record_answer(ref.knowledge_base_id, ref.search_id, document_id)
    services.recorder.record(
        RecordEvent.create(
            EventType.KNOWLEDGE_ANSWER_REPORTED,
            conversation_id=conversation_id,
            provider=GENESYS_KNOWLEDGE,
            knowledge_source_ids=[ref.knowledge_base_id],
            search_id=ref.search_id,
            suggestion_id=document_id,
        )
    )
    return True


__all__ = ["GENESYS_KNOWLEDGE", "Gathered", "gather", "report_answer", "split_sources"]
