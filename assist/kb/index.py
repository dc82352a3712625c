"""Versioned knowledge-base indexes on disk: ingest, atomic swap, load and search.

Layout, one folder per knowledge source id under the knowledge-base directory:

    <kb_dir>/<source_id>/CURRENT              name of the live version (replaced atomically)
    <kb_dir>/<source_id>/versions/<version>/  manifest.json   model, dimension, counts, the
                                                              fingerprint of every article
                                              passages.jsonl  one passage per line
                                              embeddings.npy  float32, one row per passage
                                              dense.faiss     FAISS inner-product index
                                              lexical.npz     BM25 weights (+ vocabulary.json)

An ingest writes a new version into a temporary folder, renames it into `versions/` and only
then replaces `CURRENT` (`os.replace`, atomic on POSIX), so a process that reads `CURRENT`
always finds a whole version. Processes that serve searches notice a new `CURRENT` on their
next search and load it; the two latest versions are kept, older ones are deleted.

Ingest is incremental: an article whose fingerprint (id, title, body, tags, url, passage
settings) is unchanged keeps its passages' embeddings from the previous version; only new and
changed articles are embedded. A different model re-embeds everything.

Dense search uses an exact `IndexFlatIP` below `ann_min_passages` and an HNSW graph
(`IndexHNSWFlat`, inner product) above it.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import faiss
import numpy as np

from assist.core.retrieval import (
    QueryTurn,
    clamp01,
    convex_fusion,
    reciprocal_rank_fusion,
)
from assist.kb.articles import Article, Passage, split_passages
from assist.kb.layout import (
    IndexNotFound,
    KnowledgeIndexError,
    check_source_id,
    index_status,
    read_current,
    source_dir,
)
from assist.kb.lexical import LexicalIndex, lexical_confidence

FORMAT = 1
KEEP_VERSIONS = 2
SearchMode = Literal["hybrid", "dense", "lexical", "convex"]
SEARCH_MODES: tuple[SearchMode, ...] = ("hybrid", "dense", "lexical", "convex")
#: FAISS searches one query at a time on one thread. Its OpenMP threads and torch's spin on
#: the same cores: with FAISS on 2 threads a 10k flat search took 28 ms p50 next to a 17 ms
#: embedding, instead of well under 1 ms (benchmarks/README.md).
SEARCH_THREADS = 1
HNSW_NEIGHBOURS = 32
HNSW_EF_SEARCH = 64
#: How many passages each search side contributes before fusion, per wanted article.
CANDIDATES_PER_RESULT = 8


class EmbedFunction(Protocol):
    """What ingest and search need of an embedder (see `assist.kb.embedder.Embedder`)."""

    name: str
    dimension: int

    def encode(self, texts: list[str], *, batch_size: int = 32) -> np.ndarray: ...


@dataclass
class IngestReport:
    source_id: str
    version: str
    articles: int
    passages: int
    embedded: int
    reused: int
    removed_articles: int
    dense_index: str
    seconds: float
    embed_seconds: float
    path: str
    unchanged: bool = False

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _build_dense(vectors: np.ndarray, ann_min_passages: int) -> tuple[faiss.Index, str]:
    dimension = vectors.shape[1]
    if len(vectors) >= ann_min_passages:
        hnsw = faiss.IndexHNSWFlat(dimension, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 80
        index: faiss.Index = hnsw
        kind = "hnsw"
    else:
        index = faiss.IndexFlatIP(dimension)
        kind = "flat"
    if len(vectors):
        index.add(vectors)
    return index, kind


def ingest(
    articles: Iterable[Article],
    *,
    kb_dir: str | Path,
    source_id: str,
    embedder: EmbedFunction,
    passage_words: int = 120,
    passage_overlap: int = 30,
    ann_min_passages: int = 50_000,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> IngestReport:
    """Write a new version of the source's index and make it current; returns what it did."""
    began = time.monotonic()
    root = source_dir(kb_dir, source_id)
    versions = root / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    articles = list(articles)
    fingerprints = {
        a.id: a.fingerprint(words=passage_words, overlap=passage_overlap) for a in articles
    }
    previous = _previous_material(root, embedder)
    if (
        previous is not None
        and previous.fingerprints == fingerprints
        and previous.manifest.get("dense_index") == _dense_kind(previous.count, ann_min_passages)
    ):
        version = str(previous.manifest["version"])
        return IngestReport(
            source_id, version, len(articles), previous.count, 0, previous.count, 0,
            str(previous.manifest.get("dense_index")), round(time.monotonic() - began, 3), 0.0,
            str(versions / version), unchanged=True,
        )  # fmt: skip

    passages: list[Passage] = []
    vectors: list[np.ndarray | None] = []
    to_embed: list[int] = []
    reused = 0
    for article in articles:
        kept = previous.kept(article.id, fingerprints[article.id]) if previous else None
        if kept is not None:
            for passage, vector in kept:
                passages.append(passage)
                vectors.append(vector)
            reused += len(kept)
            continue
        for passage in split_passages(article, words=passage_words, overlap=passage_overlap):
            to_embed.append(len(passages))
            passages.append(passage)
            vectors.append(None)
    if on_total is not None:
        on_total(len(to_embed))
    embed_began = time.monotonic()
    for start in range(0, len(to_embed), batch_size):
        rows = to_embed[start : start + batch_size]
        encoded = embedder.encode([passages[r].searchable for r in rows], batch_size=batch_size)
        for row, vector in zip(rows, encoded, strict=True):
            vectors[row] = vector
        if progress is not None:
            progress(len(rows))
    embed_seconds = time.monotonic() - embed_began
    matrix = (
        np.vstack([v for v in vectors if v is not None]).astype(np.float32)
        if passages
        else np.zeros((0, embedder.dimension), dtype=np.float32)
    )
    dense, kind = _build_dense(matrix, ann_min_passages)
    lexical = LexicalIndex.build([p.searchable for p in passages])

    created = datetime.now(UTC)
    version = f"{created.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    staging = versions / f".tmp-{version}"
    staging.mkdir()
    try:
        _write(
            staging / "passages.jsonl",
            "".join(json.dumps(p.as_json(), ensure_ascii=False) + "\n" for p in passages).encode(),
        )
        with (staging / "embeddings.npy").open("wb") as handle:
            np.save(handle, matrix)
            handle.flush()
            os.fsync(handle.fileno())
        faiss.write_index(dense, str(staging / "dense.faiss"))
        lexical.save(staging)
        manifest = {
            "format": FORMAT,
            "source_id": source_id,
            "version": version,
            "created_at": created.isoformat(timespec="seconds"),
            "model": embedder.name,
            "dimension": embedder.dimension,
            "passages": len(passages),
            "articles": fingerprints,
            "titles": {a.id: a.title for a in articles},
            "chunking": {"words": passage_words, "overlap": passage_overlap},
            "dense_index": kind,
        }
        _write(staging / "manifest.json", json.dumps(manifest, indent=1).encode())
        for name in ("dense.faiss", "lexical.npz", "vocabulary.json"):
            with (staging / name).open("rb+") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(staging)
        final = versions / version
        staging.rename(final)
        _fsync_dir(versions)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    pointer = root / f".CURRENT-{version}"
    _write(pointer, f"{version}\n".encode())
    os.replace(pointer, root / "CURRENT")
    _fsync_dir(root)
    _prune(versions, keep=version)
    removed = len(set(previous.fingerprints) - set(fingerprints)) if previous else 0
    return IngestReport(
        source_id, version, len(articles), len(passages), len(to_embed), reused, removed, kind,
        round(time.monotonic() - began, 3), round(embed_seconds, 3), str(final),
    )  # fmt: skip


def _dense_kind(count: int, ann_min_passages: int) -> str:
    return "hnsw" if count >= ann_min_passages else "flat"


def _prune(versions: Path, *, keep: str) -> None:
    """Delete all but the newest `KEEP_VERSIONS` versions (and stale temporary folders)."""
    entries = sorted(
        (p for p in versions.iterdir() if p.is_dir() and not p.name.startswith(".tmp-")),
        key=lambda p: p.name,
    )
    for old in entries[:-KEEP_VERSIONS]:
        if old.name != keep:
            shutil.rmtree(old, ignore_errors=True)


@dataclass
class _Previous:
    manifest: dict[str, Any]
    fingerprints: dict[str, str]
    by_article: dict[str, list[tuple[Passage, np.ndarray]]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return int(self.manifest.get("passages", 0))

    def kept(self, article_id: str, fingerprint: str) -> list[tuple[Passage, np.ndarray]] | None:
        if self.fingerprints.get(article_id) != fingerprint:
            return None
        return self.by_article.get(article_id)


def _previous_material(root: Path, embedder: EmbedFunction) -> _Previous | None:
    """The current version's passages and vectors, when they can be reused with `embedder`."""
    version = read_current(root)
    if version is None:
        return None
    directory = root / "versions" / version
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
        if (
            manifest.get("format") != FORMAT
            or manifest.get("model") != embedder.name
            or manifest.get("dimension") != embedder.dimension
        ):
            return None
        matrix = np.load(directory / "embeddings.npy")
        passages = [
            Passage.from_json(json.loads(line))
            for line in (directory / "passages.jsonl").read_text().splitlines()
            if line.strip()
        ]
    except (OSError, ValueError, KeyError):
        return None  # an unreadable previous version: embed everything again
    if len(passages) != len(matrix):
        return None
    previous = _Previous(manifest, dict(manifest.get("articles", {})))
    for passage, vector in zip(passages, matrix, strict=True):
        previous.by_article.setdefault(passage.article_id, []).append((passage, vector))
    return previous


# --- searching ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    """One article found, by its best passage."""

    article_id: str
    title: str
    snippet: str
    url: str
    tags: tuple[str, ...]
    score: float
    dense_score: float | None
    lexical_score: float | None
    passage: int

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class KnowledgeIndex:
    """One loaded version of a source's index."""

    def __init__(
        self,
        *,
        source_id: str,
        version: str,
        manifest: dict[str, Any],
        passages: list[Passage],
        dense: faiss.Index,
        lexical: LexicalIndex,
    ) -> None:
        self.source_id = source_id
        self.version = version
        self.manifest = manifest
        self.passages = passages
        self.dense = dense
        self.lexical = lexical

    @property
    def size(self) -> int:
        return len(self.passages)

    @classmethod
    def load(
        cls,
        kb_dir: str | Path,
        source_id: str,
        *,
        model: str,
        dimension: int | None = None,
        version: str | None = None,
    ) -> KnowledgeIndex:
        """Load the current (or the named) version; refuses one built for another model."""
        root = source_dir(kb_dir, source_id)
        version = version or read_current(root)
        if version is None:
            raise IndexNotFound(
                f"knowledge base {source_id!r} has no index under {root}; "
                f"run: assist-kb ingest {source_id} <articles>"
            )
        directory = root / "versions" / version
        try:
            manifest = json.loads((directory / "manifest.json").read_text())
        except (OSError, ValueError) as exc:
            raise KnowledgeIndexError(
                f"knowledge base {source_id!r}, version {version}: unreadable manifest ({exc})"
            ) from exc
        if manifest.get("format") != FORMAT:
            raise KnowledgeIndexError(
                f"knowledge base {source_id!r}: index format {manifest.get('format')!r}, "
                f"this server reads {FORMAT}; ingest again"
            )
        if manifest.get("model") != model:
            raise KnowledgeIndexError(
                f"knowledge base {source_id!r} was built with model {manifest.get('model')!r}, "
                f"but {model!r} is configured; ingest again or set the model it was built with"
            )
        if dimension is not None and manifest.get("dimension") != dimension:
            raise KnowledgeIndexError(
                f"knowledge base {source_id!r} has {manifest.get('dimension')}-dimensional "
                f"vectors, the model gives {dimension}; ingest again"
            )
        try:
            dense = faiss.read_index(str(directory / "dense.faiss"))
            lexical = LexicalIndex.load(directory)
            passages = [
                Passage.from_json(json.loads(line))
                for line in (directory / "passages.jsonl").read_text().splitlines()
                if line.strip()
            ]
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise KnowledgeIndexError(
                f"knowledge base {source_id!r}, version {version}: cannot read the index ({exc})"
            ) from exc
        expected = int(manifest.get("passages", -1))
        if not (
            dense.d == manifest.get("dimension")
            and dense.ntotal == expected == len(passages) == lexical.size
        ):
            raise KnowledgeIndexError(
                f"knowledge base {source_id!r}, version {version}: parts disagree "
                f"(manifest {expected} passages of {manifest.get('dimension')} dimensions, "
                f"dense {dense.ntotal}x{dense.d}, lexical {lexical.size}, "
                f"passages {len(passages)}); ingest again"
            )
        if isinstance(dense, faiss.IndexHNSWFlat):
            dense.hnsw.efSearch = HNSW_EF_SEARCH
        faiss.omp_set_num_threads(SEARCH_THREADS)
        return cls(
            source_id=source_id,
            version=version,
            manifest=manifest,
            passages=passages,
            dense=dense,
            lexical=lexical,
        )

    def query_vector(self, turns: list[QueryTurn], embedder: EmbedFunction) -> np.ndarray:
        """The weighted sum of the turns' embeddings, normalised."""
        vectors = embedder.encode([t.text for t in turns])
        weights = np.asarray([t.weight for t in turns], dtype=np.float32)[:, None]
        combined = (vectors * weights).sum(axis=0)
        norm = float(np.linalg.norm(combined))
        unit: np.ndarray = (combined / norm if norm > 0 else combined).astype(np.float32)
        return unit[None, :]

    def search(
        self,
        turns: list[QueryTurn],
        *,
        embedder: EmbedFunction | None,
        k: int = 5,
        mode: SearchMode = "hybrid",
    ) -> list[Hit]:
        """The best `k` articles for the query; empty for an empty query or index."""
        if not turns or not self.passages or k <= 0:
            return []
        depth = min(self.size, max(k * CANDIDATES_PER_RESULT, 20))
        dense: dict[int, float] = {}
        lexical: dict[int, float] = {}
        if mode != "lexical":
            if embedder is None:
                raise KnowledgeIndexError("dense search needs the embedding model")
            scores, rows = self.dense.search(self.query_vector(turns, embedder), depth)
            dense = {int(r): float(s) for r, s in zip(rows[0], scores[0], strict=True) if r >= 0}
        if mode != "dense":
            query = self.lexical.query_vector((t.text, t.weight) for t in turns)
            lexical = dict(self.lexical.search(query, depth))
        if mode == "dense":
            order = sorted(dense, key=lambda r: dense[r], reverse=True)
        elif mode == "lexical":
            order = sorted(lexical, key=lambda r: lexical[r], reverse=True)
        elif mode == "convex":
            fused = convex_fusion(
                {str(r): s for r, s in dense.items()}, {str(r): s for r, s in lexical.items()}
            )
            order = [int(r) for r, _ in fused]
        else:
            by_dense = sorted(dense, key=lambda r: dense[r], reverse=True)
            by_lexical = sorted(lexical, key=lambda r: lexical[r], reverse=True)
            fused_rrf = reciprocal_rank_fusion(
                [[str(r) for r in by_dense], [str(r) for r in by_lexical]]
            )
            order = [int(r) for r, _ in fused_rrf]
        hits: list[Hit] = []
        seen: set[str] = set()
        for row in order:
            passage = self.passages[row]
            if passage.article_id in seen:
                continue  # an article is suggested once, by its best passage
            seen.add(passage.article_id)
            dense_score = dense.get(row)
            lexical_score = lexical.get(row)
            if mode == "lexical" or dense_score is None:
                confidence = lexical_confidence(lexical_score or 0.0)
            else:
                confidence = clamp01(dense_score)
            hits.append(
                Hit(
                    article_id=passage.article_id,
                    title=passage.title,
                    snippet=passage.text,
                    url=passage.url,
                    tags=passage.tags,
                    score=round(confidence, 4),
                    dense_score=None if dense_score is None else round(dense_score, 4),
                    lexical_score=None if lexical_score is None else round(lexical_score, 4),
                    passage=passage.number,
                )
            )
            if len(hits) >= k:
                break
        return hits


class IndexCache:
    """The indexes one process serves, loaded on first use and reloaded when CURRENT moves.

    A missing or unusable index is remembered as such (with its error) and looked at again
    at most every `retry_s`, so a search on a source that is not ready costs a `stat`.
    """

    def __init__(self, kb_dir: str | Path, *, model: str, retry_s: float = 5.0) -> None:
        self.kb_dir = Path(kb_dir)
        self.model = model
        self.retry_s = retry_s
        self._lock = threading.Lock()
        self._loaded: dict[str, KnowledgeIndex] = {}
        self._errors: dict[str, tuple[float, str]] = {}

    def get(self, source_id: str, *, dimension: int | None = None) -> KnowledgeIndex:
        root = source_dir(self.kb_dir, source_id)
        current = read_current(root)
        with self._lock:
            loaded = self._loaded.get(source_id)
            if loaded is not None and loaded.version == current:
                return loaded
            failed = self._errors.get(source_id)
            if (
                failed is not None
                and time.monotonic() - failed[0] < self.retry_s
                and (loaded is None)
            ):
                raise KnowledgeIndexError(failed[1])
            try:
                index = KnowledgeIndex.load(
                    self.kb_dir, source_id, model=self.model, dimension=dimension, version=current
                )
            except KnowledgeIndexError as exc:
                self._errors[source_id] = (time.monotonic(), str(exc))
                if loaded is not None:
                    return loaded  # keep serving the version we have
                raise
            self._errors.pop(source_id, None)
            self._loaded[source_id] = index
            return index


__all__ = [
    "SEARCH_MODES",
    "Hit",
    "IndexCache",
    "IndexNotFound",
    "IngestReport",
    "KnowledgeIndex",
    "KnowledgeIndexError",
    "SearchMode",
    "check_source_id",
    "index_status",
    "ingest",
    "read_current",
    "source_dir",
]
