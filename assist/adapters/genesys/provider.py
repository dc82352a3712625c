"""The `async-query` suggestion provider (DESIGN.md §5).

`POST {base}{path}` with `{conversationId, transcript, agentSkills, knowledgeSourceIds,
callbackUrl, async: true}` answers `202 {id, status: "queued", callbackUrl, createdTimestamp}`;
the suggestions come later as a signed callback. This endpoint is not part of the public
Genesys API: it is the contract any middleware (or a Genesys workflow with a Data Action)
can serve, and the bundled emulator serves it. It is authenticated with the Genesys OAuth
token, so a 401 drops the shared token and retries once with a new one.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from assist.adapters.genesys.auth import TokenProvider
from assist.adapters.genesys.circuit import ASYNC_QUERY
from assist.adapters.genesys.errors import GenesysApiError, raise_for_status
from assist.adapters.genesys.http import ResilientHttp
from assist.core.models import SuggestionRequest

ACCEPTED = frozenset({200, 201, 202})


class QueryAccepted(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str = Field(min_length=1, max_length=200)
    status: str
    callback_url: str | None = Field(default=None, alias="callbackUrl")
    created_timestamp: str | None = Field(default=None, alias="createdTimestamp")


class SuggestionProvider(Protocol):
    """A source that is asked for suggestions and answers through a callback."""

    name: str

    def submit(self, request: SuggestionRequest, callback_url: str) -> QueryAccepted: ...


class AsyncQueryProvider:
    name = "async-query"

    def __init__(self, http: ResilientHttp, tokens: TokenProvider, url: str) -> None:
        self._http = http
        self._tokens = tokens
        self._url = url

    def submit(self, request: SuggestionRequest, callback_url: str) -> QueryAccepted:
        body = {
            "conversationId": request.conversation_id,
            "transcript": request.transcript,
            "agentSkills": list(request.agent_skills),
            "knowledgeSourceIds": list(request.knowledge_source_ids),
            "callbackUrl": callback_url,
            "async": True,
        }
        response = self._tokens.send("POST", self._url, circuit=ASYNC_QUERY, json=body)
        correlation_id = response.headers.get("ININ-Correlation-Id")
        raise_for_status(response.status_code, correlation_id, what="provider", accepted=ACCEPTED)
        try:
            return QueryAccepted.model_validate_json(response.content)
        except ValidationError as exc:
            raise GenesysApiError(
                "provider sent an invalid acceptance body",
                status_code=response.status_code,
                correlation_id=correlation_id,
            ) from exc
