"""Domain models shared by every layer: suggestion requests, candidates and ranked suggestions.

A suggestion looks the same whatever produced it (async-query provider, knowledge base,
keywords, Copilot): providers produce `Candidate`s, ranking turns them into
`RankedSuggestion`s, and a `SuggestionRequest` carries one desktop trigger through its life.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


def elapsed_ms(start: datetime, end: datetime) -> int:
    """Whole milliseconds from `start` to `end` (the latency figures of record events)."""
    return int((end - start).total_seconds() * 1000)


class RequestStatus(StrEnum):
    QUEUED = "queued"
    SUBMITTED = "submitted"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({RequestStatus.COMPLETED, RequestStatus.FAILED, RequestStatus.EXPIRED})


def can_transition(current: RequestStatus, new: RequestStatus) -> bool:
    """Whether a request may move from `current` to `new`.

    Terminal states never change, so a late or replayed callback cannot resurrect an
    expired request or overwrite a completed one. `queued -> completed` is allowed because a
    fast provider may call back before the submission job has recorded `submitted`.
    """
    if current.is_terminal:
        return False
    if current is RequestStatus.SUBMITTED:
        return new is not RequestStatus.QUEUED and new is not RequestStatus.SUBMITTED
    return new is not RequestStatus.QUEUED


class FeedbackAction(StrEnum):
    DISPLAYED = "displayed"
    OPENED = "opened"
    COPIED = "copied"
    ACCEPTED = "accepted"
    DISMISSED = "dismissed"
    REJECTED = "rejected"

    @property
    def is_adoption(self) -> bool:
        """Actions that mean the agent used the suggestion."""
        return self in (FeedbackAction.ACCEPTED, FeedbackAction.COPIED)


class Rating(StrEnum):
    POSITIVE = "positive"
    NEGATIVE = "negative"


class Candidate(BaseModel):
    """One suggestion as a provider produced it, before ranking."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1, max_length=200)
    title: str = Field(max_length=500)
    content: str = Field(max_length=20_000)
    confidence: float = Field(ge=0.0, le=1.0)
    knowledge_source_id: str = Field(max_length=200)
    tags: tuple[str, ...] = ()
    source: str = "async-query"
    #: Where the whole article is (local knowledge bases know it; other providers may not).
    url: str | None = Field(default=None, max_length=2000)


class ScoreWhy(BaseModel):
    """The components of a score, so an agent or supervisor can see why a suggestion ranks."""

    model_config = ConfigDict(frozen=True)

    confidence: float
    skill_bonus: float
    feedback_signal: float
    matched_skills: tuple[str, ...]
    feedback_shown: int
    feedback_accepted: int
    weights: dict[str, float]
    contributions: dict[str, float]


class RankedSuggestion(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    rank: int
    score: float
    title: str
    content: str
    confidence: float
    knowledge_source_ids: tuple[str, ...]
    tags: tuple[str, ...]
    sources: tuple[str, ...]
    merged_ids: tuple[str, ...] = ()
    url: str | None = None
    why: ScoreWhy


class SuppressedSuggestion(BaseModel):
    """A suggestion left out because the conversation already showed it at a score as high."""

    model_config = ConfigDict(frozen=True)

    id: str
    score: float
    previous_score: float


class FeedbackStats(BaseModel):
    """Per-suggestion history: conversations it was shown in, and in how many it was adopted."""

    model_config = ConfigDict(frozen=True)

    shown: int = Field(default=0, ge=0)
    accepted: int = Field(default=0, ge=0)

    @property
    def signal(self) -> float:
        """Adoption rate with a uniform prior: 0.5 with no history, always within 0..1.

        (accepted + 1) / (shown + 2) is the mean of a Beta(1, 1) prior updated by the history,
        so one dismissal moves it to 0.33 and one acceptance to 0.67, rather than to 0 or 1.
        """
        accepted = min(self.accepted, self.shown)
        return (accepted + 1) / (self.shown + 2)


class SuggestionRequest(BaseModel):
    """One desktop trigger from acceptance to its final ranked result."""

    request_id: str
    conversation_id: str
    agent_id: str | None = None
    agent_skills: tuple[str, ...] = ()
    knowledge_source_ids: tuple[str, ...]
    transcript: str = ""
    max_results: int
    status: RequestStatus = RequestStatus.QUEUED
    provider_request_id: str | None = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None = None
    completed_at: datetime | None = None
    expires_at: datetime
    suggestions: tuple[RankedSuggestion, ...] = ()
    suppressed: tuple[SuppressedSuggestion, ...] = ()
    #: Candidates found before the provider's callback (local knowledge bases), ranked with it.
    pending_candidates: tuple[Candidate, ...] = ()

    def moved_to(
        self, status: RequestStatus, *, at: datetime, **changes: object
    ) -> SuggestionRequest:
        """A copy in `status`; raises `ValueError` for a transition the lifecycle forbids."""
        if not can_transition(self.status, status):
            raise ValueError(f"request {self.request_id}: {self.status} -> {status} not allowed")
        update: dict[str, object] = {"status": status, "updated_at": at, **changes}
        if status is RequestStatus.SUBMITTED:
            update.setdefault("submitted_at", at)
        if status.is_terminal:
            update.setdefault("completed_at", at)
        return self.model_copy(update=update)
