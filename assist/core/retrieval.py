"""Retrieval rules of the local knowledge base (C4) that need no index: queries and fusion.

- `build_query` turns what the provider is asked (a transcript window or an agent's typed
  question) into weighted turns: the most recent customer turn counts most, older ones decay,
  agent turns count less. Dense search embeds each turn and adds the vectors with these
  weights; lexical search adds the turns' term weights.
- `reciprocal_rank_fusion` merges ranked lists (Cormack, Clarke and Büttcher, SIGIR 2009):
  `score(d) = Σ 1 / (k + rank_i(d))`, which needs no score calibration between BM25 and
  cosine similarity.
- `convex_fusion` is the score-based alternative the evaluation compares it with: min-max
  normalised scores mixed with a weight.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from assist.core.redaction import PLACEHOLDER

_SPEAKER = re.compile(r"^\s*(customer|agent)\s*:\s*(.*)$", re.IGNORECASE)

#: The k of reciprocal-rank fusion; 60 is the value of the original paper.
RRF_K = 60


@dataclass(frozen=True)
class QueryTurn:
    text: str
    weight: float


def clean_query_text(text: str) -> str:
    """The text without redaction placeholders (they carry no meaning for search, configured
    labels included) and with whitespace collapsed."""
    return " ".join(PLACEHOLDER.sub(" ", text).split())


def build_query(
    transcript: str,
    *,
    max_turns: int = 4,
    decay: float = 0.5,
    agent_weight: float = 0.3,
) -> list[QueryTurn]:
    """Weighted turns to search with, most recent first; empty when nothing is left to search.

    A transcript window has one `customer: …` / `agent: …` line per final utterance. Text
    without those prefixes (an agent's typed question) is one customer turn.
    """
    turns: list[tuple[str, str]] = []
    unlabelled: list[str] = []
    for line in transcript.splitlines():
        match = _SPEAKER.match(line)
        if match:
            turns.append((match.group(1).lower(), match.group(2)))
        elif line.strip():
            unlabelled.append(line)
    if not turns:
        text = clean_query_text(" ".join(unlabelled))
        return [QueryTurn(text, 1.0)] if text else []
    query: list[QueryTurn] = []
    customer_seen = 0
    agent_seen = 0
    for speaker, raw in reversed(turns):
        text = clean_query_text(raw)
        if not text:
            continue
        if speaker == "customer":
            weight = decay**customer_seen
            customer_seen += 1
        else:
            weight = agent_weight * decay**agent_seen
            agent_seen += 1
        query.append(QueryTurn(text, weight))
        if len(query) >= max_turns:
            break
    return query


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]], *, k: int = RRF_K
) -> list[tuple[str, float]]:
    """Merge ranked id lists; returns (id, fused score), best first (ties: first seen)."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: pair[1], reverse=True)


def _min_max(scores: Mapping[str, float]) -> dict[str, float]:
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    if high - low <= 1e-12:
        return dict.fromkeys(scores, 1.0)
    return {item: (value - low) / (high - low) for item, value in scores.items()}


def convex_fusion(
    dense: Mapping[str, float], lexical: Mapping[str, float], *, dense_weight: float = 0.5
) -> list[tuple[str, float]]:
    """Mix min-max normalised scores: `w·dense + (1-w)·lexical` (missing counts as 0)."""
    dense_n, lexical_n = _min_max(dense), _min_max(lexical)
    items = list(dict.fromkeys([*dense_n, *lexical_n]))
    mixed = {
        item: dense_weight * dense_n.get(item, 0.0) + (1 - dense_weight) * lexical_n.get(item, 0.0)
        for item in items
    }
    return sorted(mixed.items(), key=lambda pair: pair[1], reverse=True)


def cut_at_word(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a word boundary (with "…" when cut); the one
    snippet rule of every provider's suggestions."""
    clean = " ".join(text.split())
    if len(clean) <= limit:
        return clean
    cut = clean.rfind(" ", 0, limit)  # the ellipsis takes the place of that space
    return clean[: cut if cut > 0 else limit - 1].rstrip() + "…"


def clamp01(value: float) -> float:
    """Scores enter the ranking as confidences, which must lie in 0..1."""
    if value != value:  # NaN
        return 0.0
    return min(1.0, max(0.0, value))


__all__ = [
    "RRF_K",
    "QueryTurn",
    "build_query",
    "clamp01",
    "clean_query_text",
    "convex_fusion",
    "cut_at_word",
    "reciprocal_rank_fusion",
]
