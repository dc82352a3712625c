"""The `local-kb` provider: knowledge source ids answered from this server's own indexes (C4).

`submit_query` (a worker job) asks `LocalKnowledgeBase.search` for the request's local
sources; the hits become `Candidate`s (`source="local-kb"`, confidence = the hit's 0..1 score)
and are ranked with everything else the request gathers, by the rule of DESIGN.md §7.

The model and indexes are loaded once per process: at worker start when
`ASSIST_KB_PRELOAD` is true (the default), else on the first local query. A new index version
(`assist-kb ingest`) is picked up on the next search. A source whose index is missing or
unusable gives no hits (logged, shown as `not_ready` in `/readyz`), never a failed job.

Nothing here is imported by the web process except `statuses` (which reads manifests only).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from assist.core.models import Candidate
from assist.core.retrieval import build_query, cut_at_word
from assist.kb.layout import KnowledgeIndexError, index_status
from assist.logconfig import get_logger
from assist.settings import Settings

if TYPE_CHECKING:
    from assist.kb.embedder import Embedder
    from assist.kb.index import IndexCache

log = get_logger(__name__)

PROVIDER = "local-kb"
SNIPPET_CHARS = 600


@dataclass
class LocalSearch:
    """What one request's local search found (for the ranking and the audit line)."""

    candidates: list[Candidate] = field(default_factory=list)
    not_ready: dict[str, str] = field(default_factory=dict)
    below_min_score: int = 0
    empty_query: bool = False
    latency_ms: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {
            "provider": PROVIDER,
            "hits": [
                {"id": c.id, "source": c.knowledge_source_id, "score": c.confidence}
                for c in self.candidates
            ],
            "not_ready": self.not_ready,
            "below_min_score": self.below_min_score,
            "empty_query": self.empty_query,
            "versions": self.versions,
            "latency_ms": round(self.latency_ms, 1),
        }


def embedder_for(settings: Settings) -> Embedder:
    """The process's embedder as configured (runtime, model cache; one thread if it forks)."""
    from assist.kb.embedder import load_embedder

    return load_embedder(
        settings.kb_model,
        runtime=settings.kb_runtime,
        cache_dir=settings.kb_model_cache_dir,
        threads=1 if settings.worker_class == "fork" else 0,
    )


class LocalKnowledgeBase:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.source_ids = tuple(settings.local_kb_source_ids)
        self._lock = threading.Lock()
        self._embedder: Embedder | None = None
        self._cache: IndexCache | None = None

    def handles(self, source_id: str) -> bool:
        return source_id in self.source_ids

    def split(self, source_ids: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(local, other) knowledge source ids, each in the request's order."""
        local = tuple(s for s in source_ids if self.handles(s))
        return local, tuple(s for s in source_ids if not self.handles(s))

    def statuses(self) -> dict[str, dict[str, Any]]:
        """Per local source: ready or not and why (cheap: reads manifests only)."""
        statuses: dict[str, dict[str, Any]] = {}
        for source_id in self.source_ids:
            try:
                statuses[source_id] = index_status(
                    self.settings.kb_dir, source_id, model=self.settings.kb_model
                )
            except ValueError as exc:
                statuses[source_id] = {"status": "not_ready", "reason": str(exc)}
        return statuses

    # --- worker side -------------------------------------------------------------------------
    def _parts(self) -> tuple[Embedder, IndexCache]:
        with self._lock:
            if self._embedder is None or self._cache is None:
                from assist.kb.index import IndexCache

                self._embedder = embedder_for(self.settings)
                self._cache = IndexCache(self.settings.kb_dir, model=self.settings.kb_model)
            return self._embedder, self._cache

    def preload(self, *, warm_up: bool) -> None:
        """Load the model and every index now; `warm_up` also runs one embedding.

        A process that forks work horses must not warm up: thread pools do not survive
        `fork` (dependencies §3.4); it loads the model with one thread (`embedder_for`).
        """
        if not self.source_ids:
            return
        began = time.monotonic()
        embedder, cache = self._parts()
        if warm_up:
            embedder.encode(["warm up"])
        ready = []
        for source_id in self.source_ids:
            try:
                index = cache.get(source_id, dimension=embedder.dimension)
                ready.append(f"{source_id}@{index.version}({index.size})")
            except (KnowledgeIndexError, ValueError) as exc:
                log.warning("local_kb.not_ready", source_id=source_id, reason=str(exc))
        log.info(
            "local_kb.preloaded",
            model=self.settings.kb_model,
            ready=ready,
            warm_up=warm_up,
            seconds=round(time.monotonic() - began, 2),
        )

    def search(self, source_ids: tuple[str, ...], transcript: str, *, k: int) -> LocalSearch:
        """Candidates from the local sources for a transcript (window) or a typed question."""
        began = time.perf_counter()
        result = LocalSearch()
        turns = build_query(transcript)
        if not turns:
            result.empty_query = True
            return result
        embedder, cache = self._parts()
        for source_id in source_ids:
            try:
                index = cache.get(source_id, dimension=embedder.dimension)
            except (KnowledgeIndexError, ValueError) as exc:
                result.not_ready[source_id] = str(exc)
                log.warning("local_kb.not_ready", source_id=source_id, reason=str(exc))
                continue
            result.versions[source_id] = index.version
            for hit in index.search(
                turns, embedder=embedder, k=k, mode=self.settings.kb_search_mode
            ):
                if hit.score < self.settings.kb_min_score:
                    result.below_min_score += 1
                    continue
                result.candidates.append(
                    Candidate(
                        id=hit.article_id,
                        title=hit.title,
                        content=cut_at_word(hit.snippet, SNIPPET_CHARS),
                        confidence=hit.score,
                        knowledge_source_id=source_id,
                        tags=hit.tags,
                        source=PROVIDER,
                        url=hit.url or None,
                    )
                )
        result.latency_ms = (time.perf_counter() - began) * 1000
        return result


def ingest_on_start(settings: Settings) -> None:
    """Ingest `ASSIST_KB_INGEST_ON_START` (incremental; one process at a time per source).

    For platforms whose workers start on an empty disk (Heroku-style dynos) and for the
    development system. A source that cannot be ingested is logged and skipped: its searches
    then give no hits until an index exists.
    """
    if not settings.kb_ingest_on_start:
        return
    import fcntl
    from pathlib import Path

    from assist.kb.articles import ArticleSourceError, load_articles
    from assist.kb.index import ingest
    from assist.kb.layout import source_dir

    for pair in settings.kb_ingest_on_start:
        source_id, _, path = (part.strip() for part in pair.partition("="))
        try:
            root = source_dir(settings.kb_dir, source_id)
            root.mkdir(parents=True, exist_ok=True)
            loaded = load_articles(Path(path), max_file_bytes=settings.kb_max_file_bytes)
        except (ArticleSourceError, ValueError, OSError) as exc:
            log.error("local_kb.ingest_failed", source_id=source_id, path=path, error=str(exc))
            continue
        for skipped in loaded.skipped:
            log.warning("local_kb.article_skipped", source=skipped.source, reason=skipped.reason)
        if not loaded.articles:
            log.error("local_kb.ingest_failed", source_id=source_id, error="no article loaded")
            continue
        with (root / ".ingest.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another worker ingesting waits, then finds it done
            report = ingest(
                loaded.articles,
                kb_dir=settings.kb_dir,
                source_id=source_id,
                embedder=embedder_for(settings),
                passage_words=settings.kb_passage_words,
                passage_overlap=settings.kb_passage_overlap_words,
                ann_min_passages=settings.kb_ann_min_passages,
            )
        log.info("local_kb.ingested", **report.as_json())


__all__ = ["PROVIDER", "LocalKnowledgeBase", "LocalSearch", "embedder_for", "ingest_on_start"]
