"""`assist-kb`: build, inspect, query and evaluate the local knowledge bases (C4).

    assist-kb ingest <source_id> <folder | file.jsonl | file.csv>   build or update an index
    assist-kb status                                                 configured sources
    assist-kb search <source_id> "<question or transcript>"          try a query
    assist-kb evaluate <source_id> <labelled.jsonl>                  hit@1, hit@3, MRR per mode

Defaults come from the same settings as the server (`ASSIST_KB_DIR`, `ASSIST_KB_MODEL`,
passage length and overlap, `.env`), so an index is built where the workers look for it.
Exit status: 0 done, 1 nothing could be ingested or the index is unusable, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from assist.settings import Settings, get_settings

EVAL_MODES = ("lexical", "dense", "hybrid", "convex")


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "kb_dir", None):
        overrides["kb_dir"] = args.kb_dir
    if getattr(args, "model", None):
        overrides["kb_model"] = args.model
    if getattr(args, "runtime", None):
        overrides["kb_runtime"] = args.runtime
    settings = get_settings()
    return settings.model_copy(update=overrides) if overrides else settings


def cmd_ingest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from assist.kb.articles import ArticleSourceError, load_articles
    from assist.kb.embedder import EmbedderError
    from assist.kb.index import check_source_id, ingest
    from assist.services.local_kb import embedder_for

    settings = _settings(args)
    try:
        check_source_id(args.source_id)
        loaded = load_articles(args.path, max_file_bytes=settings.kb_max_file_bytes)
    except (ArticleSourceError, ValueError) as exc:
        print(f"assist-kb: {exc}", file=sys.stderr)
        return 2
    for skipped in loaded.skipped:
        print(f"skipped {skipped.source}: {skipped.reason}", file=sys.stderr)
    if not loaded.articles:
        print(f"assist-kb: no article could be loaded from {args.path}", file=sys.stderr)
        return 1
    print(f"{len(loaded.articles)} articles loaded from {args.path}; loading the model ...")
    try:
        embedder = embedder_for(settings)
    except EmbedderError as exc:
        print(f"assist-kb: {exc}", file=sys.stderr)
        return 1
    bar = tqdm(total=0, unit="passage", desc="embedding", disable=args.quiet)

    def on_total(total: int) -> None:
        bar.total = total
        bar.refresh()

    report = ingest(
        loaded.articles,
        kb_dir=settings.kb_dir,
        source_id=args.source_id,
        embedder=embedder,
        passage_words=settings.kb_passage_words,
        passage_overlap=settings.kb_passage_overlap_words,
        ann_min_passages=settings.kb_ann_min_passages,
        batch_size=args.batch_size,
        progress=bar.update,
        on_total=on_total,
    )
    bar.close()
    if report.unchanged:
        print(f"{args.source_id}: nothing changed; version {report.version} stays current")
    else:
        rate = report.embedded / report.embed_seconds if report.embed_seconds else 0.0
        print(
            f"{args.source_id}: version {report.version} is current: {report.articles} articles, "
            f"{report.passages} passages ({report.embedded} embedded at {rate:.0f}/s, "
            f"{report.reused} reused), {report.removed_articles} articles removed, "
            f"{report.dense_index} index, {report.seconds:.1f} s"
        )
    if args.json:
        print(json.dumps(report.as_json()))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from assist.kb.index import index_status

    settings = _settings(args)
    sources = args.source_ids or list(settings.local_kb_source_ids)
    if not sources:
        print("no local knowledge source configured (ASSIST_LOCAL_KB_SOURCE_IDS)")
        return 0
    ready = True
    for source_id in sources:
        status = index_status(settings.kb_dir, source_id, model=settings.kb_model)
        ready &= status["status"] == "ready"
        print(f"{source_id}: " + ", ".join(f"{k}={v}" for k, v in status.items()))
    return 0 if ready else 1


def _load(settings: Settings, source_id: str) -> tuple[Any, Any]:
    from assist.kb.index import KnowledgeIndex
    from assist.services.local_kb import embedder_for

    embedder = embedder_for(settings)
    index = KnowledgeIndex.load(
        settings.kb_dir, source_id, model=settings.kb_model, dimension=embedder.dimension
    )
    return index, embedder


def cmd_search(args: argparse.Namespace) -> int:
    from assist.core.retrieval import build_query
    from assist.kb.embedder import EmbedderError
    from assist.kb.index import KnowledgeIndexError

    settings = _settings(args)
    try:
        index, embedder = _load(settings, args.source_id)
    except (KnowledgeIndexError, EmbedderError, ValueError) as exc:
        print(f"assist-kb: {exc}", file=sys.stderr)
        return 1
    turns = build_query(args.query.replace("\\n", "\n"))
    began = time.perf_counter()
    hits = index.search(turns, embedder=embedder, k=args.k, mode=args.mode)
    elapsed = (time.perf_counter() - began) * 1000
    if not hits:
        print("no hits")
    for rank, hit in enumerate(hits, start=1):
        print(
            f"{rank}. {hit.article_id}  score {hit.score:.3f} "
            f"(dense {hit.dense_score}, bm25 {hit.lexical_score})  {hit.title}"
        )
        print(f"   {hit.snippet[:160]}...")
    print(f"({args.mode}, {index.size} passages, {elapsed:.1f} ms)")
    return 0


def evaluate(
    index: Any, embedder: Any, examples: list[dict[str, str]], *, k: int = 10
) -> dict[str, dict[str, float]]:
    """hit@1, hit@3 and MRR@k of every search mode on labelled (utterance, expected) pairs."""
    from assist.core.retrieval import build_query

    results: dict[str, dict[str, float]] = {}
    for mode in EVAL_MODES:
        hit1 = hit3 = reciprocal = 0.0
        for example in examples:
            hits = index.search(
                build_query(example["utterance"]), embedder=embedder, k=k, mode=mode
            )
            ids = [h.article_id for h in hits]
            if example["expected"] in ids:
                position = ids.index(example["expected"]) + 1
                hit1 += position == 1
                hit3 += position <= 3
                reciprocal += 1.0 / position
        n = max(len(examples), 1)
        results[mode] = {
            "hit@1": round(hit1 / n, 3),
            "hit@3": round(hit3 / n, 3),
            "mrr": round(reciprocal / n, 3),
        }
    return results


def read_examples(path: Path) -> list[dict[str, str]]:
    examples = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        data = json.loads(line)
        if not isinstance(data, dict) or not {"utterance", "expected"} <= data.keys():
            raise ValueError(f"{path}:{number}: needs 'utterance' and 'expected'")
        examples.append({"utterance": str(data["utterance"]), "expected": str(data["expected"])})
    return examples


def cmd_evaluate(args: argparse.Namespace) -> int:
    from assist.kb.embedder import EmbedderError
    from assist.kb.index import KnowledgeIndexError

    settings = _settings(args)
    try:
        examples = [e for path in args.labelled for e in read_examples(Path(path))]
        index, embedder = _load(settings, args.source_id)
    except (OSError, ValueError, KnowledgeIndexError, EmbedderError) as exc:
        print(f"assist-kb: {exc}", file=sys.stderr)
        return 1
    results = evaluate(index, embedder, examples, k=args.k)
    print(
        f"{args.source_id}: {len(examples)} labelled utterances, "
        f"{index.size} passages, model {settings.kb_model}"
    )
    print()
    print("| mode | hit@1 | hit@3 | MRR@10 |")
    print("|---|---|---|---|")
    for mode, figures in results.items():
        cells = " | ".join(f"{figures[name]:.3f}" for name in ("hit@1", "hit@3", "mrr"))
        print(f"| {mode} | {cells} |")
    if args.json:
        print(json.dumps(results))
    return 0


def cmd_prepare_model(args: argparse.Namespace) -> int:
    from assist.kb.embedder import EmbedderError
    from assist.services.local_kb import embedder_for

    settings = _settings(args)
    began = time.perf_counter()
    try:
        embedder = embedder_for(settings)
        embedder.encode(["ready"])
    except EmbedderError as exc:
        print(f"assist-kb: {exc}", file=sys.stderr)
        return 1
    print(
        f"model {settings.kb_model} ready on {embedder.runtime} "
        f"({embedder.dimension} dimensions, {time.perf_counter() - began:.1f} s)"
    )
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="assist-kb", description=__doc__.split("\n\n")[0])
    root.add_argument("--kb-dir", help="index directory (default: ASSIST_KB_DIR)")
    root.add_argument("--model", help="embedding model (default: ASSIST_KB_MODEL)")
    root.add_argument(
        "--runtime", choices=("onnx", "torch"), help="embedding runtime (ASSIST_KB_RUNTIME)"
    )
    commands = root.add_subparsers(dest="command", required=True)

    ingest = commands.add_parser("ingest", help="build or update a knowledge base's index")
    ingest.add_argument("source_id")
    ingest.add_argument("path", help="folder of .md/.txt files, a .jsonl or a .csv file")
    ingest.add_argument("--batch-size", type=int, default=64)
    ingest.add_argument("--quiet", action="store_true", help="no progress bar")
    ingest.add_argument("--json", action="store_true", help="also print the report as JSON")
    ingest.set_defaults(run=cmd_ingest)

    status = commands.add_parser("status", help="is each knowledge base ready?")
    status.add_argument("source_ids", nargs="*")
    status.set_defaults(run=cmd_status)

    search = commands.add_parser("search", help="search one knowledge base")
    search.add_argument("source_id")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=5)
    search.add_argument("--mode", choices=EVAL_MODES, default="hybrid")
    search.set_defaults(run=cmd_search)

    evaluate_ = commands.add_parser("evaluate", help="hit@1, hit@3, MRR of every search mode")
    evaluate_.add_argument("source_id")
    evaluate_.add_argument("labelled", nargs="+", help='JSONL of {"utterance", "expected"}')
    evaluate_.add_argument("-k", type=int, default=10)
    evaluate_.add_argument("--json", action="store_true")
    evaluate_.set_defaults(run=cmd_evaluate)

    prepare = commands.add_parser(
        "prepare-model",
        help="load the model now (the onnx runtime exports it once into the model cache)",
    )
    prepare.set_defaults(run=cmd_prepare_model)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
