"""Genesys Cloud Knowledge search, the `genesys-knowledge` provider (DESIGN.md §5, real API).

- `POST /api/v2/knowledge/knowledgebases/{knowledgeBaseId}/documents/search
  ?expand=documentVariations` with a `KnowledgeDocumentSearchRequest`: `query`, `pageSize`,
  `queryType: "AutoSearch"` (the search is triggered by the system, not typed by the agent),
  `conversationContext {conversationId}` and `confidenceThreshold`. The answer, a
  `KnowledgeDocumentSearch`, has a `searchId` and `results[] {confidence, document {id,
  title, externalUrl, variations[].body.blocks, answer}}`.
- `PATCH …/documents/search/{searchId}` with a `SearchUpdateRequest` `{answered: true,
  selectedAnswer: {document: {id}}}` records which result the agent used.

Both go through the shared OAuth token (a 401 fetches a new one once), the retry rules of
every Genesys call (`ResilientHttp`: 429/502/503/504, `Retry-After`) and a circuit breaker
each (`genesys-knowledge-search`, `genesys-knowledge-answer`). Errors are
`GenesysError`s; unknown response fields are ignored.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from assist.adapters.genesys.auth import TokenProvider
from assist.adapters.genesys.circuit import KNOWLEDGE_ANSWER, KNOWLEDGE_SEARCH
from assist.adapters.genesys.errors import GenesysApiError, raise_for_status

SEARCH_PATH = "/api/v2/knowledge/knowledgebases/{kb}/documents/search"
#: Genesys returns at most 30 results per query.
MAX_PAGE_SIZE = 30
#: Genesys caps the query text; longer transcripts keep their most recent part.
MAX_QUERY_CHARS = 1000


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class KnowledgeDocument(_Lenient):
    id: str = Field(min_length=1, max_length=200)
    title: str = Field(default="", max_length=2000)
    external_url: str | None = Field(default=None, alias="externalUrl")
    answer: str | None = None
    variations: list[dict[str, Any]] = Field(default_factory=list)
    labels: list[dict[str, Any]] = Field(default_factory=list)

    def text(self) -> str:
        """The answer, else the text of the first variation's body blocks."""
        if self.answer:
            return self.answer
        pieces: list[str] = []
        for variation in self.variations[:1]:
            _collect_text(variation.get("body"), pieces)
        return " ".join(" ".join(pieces).split())

    def label_names(self) -> tuple[str, ...]:
        return tuple(
            str(label["name"]).lower()
            for label in self.labels
            if isinstance(label.get("name"), str)
        )


def _collect_text(node: Any, pieces: list[str]) -> None:
    """Walk the nested `blocks` of a document body and gather its `text.text` values."""
    if isinstance(node, dict):
        text = node.get("text")
        if isinstance(text, dict) and isinstance(text.get("text"), str):
            pieces.append(text["text"])
        for value in node.values():
            if isinstance(value, dict | list):
                _collect_text(value, pieces)
    elif isinstance(node, list):
        for item in node:
            _collect_text(item, pieces)


class KnowledgeSearchResult(_Lenient):
    confidence: float = Field(ge=0.0, le=1.0)
    document: KnowledgeDocument


class KnowledgeSearch(_Lenient):
    search_id: str | None = Field(default=None, alias="searchId")
    total: int | None = None
    results: list[KnowledgeSearchResult] = Field(default_factory=list)


class GenesysKnowledge:
    name = "genesys-knowledge"

    def __init__(self, tokens: TokenProvider, api_base_url: str) -> None:
        self._tokens = tokens
        self._base = api_base_url.rstrip("/")

    def _url(self, knowledge_base_id: str, suffix: str = "") -> str:
        return self._base + SEARCH_PATH.format(kb=quote(knowledge_base_id, safe="")) + suffix

    def search(
        self,
        knowledge_base_id: str,
        *,
        query: str,
        conversation_id: str,
        page_size: int,
        confidence_threshold: float,
        queue_id: str | None = None,
    ) -> KnowledgeSearch:
        context: dict[str, Any] = {"conversationId": conversation_id, "mediaType": "Voice"}
        if queue_id:
            context["queueId"] = queue_id
        body = {
            "query": query[-MAX_QUERY_CHARS:],
            "pageSize": max(1, min(page_size, MAX_PAGE_SIZE)),
            "pageNumber": 1,
            "queryType": "AutoSearch",
            "conversationContext": context,
            "confidenceThreshold": confidence_threshold,
        }
        response = self._tokens.send(
            "POST",
            self._url(knowledge_base_id),
            circuit=KNOWLEDGE_SEARCH,
            params={"expand": "documentVariations"},
            json=body,
        )
        raise_for_status(
            response.status_code,
            response.headers.get("ININ-Correlation-Id"),
            what="knowledge search: Genesys",
        )
        try:
            return KnowledgeSearch.model_validate_json(response.content)
        except ValidationError as exc:
            raise GenesysApiError(
                f"knowledge search sent an invalid body: {exc.errors()[0]['msg']}",
                status_code=response.status_code,
                correlation_id=response.headers.get("ININ-Correlation-Id"),
            ) from exc

    def record_answer(self, knowledge_base_id: str, search_id: str, document_id: str) -> None:
        """Tell Genesys which result of a search the agent used."""
        response = self._tokens.send(
            "PATCH",
            self._url(knowledge_base_id, f"/{quote(search_id, safe='')}"),
            circuit=KNOWLEDGE_ANSWER,
            json={"answered": True, "selectedAnswer": {"document": {"id": document_id}}},
        )
        raise_for_status(
            response.status_code,
            response.headers.get("ININ-Correlation-Id"),
            what="knowledge search update: Genesys",
        )


__all__ = ["GenesysKnowledge", "KnowledgeDocument", "KnowledgeSearch", "KnowledgeSearchResult"]
