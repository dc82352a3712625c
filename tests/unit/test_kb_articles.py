"""Knowledge articles from files and their passages (assist.kb.articles).

Loading must survive bad input: each file, line or row that cannot be an article is listed
in `skipped` with a reason, and the rest still loads.
"""

from __future__ import annotations

import json
import math
from itertools import pairwise
from pathlib import Path

import pytest

from assist.kb.articles import (
    Article,
    ArticleSourceError,
    Loaded,
    load_articles,
    parse_markdown,
    split_passages,
)


def reasons(loaded: Loaded) -> dict[str, str]:
    return {skipped.source: skipped.reason for skipped in loaded.skipped}


def by_id(loaded: Loaded) -> dict[str, Article]:
    return {article.id: article for article in loaded.articles}


# Folders of Markdown / text -------------------------------------------------------------------


def test_folder_with_and_without_front_matter(tmp_path: Path) -> None:
    (tmp_path / "billing").mkdir()
    (tmp_path / "billing" / "refunds.md").write_text(
        "---\n"
        "id: refund-policy\n"
        "title: Refund policy\n"
        "tags: Billing, Refunds ,\n"
        "url: https://kb.example/refunds\n"
        "---\n"
        "# A heading that is not the title\n\n"
        "Refunds take five working days.\n"
    )
    (tmp_path / "reset.txt").write_text("How to reset a password\n\nOpen the settings page.\n")
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "lost.markdown").write_text("\n## Lost card\n\nBlock it in the app.\n")
    (tmp_path / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")  # not an article kind

    loaded = load_articles(tmp_path)

    assert loaded.skipped == []
    articles = by_id(loaded)
    assert set(articles) == {"refund-policy", "reset", "cards/lost"}

    refunds = articles["refund-policy"]
    assert refunds.title == "Refund policy"
    assert refunds.tags == ("billing", "refunds")
    assert refunds.url == "https://kb.example/refunds"
    assert refunds.body == "# A heading that is not the title\n\nRefunds take five working days."

    reset = articles["reset"]
    assert reset.title == "How to reset a password"
    assert reset.tags == ()
    assert reset.url == ""

    assert articles["cards/lost"].title == "Lost card"


def test_bad_files_in_a_folder_are_skipped_with_a_reason(tmp_path: Path) -> None:
    limit = 200
    (tmp_path / "good.md").write_text("# Good\n\nThis one loads.\n")
    (tmp_path / "empty.md").write_bytes(b"")
    (tmp_path / "blank.txt").write_text("  \n\n\t\n")
    (tmp_path / "binary.md").write_bytes(b"# Title\n\nsome\x00bytes\n")
    (tmp_path / "large.md").write_text("# Large\n\n" + "word " * limit)
    (tmp_path / "latin1.md").write_bytes("# Café\n\nCrème brûlée.\n".encode("latin-1"))
    (tmp_path / "no-body.md").write_text("---\nid: no-body\ntitle: Nothing\n---\n\n")

    loaded = load_articles(tmp_path, max_file_bytes=limit)

    assert [article.id for article in loaded.articles] == ["good"]
    why = reasons(loaded)
    assert set(why) == {
        "empty.md",
        "blank.txt",
        "binary.md",
        "large.md",
        "latin1.md",
        "no-body.md",
    }
    assert why["empty.md"] == "empty file"
    assert why["blank.txt"] == "empty file"
    assert "binary" in why["binary.md"]
    assert "too large" in why["large.md"]
    assert str(limit) in why["large.md"]
    assert "not UTF-8" in why["latin1.md"]
    assert "body" in why["no-body.md"]


def test_a_file_of_exactly_the_limit_loads(tmp_path: Path) -> None:
    content = b"# Title\n\nbody\n"
    (tmp_path / "exact.md").write_bytes(content)

    loaded = load_articles(tmp_path, max_file_bytes=len(content))

    assert [article.id for article in loaded.articles] == ["exact"]


def test_utf8_byte_order_mark_does_not_hide_front_matter(tmp_path: Path) -> None:
    (tmp_path / "bom.md").write_bytes("---\nid: with-bom\n---\nBody text\n".encode("utf-8-sig"))

    loaded = load_articles(tmp_path)

    assert [article.id for article in loaded.articles] == ["with-bom"]
    assert loaded.articles[0].body == "Body text"


def test_duplicate_ids_in_a_folder_keep_the_first(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("---\nid: same\n---\nFirst body\n")
    (tmp_path / "b.md").write_text("---\nid: same\n---\nSecond body\n")
    (tmp_path / "c.md").write_text("Third body\n")

    loaded = load_articles(tmp_path)

    assert [(a.id, a.body) for a in loaded.articles] == [
        ("same", "First body"),
        ("c", "Third body"),
    ]
    assert list(reasons(loaded)) == ["b.md"]
    assert "duplicate" in reasons(loaded)["b.md"]
    assert "same" in reasons(loaded)["b.md"]


# JSON Lines -----------------------------------------------------------------------------------


def test_jsonl_loads_good_lines_and_skips_bad_ones(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "a", "title": "Refunds", "body": "Five days.", "tags": ["Billing"]}),
        "",
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"id": "b", "title": "No body"}),
        json.dumps({"id": "c", "title": "Cards", "body": "Block it.", "tags": "cards, lost"}),
        json.dumps({"id": "a", "title": "Again", "body": "Duplicate."}),
        json.dumps({"id": "d", "title": "Link", "body": "Text", "url": " https://x/d "}),
    ]
    path = tmp_path / "kb.jsonl"
    path.write_text("\n".join(lines) + "\n")

    loaded = load_articles(path)

    articles = by_id(loaded)
    assert list(articles) == ["a", "c", "d"]
    assert articles["a"].tags == ("billing",)
    assert articles["a"].title == "Refunds"
    assert articles["c"].tags == ("cards", "lost")
    assert articles["d"].url == "https://x/d"
    why = reasons(loaded)
    assert set(why) == {"kb.jsonl:3", "kb.jsonl:4", "kb.jsonl:5", "kb.jsonl:7"}
    assert "invalid JSON" in why["kb.jsonl:3"]
    assert why["kb.jsonl:4"] == "not a JSON object"
    assert "body" in why["kb.jsonl:5"]
    assert "duplicate" in why["kb.jsonl:7"]


def test_empty_jsonl_file_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "kb.jsonl"
    path.write_text("\n\n")

    loaded = load_articles(path)

    assert loaded.articles == []
    assert reasons(loaded) == {"kb.jsonl": "empty file"}


# CSV ------------------------------------------------------------------------------------------


def test_csv_loads_rows_with_a_header(tmp_path: Path) -> None:
    path = tmp_path / "kb.csv"
    path.write_text(
        " ID ,Title,BODY,tags,url\n"
        'a,Refunds,"Five days, usually.","billing,refunds",https://kb/a\n'
        'b,Cards,"Block it.\n\nThen order a new one.",,\n'
        "a,Again,Duplicate,,\n"
    )

    loaded = load_articles(path)

    articles = by_id(loaded)
    assert list(articles) == ["a", "b"]
    assert articles["a"].body == "Five days, usually."
    assert articles["a"].tags == ("billing", "refunds")
    assert articles["a"].url == "https://kb/a"
    assert articles["b"].body == "Block it.\n\nThen order a new one."
    assert articles["b"].tags == ()
    assert len(loaded.skipped) == 1
    assert "duplicate" in loaded.skipped[0].reason


def test_csv_row_without_a_body_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "kb.csv"
    path.write_text("id,title,body\na,Short row\nb,Fine,Text\n")

    loaded = load_articles(path)

    assert [article.id for article in loaded.articles] == ["b"]
    assert list(reasons(loaded)) == ["kb.csv:2"]
    assert "body" in reasons(loaded)["kb.csv:2"]


def test_csv_whose_header_lacks_a_column_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "kb.csv"
    path.write_text("id,text\na,Some text\n")

    loaded = load_articles(path)

    assert loaded.articles == []
    assert reasons(loaded) == {"kb.csv": "CSV header lacks body, title"}


# Sources that cannot be read at all -----------------------------------------------------------


def test_missing_source_raises(tmp_path: Path) -> None:
    with pytest.raises(ArticleSourceError, match="no such file"):
        load_articles(tmp_path / "nowhere")


@pytest.mark.parametrize("name", ["article.md", "kb.json", "kb.tsv"])
def test_a_file_of_unknown_kind_raises(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("id,title,body\n")

    with pytest.raises(ArticleSourceError, match="expected a folder"):
        load_articles(path)


# parse_markdown -------------------------------------------------------------------------------


def test_parse_markdown_reads_front_matter() -> None:
    fields = parse_markdown(
        "---\r\nID: doc-1\r\nTitle: Card fees\r\nurl: https://kb/x?a=b:c\r\nnot a field\r\n---\r\n"
        "Body line\r\n",
        default_id="fallback",
    )

    assert fields == {
        "id": "doc-1",
        "title": "Card fees",
        "url": "https://kb/x?a=b:c",
        "body": "Body line",
    }


def test_parse_markdown_without_front_matter_uses_default_id_and_first_heading() -> None:
    fields = parse_markdown("\n\n### Lost card\n\nBlock it.\n", default_id="cards/lost")

    assert fields == {
        "id": "cards/lost",
        "title": "Lost card",
        "body": "### Lost card\n\nBlock it.",
    }


def test_parse_markdown_title_falls_back_to_the_first_line() -> None:
    fields = parse_markdown("  First line here  \nSecond line\n", default_id="x")

    assert fields["title"] == "First line here"


def test_a_rule_after_the_start_is_not_front_matter() -> None:
    text = "Intro\n---\nid: not-an-id\n---\n"

    fields = parse_markdown(text, default_id="rule")

    assert fields["id"] == "rule"
    assert fields["body"] == text.strip()


# split_passages -------------------------------------------------------------------------------


def numbered_article(count: int) -> Article:
    """An article whose body words are w0..w{count-1}, laid out in Markdown paragraphs."""
    words = [f"w{i}" for i in range(count)]
    paragraphs = [" ".join(words[i : i + 7]) for i in range(0, count, 7)]
    return Article(
        id="doc",
        title="Numbered",
        body="\n\n".join(paragraphs),
        tags=("billing",),
        url="https://kb/doc",
    )


@pytest.mark.parametrize(("count", "words", "overlap"), [(100, 20, 5), (35, 20, 5), (64, 10, 9)])
def test_passages_overlap_exactly_and_cover_every_word(
    count: int, words: int, overlap: int
) -> None:
    article = numbered_article(count)

    passages = split_passages(article, words=words, overlap=overlap)

    split = [passage.text.split() for passage in passages]
    assert len(passages) == math.ceil((count - words) / (words - overlap)) + 1
    assert all(len(chunk) <= words for chunk in split)
    for before, after in pairwise(split):
        assert before[-overlap:] == after[:overlap]
        assert len(set(before) & set(after)) == overlap
        assert len(after) > overlap  # never a passage that only repeats the overlap
    assert set().union(*split) == {f"w{i}" for i in range(count)}
    assert split[0][0] == "w0"
    assert split[-1][-1] == f"w{count - 1}"


def test_passages_carry_the_article_fields() -> None:
    passages = split_passages(numbered_article(50), words=20, overlap=5)

    assert [passage.number for passage in passages] == list(range(len(passages)))
    for passage in passages:
        assert (passage.article_id, passage.title, passage.url, passage.tags) == (
            "doc",
            "Numbered",
            "https://kb/doc",
            ("billing",),
        )
        assert passage.searchable == f"Numbered. {passage.text}"


def test_markdown_marks_are_not_words() -> None:
    article = Article(
        id="md",
        title="Steps",
        body="# Replace a card\n\n- block the card\n* order one\n+ wait\n\n"
        "1. activate it\n2) set a PIN\n\n## Fees\nNone apply - ever.",
    )

    (passage,) = split_passages(article, words=50, overlap=10)

    assert passage.text == (
        "Replace a card block the card order one wait activate it set a PIN Fees None apply - ever."
    )


def test_a_short_article_is_one_passage() -> None:
    article = Article(id="short", title="Short", body="Only a few words here.")

    passages = split_passages(article)

    assert len(passages) == 1
    assert passages[0].text == "Only a few words here."
    assert passages[0].number == 0


@pytest.mark.parametrize("overlap", [20, 21])
def test_overlap_not_smaller_than_passage_raises(overlap: int) -> None:
    with pytest.raises(ValueError, match="overlap"):
        split_passages(numbered_article(40), words=20, overlap=overlap)


def test_blank_id_title_or_body_is_skipped_not_loaded(tmp_path: Path) -> None:
    source = tmp_path / "kb.jsonl"
    lines = [
        {"id": "   ", "title": "T", "body": "text"},
        {"id": "a", "title": "  ", "body": "text"},
        {"id": "b", "title": "T", "body": "   "},
        {"id": "c", "title": "T", "body": "kept"},
    ]
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    loaded = load_articles(source)
    assert [a.id for a in loaded.articles] == ["c"]
    assert len(loaded.skipped) == 3
    assert not any("duplicate" in s.reason for s in loaded.skipped)
