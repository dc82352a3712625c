"""Request and response models of the public HTTP API (v1).

The same classes validate requests, serialize responses and generate `/openapi.json`, so the
published contract cannot drift from what the server enforces.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from assist.core.analytics import (
    Acceptance,
    DismissedRow,
    InsightTypeStats,
    RateRow,
    StageLatency,
    Totals,
    Volume,
)
from assist.core.models import (
    FeedbackAction,
    RankedSuggestion,
    Rating,
    RequestStatus,
    SuggestionRequest,
    SuppressedSuggestion,
)
from assist.services.suggestions import CallbackPayload

# Ids travel in URLs and Redis keys: keep them short and printable.
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")
]
Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]

TRANSCRIPT_MAX_CHARS = 5000


class TriggerBody(BaseModel):
    """`POST /v1/suggestions`: ask for suggestions for a conversation."""

    model_config = ConfigDict(extra="forbid")

    conversation_id: Identifier
    transcript: str | None = Field(
        default=None,
        max_length=TRANSCRIPT_MAX_CHARS,
        description="What was said; omitted: the conversation's live transcript window.",
    )
    agent_id: Identifier | None = None
    agent_skills: list[Label] = Field(default_factory=list, max_length=50)
    knowledge_source_ids: list[Identifier] = Field(min_length=1, max_length=10)
    max_results: int | None = Field(default=None, ge=1, le=50)


class TriggerAccepted(BaseModel):
    request_id: str
    status: RequestStatus
    status_url: str


class RequestView(BaseModel):
    """`GET /v1/suggestions/{request_id}`."""

    request_id: str
    conversation_id: str
    status: RequestStatus
    suggestions: list[RankedSuggestion]
    suppressed: list[SuppressedSuggestion]
    error: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, request: SuggestionRequest) -> RequestView:
        return cls(
            request_id=request.request_id,
            conversation_id=request.conversation_id,
            status=request.status,
            suggestions=list(request.suggestions),
            suppressed=list(request.suppressed),
            error=request.error,
            created_at=request.created_at,
            updated_at=request.updated_at,
            completed_at=request.completed_at,
        )


class ConversationSuggestionsView(BaseModel):
    """`GET /v1/conversations/{conversation_id}/suggestions`."""

    conversation_id: str
    suggestions: list[RankedSuggestion]


class FeedbackBody(BaseModel):
    """`POST /v1/feedback`: what the agent did with a suggestion."""

    model_config = ConfigDict(extra="forbid")

    conversation_id: Identifier
    suggestion_id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    agent_id: Identifier
    action: FeedbackAction
    rating: Rating | None = None
    request_id: Identifier | None = None


class FeedbackAccepted(BaseModel):
    status: Literal["recorded"] = "recorded"
    counted: bool = Field(
        description="Whether this changed the ranking inputs (first time "
        "this conversation reports this suggestion/adoption)."
    )


class CallbackAck(BaseModel):
    status: Literal["queued", "acknowledged", "duplicate", "ignored"]
    request_id: str
    reason: str | None = None


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    field: str | None = None
    message: str


class ErrorInfo(BaseModel):
    code: str
    message: str
    request_id: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorBody(BaseModel):
    """The one error shape of every endpoint."""

    error: ErrorInfo


class _Range(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")


class AcceptanceView(_Range):
    by: Literal["knowledge_source", "article", "skill"]
    rows: list[RateRow]


class VolumeView(_Range, Volume):
    pass


class LatencyView(_Range):
    stages: list[StageLatency]


class DismissedView(_Range):
    rows: list[DismissedRow]


class _LatencyStages(BaseModel):
    stages: list[StageLatency]


class _DismissedRows(BaseModel):
    rows: list[DismissedRow]


class _CopilotFigures(BaseModel):
    by_type: list[InsightTypeStats]
    counters: dict[str, int]


class AnalyticsSummaryView(_Range):
    """`GET /v1/analytics/summary`: every figure of the dashboard."""

    acceptance: Acceptance
    volume: Volume
    latency: _LatencyStages
    dismissed: _DismissedRows
    totals: Totals
    copilot: _CopilotFigures


class HealthView(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, Any] = Field(default_factory=dict)


__all__ = [
    "CallbackAck",
    "CallbackPayload",
    "ConversationSuggestionsView",
    "ErrorBody",
    "FeedbackAccepted",
    "FeedbackBody",
    "HealthView",
    "RequestView",
    "TriggerAccepted",
    "TriggerBody",
]
