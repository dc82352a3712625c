"""Lexical search of the local knowledge base: tokens and Okapi BM25 (assist.kb.lexical).

Expected scores come from the textbook formula with k1 = 1.2, b = 0.75 and the
non-negative idf `ln(1 + (N - df + 0.5) / (df + 0.5))`.
"""

from __future__ import annotations

import math
from itertools import pairwise
from pathlib import Path

import pytest

from assist.kb.lexical import LexicalIndex, lexical_confidence, stem, tokenize

K1, B = 1.2, 0.75


def bm25(tf: int, length: int, average: float, df: int, n: int) -> float:
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / average))


def search(index: LexicalIndex, text: str, k: int = 10) -> list[tuple[int, float]]:
    return index.search(index.query_vector([(text, 1.0)]), k)


def rows(hits: list[tuple[int, float]]) -> list[int]:
    return [row for row, _ in hits]


# Tokens ---------------------------------------------------------------------------------------


def test_forms_of_a_word_share_a_stem() -> None:
    assert len({stem(w) for w in ("charge", "charged", "charges", "charging")}) == 1
    assert len({stem(w) for w in ("refund", "refunds", "refunded", "refunding")}) == 1
    assert stem("policies") == stem("policy")
    assert stem("charge") != stem("change")


@pytest.mark.parametrize("word", ["fee", "bus", "pin", "2024", "1000000"])
def test_short_words_and_numbers_are_kept_whole(word: str) -> None:
    assert stem(word) == word


def test_tokenize_lowercases_splits_and_drops_stop_words() -> None:
    tokens = tokenize("The customer WAS charged for the Order-42, twice!")

    assert tokens == [stem(w) for w in ("customer", "charged", "order", "42", "twice")]


def test_text_of_only_stop_words_has_no_tokens() -> None:
    assert tokenize("it was the one and only") == []
    assert tokenize("") == []


# BM25 scores ----------------------------------------------------------------------------------


def test_scores_follow_the_bm25_formula() -> None:
    index = LexicalIndex.build(["refund", "refund card fee", "card"])  # lengths 1, 3, 1

    hits = dict(search(index, "refund"))

    average = 5 / 3
    assert set(hits) == {0, 1}
    assert hits[0] == pytest.approx(bm25(1, 1, average, df=2, n=3), rel=1e-5)
    assert hits[1] == pytest.approx(bm25(1, 3, average, df=2, n=3), rel=1e-5)


def test_a_rare_query_term_outweighs_a_common_one() -> None:
    texts = [
        "duplicate account",
        "card payment",
        "card statement",
        "card balance",
        "card limit",
        "password reset",
    ]
    index = LexicalIndex.build(texts)

    hits = search(index, "duplicate card")

    assert rows(hits)[0] == 0
    assert sorted(rows(hits)) == [0, 1, 2, 3, 4]  # the passage without either term is not a hit


def test_a_longer_passage_with_the_same_term_count_scores_lower() -> None:
    index = LexicalIndex.build(["refund card", "refund card statement balance limit account"])

    hits = search(index, "refund")

    assert rows(hits) == [0, 1]
    assert hits[0][1] > hits[1][1] > 0


def test_query_term_weights_change_the_order() -> None:
    index = LexicalIndex.build(["refund policy", "card replacement"])
    refund, card = index.vocabulary[stem("refund")], index.vocabulary[stem("card")]

    assert rows(index.search({refund: 1.0, card: 0.3}, 2)) == [0, 1]
    assert rows(index.search({refund: 0.3, card: 1.0}, 2)) == [1, 0]
    single = dict(index.search({refund: 1.0}, 2))
    double = dict(index.search({refund: 2.0}, 2))
    assert double[0] == pytest.approx(2 * single[0])


def test_query_vector_adds_turn_weights_once_per_turn() -> None:
    index = LexicalIndex.build(["refund card", "card fee"])
    refund, card = index.vocabulary[stem("refund")], index.vocabulary[stem("card")]

    vector = index.query_vector(
        [("refund refund card", 1.0), ("the refunds", 0.5), ("unknown words", 2.0)]
    )

    assert vector == {refund: pytest.approx(1.5), card: pytest.approx(1.0)}


def test_search_returns_the_best_k_in_descending_order() -> None:
    texts = [
        "card",
        "card fee",
        "card fee limit",
        "card fee limit account",
        "card fee limit account balance",
        "statement",
    ]
    index = LexicalIndex.build(texts)

    best = search(index, "card", k=3)
    every = search(index, "card", k=10)

    assert rows(best) == [0, 1, 2]
    assert rows(every) == [0, 1, 2, 3, 4]
    assert best == every[:3]
    scores = [score for _, score in every]
    assert all(a > b for a, b in pairwise(scores))


@pytest.mark.parametrize("text", ["", "   ", "the and of it", "zebra quantum"])
def test_a_query_with_nothing_to_match_finds_nothing(text: str) -> None:
    index = LexicalIndex.build(["refund card", "card fee"])

    assert index.query_vector([(text, 1.0)]) == {}
    assert search(index, text) == []


def test_an_empty_index_finds_nothing() -> None:
    index = LexicalIndex.build([])

    assert index.size == 0
    assert index.search({0: 1.0}, 5) == []


# Persistence ----------------------------------------------------------------------------------


def test_save_then_load_gives_identical_results(tmp_path: Path) -> None:
    texts = [
        "How to request a refund for a duplicate charge",
        "Replacing a lost or stolen card",
        "Card fees and charges explained",
        "Resetting your online banking password",
    ]
    index = LexicalIndex.build(texts)

    index.save(tmp_path)
    loaded = LexicalIndex.load(tmp_path)

    assert loaded.size == index.size == len(texts)
    assert loaded.vocabulary == index.vocabulary
    for query in ("refund charge", "lost card", "card charges", "password", "nothing here"):
        assert search(loaded, query) == search(index, query)
    assert search(loaded, "card charges")  # the comparison above is not only of empty lists


# Confidence -----------------------------------------------------------------------------------


def test_lexical_confidence_maps_scores_into_zero_one() -> None:
    assert lexical_confidence(0.0) == 0.0
    assert lexical_confidence(-3.0) == 0.0
    assert lexical_confidence(10.0) == pytest.approx(1 - math.exp(-1))
    assert lexical_confidence(5.0, scale=5.0) == pytest.approx(1 - math.exp(-1))
    values = [lexical_confidence(score) for score in (0.5, 2.0, 8.0, 30.0, 200.0)]
    assert all(0.0 < v <= 1.0 for v in values)
    assert values == sorted(values)
    assert len(set(values)) == len(values)


@pytest.mark.parametrize("k", [0, -1])
def test_no_results_are_asked_for_none_come_back(k: int) -> None:
    index = LexicalIndex.build(["card lost", "card stolen", "new card"])
    assert index.search(index.query_vector([("card", 1.0)]), k) == []
