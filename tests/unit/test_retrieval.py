"""Query building and result fusion of the local knowledge base (assist.core.retrieval).

Expected weights follow the documented rule: the i-th most recent customer turn weighs
`decay**i`, the i-th most recent agent turn `agent_weight * decay**i` (defaults 0.5 and 0.3).
Expected fusion scores follow `Σ 1 / (k + rank)` (RRF) and `w·dense + (1-w)·lexical` over
min-max normalised scores (convex).
"""

from __future__ import annotations

import math

import pytest

from assist.core.retrieval import (
    RRF_K,
    QueryTurn,
    build_query,
    clamp01,
    clean_query_text,
    convex_fusion,
    reciprocal_rank_fusion,
)

TRANSCRIPT = """\
customer: I was charged twice for my order
agent: Let me look at your account
customer: The second charge is from yesterday
agent: I can see both charges
customer: Can you refund one of them
"""


def texts(turns: list[QueryTurn]) -> list[str]:
    return [turn.text for turn in turns]


def weights(turns: list[QueryTurn]) -> list[float]:
    return [turn.weight for turn in turns]


# build_query ----------------------------------------------------------------------------------


def test_labelled_turns_are_most_recent_first_with_decaying_weights() -> None:
    turns = build_query(TRANSCRIPT)

    # Four turns (the default max_turns): the oldest customer turn is left out.
    assert texts(turns) == [
        "Can you refund one of them",
        "I can see both charges",
        "The second charge is from yesterday",
        "Let me look at your account",
    ]
    assert weights(turns) == pytest.approx([1.0, 0.3, 0.5, 0.15])


def test_most_recent_customer_turn_weighs_one_even_when_the_agent_spoke_last() -> None:
    turns = build_query("customer: my card is blocked\nagent: which card is it")

    assert turns == [
        QueryTurn("which card is it", pytest.approx(0.3)),
        QueryTurn("my card is blocked", 1.0),
    ]
    assert turns[0].weight < turns[1].weight


def test_decay_agent_weight_and_max_turns_are_honoured() -> None:
    turns = build_query(TRANSCRIPT, max_turns=5, decay=0.25, agent_weight=0.1)

    assert texts(turns)[-1] == "I was charged twice for my order"
    assert weights(turns) == pytest.approx([1.0, 0.1, 0.25, 0.025, 0.0625])
    assert len(build_query(TRANSCRIPT, max_turns=2)) == 2


def test_speaker_labels_are_case_and_space_insensitive() -> None:
    turns = build_query("  Customer :  where is my parcel\nAGENT:checking now")

    assert turns == [
        QueryTurn("checking now", pytest.approx(0.3)),
        QueryTurn("where is my parcel", 1.0),
    ]


def test_unlabelled_text_is_one_customer_turn() -> None:
    turns = build_query("How do I reset\n\n   a customer password?  ")

    assert turns == [QueryTurn("How do I reset a customer password?", 1.0)]


@pytest.mark.parametrize(
    "placeholder", ["[CARD]", "[EMAIL]", "[PHONE]", "[NUMBER]", "[ACCOUNT]", "[POLICY_ID]"]
)
def test_redaction_placeholders_are_removed(placeholder: str) -> None:
    assert clean_query_text(f"send it to {placeholder} today") == "send it to today"
    assert build_query(f"customer: my {placeholder} please") == [QueryTurn("my please", 1.0)]


def test_other_bracketed_text_is_kept() -> None:
    assert clean_query_text("order [ORDER-7]  shipped") == "order [ORDER-7] shipped"


def test_a_turn_of_only_placeholders_is_dropped_and_does_not_decay_the_others() -> None:
    turns = build_query("customer: refund my order\ncustomer: [CARD] [NUMBER]")

    assert turns == [QueryTurn("refund my order", 1.0)]


@pytest.mark.parametrize(
    "transcript",
    [
        "",
        "   \n\n",
        "[CARD] [NUMBER]",
        "customer: [EMAIL]\nagent: [PHONE] [NUMBER]",
    ],
)
def test_nothing_left_to_search_gives_an_empty_query(transcript: str) -> None:
    assert build_query(transcript) == []


# reciprocal_rank_fusion -----------------------------------------------------------------------


def test_rrf_ranks_an_item_high_in_both_lists_above_items_found_in_one() -> None:
    dense = ["a", "b", "c"]
    lexical = ["d", "b", "e"]

    fused = dict(reciprocal_rank_fusion([dense, lexical]))
    order = [item for item, _ in reciprocal_rank_fusion([dense, lexical])]

    assert order[0] == "b"
    assert fused["b"] == pytest.approx(2 / (RRF_K + 2))
    assert fused["a"] == pytest.approx(1 / (RRF_K + 1))
    assert fused["c"] == pytest.approx(1 / (RRF_K + 3))
    # Equal scores keep the order in which the items were first seen.
    assert order == ["b", "a", "d", "c", "e"]


def test_rrf_uses_its_k() -> None:
    assert reciprocal_rank_fusion([["x", "y"], ["y"]], k=1) == [
        ("y", pytest.approx(1 / 3 + 1 / 2)),
        ("x", pytest.approx(1 / 2)),
    ]


def test_rrf_of_nothing_is_empty() -> None:
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([[], []]) == []


# convex_fusion --------------------------------------------------------------------------------


def test_convex_fusion_mixes_min_max_normalised_scores() -> None:
    dense = {"a": 0.9, "b": 0.5, "c": 0.1}  # normalised: a 1, b 0.5, c 0
    lexical = {"b": 12.0, "d": 2.0}  # normalised: b 1, d 0

    fused = convex_fusion(dense, lexical)

    assert fused == [
        ("b", pytest.approx(0.75)),
        ("a", pytest.approx(0.5)),
        ("c", pytest.approx(0.0)),
        ("d", pytest.approx(0.0)),
    ]


def test_convex_fusion_does_not_depend_on_the_scale_of_either_score() -> None:
    dense = {"a": 0.9, "b": 0.5, "c": 0.1}
    lexical = {"a": 1.0, "b": 7.0, "c": 3.0}
    scaled = {item: 100 * score + 5 for item, score in lexical.items()}

    assert convex_fusion(dense, lexical, dense_weight=0.3) == [
        (item, pytest.approx(score))
        for item, score in convex_fusion(dense, scaled, dense_weight=0.3)
    ]


def test_convex_fusion_weight_selects_the_side() -> None:
    dense = {"a": 0.9, "b": 0.1}
    lexical = {"a": 1.0, "b": 20.0}

    assert [item for item, _ in convex_fusion(dense, lexical, dense_weight=1.0)] == ["a", "b"]
    assert [item for item, _ in convex_fusion(dense, lexical, dense_weight=0.0)] == ["b", "a"]


def test_convex_fusion_of_equal_scores_counts_them_as_full() -> None:
    assert convex_fusion({"a": 0.4, "b": 0.4}, {}) == [
        ("a", pytest.approx(0.5)),
        ("b", pytest.approx(0.5)),
    ]
    assert convex_fusion({}, {}) == []


# clamp01 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (-0.5, 0.0),
        (0.0, 0.0),
        (0.25, 0.25),
        (1.0, 1.0),
        (3.0, 1.0),
        (math.inf, 1.0),
        (-math.inf, 0.0),
        (math.nan, 0.0),
    ],
)
def test_clamp01(value: float, expected: float) -> None:
    assert clamp01(value) == expected
