"""The emulator's bundled knowledge base and its (deterministic) suggestion matching.

Matching is intentionally simple word overlap: the point is a provider whose answers are
predictable from the transcript, so tests and demos can say which articles come back and
with what confidence, not a good search engine. The same scoring serves both the async-query
provider (`KnowledgeBase.match`, suggestions for callbacks) and the Genesys Cloud Knowledge
search API (`KnowledgeBase.search`, one knowledge base, rendered by
`Article.to_search_document`).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypedDict

#: How many suggestions a query with a transcript returns at most.
MAX_SUGGESTIONS = 5
#: How many suggestions a query without a transcript returns at most.
MAX_DEFAULT_SUGGESTIONS = 3
#: Overlapping words at which an article reaches its full base confidence.
FULL_OVERLAP = 3
#: Where the demo articles "live" (the `externalUrl` of Genesys knowledge documents).
EXTERNAL_URL_BASE = "https://help.northwind.example"
KNOWLEDGE_BASES_PATH = "/api/v2/knowledge/knowledgebases"

# Words so common in a conversation that matching on them would say nothing.
_STOP_WORDS_TEXT = """
a about am an and are as at be been but by can could d do does for from get got had has
have hello hey hi how i if in is it its just ll m me my need no not of ok okay on or our
please re s so t thank thanks that the their them then there this to up us ve was we
what when which will with would yes you your
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())

_WORD = re.compile(r"[^\W_]+")


class Suggestion(TypedDict):
    """One suggestion as sent in a `completed` callback (snake_case keys, as on the wire)."""

    id: str
    title: str
    content: str
    confidence: float
    knowledge_source_id: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Article:
    """One knowledge article in one knowledge source."""

    id: str
    title: str
    content: str
    knowledge_source_id: str
    tags: tuple[str, ...]
    base_confidence: float

    def words(self) -> frozenset[str]:
        return tokenize(" ".join((self.title, self.content, *self.tags)))

    def to_suggestion(self, confidence: float) -> Suggestion:
        return {
            "id": self.id,
            "title": self.title,
            "content": self.content,
            "confidence": confidence,
            "knowledge_source_id": self.knowledge_source_id,
            "metadata": {"tags": list(self.tags)},
        }

    def variation_id(self) -> str:
        """The (stable) id of the article's only document variation in its knowledge base."""
        return variation_id(self.knowledge_source_id, self.id)

    def to_search_document(self, *, with_variations: bool) -> dict[str, Any]:
        """The article as the `document` of a Genesys Cloud knowledge search result.

        The knowledge base is the article's knowledge source. `with_variations` (the
        `expand=documentVariations` query parameter) adds the article's one variation, whose
        body holds the content as a single paragraph of text.
        """
        kb_uri = f"{KNOWLEDGE_BASES_PATH}/{self.knowledge_source_id}"
        document_uri = f"{kb_uri}/documents/{self.id}"
        document: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "state": "Published",
            "visible": True,
            "knowledgeBase": {"id": self.knowledge_source_id, "selfUri": kb_uri},
            "externalUrl": f"{EXTERNAL_URL_BASE}/{self.id}",
            "labels": [{"name": tag} for tag in self.tags],
            "selfUri": document_uri,
        }
        if with_variations:
            variation_id = self.variation_id()
            paragraph = {"blocks": [{"type": "Text", "text": {"text": self.content}}]}
            document["variations"] = [
                {
                    "id": variation_id,
                    "body": {"blocks": [{"type": "Paragraph", "paragraph": paragraph}]},
                    "selfUri": f"{document_uri}/variations/{variation_id}",
                }
            ]
        return document


def variation_id(knowledge_source_id: str, article_id: str) -> str:
    """The (stable) id of an article's only document variation in its knowledge base."""
    name = f"{knowledge_source_id}/{article_id}/variation"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def version_id(knowledge_source_id: str, article_id: str) -> str:
    """The (stable) id of an article's published document version in its knowledge base."""
    name = f"{knowledge_source_id}/{article_id}/version/1"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def tokenize(text: str) -> frozenset[str]:
    """Lower-case word tokens of `text` without stop words (hyphenated words are split)."""
    return frozenset(word for word in _WORD.findall(text.lower()) if word not in STOP_WORDS)


def load_articles() -> tuple[Article, ...]:
    """Load `emulator/data/knowledge.json`, the bundled demo knowledge base."""
    raw = resources.files("emulator").joinpath("data/knowledge.json").read_text("utf-8")
    return parse_articles(json.loads(raw)["articles"])


def parse_articles(items: Iterable[dict[str, Any]]) -> tuple[Article, ...]:
    articles = []
    for item in items:
        article = Article(
            id=str(item["id"]),
            title=str(item["title"]),
            content=str(item["content"]),
            knowledge_source_id=str(item["knowledge_source_id"]),
            tags=tuple(str(tag) for tag in item["tags"]),
            base_confidence=float(item["base_confidence"]),
        )
        if not 0.0 <= article.base_confidence <= 1.0:
            raise ValueError(f"article {article.id}: base_confidence must be within 0..1")
        articles.append(article)
    return tuple(articles)


class KnowledgeBase:
    """Articles with their word sets precomputed, and the matching rules of the emulator."""

    def __init__(self, articles: Sequence[Article]) -> None:
        self._entries = tuple((article, article.words()) for article in articles)

    @property
    def source_ids(self) -> frozenset[str]:
        return frozenset(article.knowledge_source_id for article, _ in self._entries)

    def match(self, transcript: str | None, source_ids: Iterable[str]) -> list[Suggestion]:
        """Suggestions for `transcript` from the requested knowledge sources.

        With a transcript: articles sharing at least one word with it, confidence
        `base * (0.5 + 0.5 * min(1, overlap / 3))`, best `MAX_SUGGESTIONS`. Without one
        (missing or blank): the best `MAX_DEFAULT_SUGGESTIONS` by base confidence, at half
        confidence. Ties are broken by article id (then source), so results never depend on
        file order.
        """
        wanted = set(source_ids)
        scored: list[tuple[float, Article]]
        if not (transcript or "").strip():
            scored = [
                (round(article.base_confidence * 0.5, 3), article)
                for article, _ in self._entries
                if article.knowledge_source_id in wanted
            ]
            scored.sort(key=_rank)
            limit = MAX_DEFAULT_SUGGESTIONS
        else:
            scored = self._overlap_scores(transcript or "", wanted)
            limit = MAX_SUGGESTIONS
        return [article.to_suggestion(confidence) for confidence, article in scored[:limit]]

    def search(self, query: str, knowledge_base_id: str) -> list[tuple[float, Article]]:
        """Every article of one knowledge source sharing a word with `query`, best first.

        Same confidence and tie-breaking as `match` with a transcript, but not cut to
        `MAX_SUGGESTIONS` (the caller pages). A query of stop words only matches nothing.
        """
        return self._overlap_scores(query, {knowledge_base_id})

    def _overlap_scores(self, text: str, wanted: set[str]) -> list[tuple[float, Article]]:
        query_words = tokenize(text)
        scored: list[tuple[float, Article]] = []
        for article, words in self._entries:
            if article.knowledge_source_id not in wanted:
                continue
            overlap = len(query_words & words)
            if overlap >= 1:
                factor = 0.5 + 0.5 * min(1.0, overlap / FULL_OVERLAP)
                scored.append((round(article.base_confidence * factor, 3), article))
        scored.sort(key=_rank)
        return scored


def _rank(pair: tuple[float, Article]) -> tuple[float, str, str]:
    """Sort key: confidence descending, then article id, then source."""
    confidence, article = pair
    return (-confidence, article.id, article.knowledge_source_id)
