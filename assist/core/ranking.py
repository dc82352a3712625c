"""Deterministic ranking of candidate suggestions (DESIGN.md §7).

    score = w_conf * confidence + w_skill * skill_bonus + w_fb * feedback_signal

`skill_bonus` is `RankingWeights.skill_bonus` when any agent skill is among the suggestion's
tags (case-insensitive), else 0. `feedback_signal` comes from `FeedbackStats.signal` (0.5 with
no history). Every ranked suggestion carries its components in `why`.

Duplicates of the same article from several sources merge into one suggestion (same id, or
the same title once case and spacing are folded). An article the conversation already showed
is left out unless its score rose.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from assist.core.models import (
    Candidate,
    FeedbackStats,
    RankedSuggestion,
    ScoreWhy,
    SuppressedSuggestion,
)

# Scores are rounded for display and comparison; a "rise" must beat rounding noise.
SCORE_DIGITS = 6
_RISE_EPSILON = 10**-SCORE_DIGITS
_NO_HISTORY = FeedbackStats()


class RankingWeights(BaseModel):
    model_config = ConfigDict(frozen=True)

    confidence: float = Field(default=0.6, ge=0)
    skill: float = Field(default=0.3, ge=0)
    feedback: float = Field(default=0.1, ge=0)
    skill_bonus: float = Field(default=0.15, ge=0)


class RankingOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    ranked: tuple[RankedSuggestion, ...]
    suppressed: tuple[SuppressedSuggestion, ...]


@dataclass
class _Merged:
    primary: Candidate
    ids: list[str]
    knowledge_source_ids: list[str]
    tags: list[str]
    sources: list[str]


def _title_key(title: str) -> str:
    return " ".join(title.casefold().split())


def _add_unique(target: list[str], values: Iterable[str]) -> None:
    for value in values:
        if value not in target:
            target.append(value)


def merge_duplicates(candidates: Sequence[Candidate]) -> list[_Merged]:
    """Fold candidates that are the same article; the most confident copy leads."""
    ordered = sorted(candidates, key=lambda c: (-c.confidence, c.id))
    merged: list[_Merged] = []
    by_key: dict[str, _Merged] = {}
    for candidate in ordered:
        title_key = _title_key(candidate.title)
        group = by_key.get(f"id:{candidate.id}") or (
            by_key.get(f"title:{title_key}") if title_key else None
        )
        if group is None:
            group = _Merged(candidate, [], [], [], [])
            merged.append(group)
        _add_unique(group.ids, [candidate.id])
        _add_unique(group.knowledge_source_ids, [candidate.knowledge_source_id])
        _add_unique(group.tags, candidate.tags)
        _add_unique(group.sources, [candidate.source])
        by_key[f"id:{candidate.id}"] = group
        if title_key:
            by_key.setdefault(f"title:{title_key}", group)
    return merged


def rank(
    candidates: Sequence[Candidate],
    *,
    agent_skills: Iterable[str],
    feedback: Mapping[str, FeedbackStats],
    weights: RankingWeights,
    previously_shown: Mapping[str, float],
    max_results: int,
) -> RankingOutcome:
    """Score, merge, order and cut candidates for one agent in one conversation.

    Args:
        candidates: what the providers returned, duplicates included.
        agent_skills: the agent's skills; matched against suggestion tags.
        feedback: history per suggestion id; missing ids count as no history.
        weights: the ranking weights and skill bonus.
        previously_shown: score at which each suggestion id was last shown in this
            conversation; such suggestions are suppressed unless their score rose.
        max_results: how many suggestions to keep at most.
    """
    skills = {skill.strip().casefold() for skill in agent_skills if skill.strip()}
    weight_map = {
        "confidence": weights.confidence,
        "skill": weights.skill,
        "feedback": weights.feedback,
    }
    scored: list[tuple[float, RankedSuggestion]] = []
    for group in merge_duplicates(candidates):
        lead = group.primary
        matched = tuple(tag for tag in group.tags if tag.strip().casefold() in skills)
        skill_bonus = weights.skill_bonus if matched else 0.0
        stats = feedback.get(lead.id, _NO_HISTORY)
        signal = stats.signal
        contributions = {
            "confidence": round(weights.confidence * lead.confidence, SCORE_DIGITS),
            "skill": round(weights.skill * skill_bonus, SCORE_DIGITS),
            "feedback": round(weights.feedback * signal, SCORE_DIGITS),
        }
        score = round(sum(contributions.values()), SCORE_DIGITS)
        why = ScoreWhy(
            confidence=lead.confidence,
            skill_bonus=skill_bonus,
            feedback_signal=round(signal, SCORE_DIGITS),
            matched_skills=matched,
            feedback_shown=stats.shown,
            feedback_accepted=stats.accepted,
            weights=weight_map,
            contributions=contributions,
        )
        suggestion = RankedSuggestion(
            id=lead.id,
            rank=0,
            score=score,
            title=lead.title,
            content=lead.content,
            confidence=lead.confidence,
            knowledge_source_ids=tuple(group.knowledge_source_ids),
            tags=tuple(group.tags),
            sources=tuple(group.sources),
            merged_ids=tuple(i for i in group.ids if i != lead.id),
            url=lead.url,
            why=why,
        )
        scored.append((score, suggestion))

    scored.sort(key=lambda item: (-item[0], -item[1].confidence, item[1].id))
    ranked: list[RankedSuggestion] = []
    suppressed: list[SuppressedSuggestion] = []
    for score, suggestion in scored:
        previous = previously_shown.get(suggestion.id)
        if previous is not None and score <= previous + _RISE_EPSILON:
            suppressed.append(
                SuppressedSuggestion(id=suggestion.id, score=score, previous_score=previous)
            )
            continue
        if len(ranked) < max_results:
            ranked.append(suggestion.model_copy(update={"rank": len(ranked) + 1}))
    return RankingOutcome(ranked=tuple(ranked), suppressed=tuple(suppressed))
