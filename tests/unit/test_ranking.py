"""assist.core.ranking: score, merge, order, suppress and cut (DESIGN.md §7).

Expected scores are computed here from the documented formula

    score = w_conf * confidence + w_skill * skill_bonus + w_fb * feedback_signal

with the default weights 0.6 / 0.3 / 0.1 and skill bonus 0.15, and feedback_signal
(accepted + 1) / (shown + 2), 0.5 with no history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pytest

from assist.core.models import Candidate, FeedbackStats
from assist.core.ranking import RankingOutcome, RankingWeights, merge_duplicates, rank

W_CONF, W_SKILL, W_FB, BONUS = 0.6, 0.3, 0.1, 0.15
NO_HISTORY = 0.5


def expected_score(confidence: float, *, skill: bool = False, signal: float = NO_HISTORY) -> float:
    return W_CONF * confidence + W_SKILL * (BONUS if skill else 0.0) + W_FB * signal


def cand(
    id: str,
    confidence: float,
    *,
    title: str | None = None,
    ks: str = "kb-1",
    tags: Sequence[str] = (),
    source: str = "async-query",
    content: str | None = None,
) -> Candidate:
    return Candidate(
        id=id,
        title=title if title is not None else f"Article {id}",
        content=content if content is not None else f"content of {id}",
        confidence=confidence,
        knowledge_source_id=ks,
        tags=tuple(tags),
        source=source,
    )


def run(
    candidates: Sequence[Candidate],
    *,
    skills: Iterable[str] = (),
    feedback: Mapping[str, FeedbackStats] | None = None,
    weights: RankingWeights | None = None,
    shown: Mapping[str, float] | None = None,
    max_results: int = 10,
) -> RankingOutcome:
    return rank(
        candidates,
        agent_skills=skills,
        feedback=feedback or {},
        weights=weights or RankingWeights(),
        previously_shown=shown or {},
        max_results=max_results,
    )


def ids(outcome: RankingOutcome) -> list[str]:
    return [s.id for s in outcome.ranked]


def test_default_weights_are_the_documented_ones() -> None:
    weights = RankingWeights()
    assert (weights.confidence, weights.skill, weights.feedback, weights.skill_bonus) == (
        W_CONF,
        W_SKILL,
        W_FB,
        BONUS,
    )


# --- score -----------------------------------------------------------------------------------


def test_score_without_skill_or_history() -> None:
    (only,) = run([cand("a", 0.8)]).ranked
    assert only.score == pytest.approx(0.6 * 0.8 + 0.3 * 0.0 + 0.1 * 0.5, abs=1e-6)
    assert only.why.skill_bonus == 0.0
    assert only.why.feedback_signal == 0.5


def test_score_with_skill_match_and_history() -> None:
    history = {"a": FeedbackStats(shown=3, accepted=2)}  # signal (2+1)/(3+2) = 0.6
    (only,) = run([cand("a", 0.7, tags=["billing"])], skills=["billing"], feedback=history).ranked
    assert only.score == pytest.approx(0.6 * 0.7 + 0.3 * 0.15 + 0.1 * 0.6, abs=1e-6)
    assert only.why.feedback_signal == pytest.approx(0.6)
    assert (only.why.feedback_shown, only.why.feedback_accepted) == (3, 2)


@pytest.mark.parametrize(
    ("shown", "accepted", "signal"),
    [(0, 0, 0.5), (1, 0, 1 / 3), (1, 1, 2 / 3), (10, 10, 11 / 12), (8, 0, 0.1)],
)
def test_feedback_signal_in_the_score(shown: int, accepted: int, signal: float) -> None:
    history = {"a": FeedbackStats(shown=shown, accepted=accepted)}
    (only,) = run([cand("a", 0.5)], feedback=history).ranked
    assert only.why.feedback_signal == pytest.approx(signal, abs=1e-6)
    assert only.score == pytest.approx(expected_score(0.5, signal=signal), abs=1e-6)


def test_feedback_of_another_suggestion_does_not_count() -> None:
    history = {"other": FeedbackStats(shown=10, accepted=10)}
    (only,) = run([cand("a", 0.5)], feedback=history).ranked
    assert only.why.feedback_signal == 0.5


@pytest.mark.parametrize("skill", ["billing", "Billing", "  BILLING  ", "\tbilling\n"])
def test_skill_match_ignores_case_and_surrounding_whitespace(skill: str) -> None:
    (only,) = run([cand("a", 0.5, tags=["Billing"])], skills=[skill]).ranked
    assert only.why.skill_bonus == BONUS
    assert only.why.matched_skills == ("Billing",)
    assert only.score == pytest.approx(expected_score(0.5, skill=True), abs=1e-6)


def test_tag_whitespace_is_ignored_too() -> None:
    (only,) = run([cand("a", 0.5, tags=[" refunds "])], skills=["REFUNDS"]).ranked
    assert only.why.skill_bonus == BONUS


@pytest.mark.parametrize(
    ("skills", "tags"),
    [
        (["sales"], ["billing"]),
        ([], ["billing"]),
        (["billing"], []),
        (["bill"], ["billing"]),  # no substring matching
        (["   "], ["", " "]),  # blank skills never match blank tags
    ],
)
def test_no_skill_bonus_without_a_matching_tag(skills: list[str], tags: list[str]) -> None:
    (only,) = run([cand("a", 0.5, tags=tags)], skills=skills).ranked
    assert only.why.skill_bonus == 0.0
    assert only.why.matched_skills == ()
    assert only.score == pytest.approx(expected_score(0.5), abs=1e-6)


def test_the_bonus_is_given_once_however_many_skills_match() -> None:
    (only,) = run(
        [cand("a", 0.5, tags=["billing", "refunds"])], skills=["billing", "refunds"]
    ).ranked
    assert only.why.skill_bonus == BONUS
    assert set(only.why.matched_skills) == {"billing", "refunds"}


def test_why_contributions_sum_to_the_score() -> None:
    outcome = run(
        [
            cand("a", 0.91, tags=["billing"]),
            cand("b", 0.37),
            cand("c", 0.123457, tags=["sales"]),
        ],
        skills=["billing"],
        feedback={"b": FeedbackStats(shown=7, accepted=3)},
    )
    assert len(outcome.ranked) == 3
    for suggestion in outcome.ranked:
        why = suggestion.why
        assert sum(why.contributions.values()) == pytest.approx(suggestion.score, abs=1e-6)
        assert why.contributions["confidence"] == pytest.approx(W_CONF * why.confidence, abs=1e-6)
        assert why.contributions["skill"] == pytest.approx(W_SKILL * why.skill_bonus, abs=1e-6)
        assert why.contributions["feedback"] == pytest.approx(W_FB * why.feedback_signal, abs=1e-6)
        assert why.weights == {"confidence": W_CONF, "skill": W_SKILL, "feedback": W_FB}


# --- order -----------------------------------------------------------------------------------


def test_order_is_by_score_descending() -> None:
    outcome = run(
        [cand("low", 0.2), cand("high", 0.9), cand("mid", 0.5)],
    )
    assert ids(outcome) == ["high", "mid", "low"]
    scores = [s.score for s in outcome.ranked]
    assert scores == sorted(scores, reverse=True)


def test_skill_bonus_can_lift_a_less_confident_suggestion() -> None:
    # 0.6*0.6 + 0.3*0.15 = 0.405 beats 0.6*0.65 = 0.39 (same feedback signal).
    outcome = run([cand("confident", 0.65), cand("skilled", 0.6, tags=["billing"])], skills=["b"])
    assert ids(outcome) == ["confident", "skilled"]
    outcome = run(
        [cand("confident", 0.65), cand("skilled", 0.6, tags=["billing"])], skills=["billing"]
    )
    assert ids(outcome) == ["skilled", "confident"]


def test_equal_scores_are_ordered_by_confidence() -> None:
    # "skilled": 0.6*0.5 + 0.3*0.15 = 0.345; "plain": 0.6*0.575 = 0.345 (plus the same 0.05).
    outcome = run(
        [cand("skilled", 0.5, tags=["billing"]), cand("plain", 0.575)], skills=["billing"]
    )
    by_id = {s.id: s for s in outcome.ranked}
    assert by_id["skilled"].score == by_id["plain"].score  # the premise of this test
    assert ids(outcome) == ["plain", "skilled"]


def test_equal_score_and_confidence_are_ordered_by_id() -> None:
    outcome = run([cand("b", 0.5), cand("c", 0.5), cand("a", 0.5)])
    assert ids(outcome) == ["a", "b", "c"]


def test_ranks_are_one_to_n() -> None:
    outcome = run([cand(f"s{i}", i / 10) for i in range(1, 8)], max_results=5)
    assert [s.rank for s in outcome.ranked] == [1, 2, 3, 4, 5]


def test_empty_input_gives_an_empty_outcome() -> None:
    outcome = run([])
    assert outcome.ranked == () and outcome.suppressed == ()


# --- merge -----------------------------------------------------------------------------------


def test_same_id_from_two_knowledge_sources_merges() -> None:
    weak = cand("art-1", 0.6, ks="kb-a", tags=["billing"], source="async-query", content="A")
    strong = cand("art-1", 0.9, ks="kb-b", tags=["refunds"], source="knowledge-base", content="B")
    (merged,) = run([weak, strong]).ranked
    assert merged.confidence == 0.9
    assert merged.content == "B"  # the most confident copy leads
    assert merged.knowledge_source_ids[0] == "kb-b"
    assert set(merged.knowledge_source_ids) == {"kb-a", "kb-b"}
    assert set(merged.tags) == {"billing", "refunds"}
    assert set(merged.sources) == {"async-query", "knowledge-base"}
    assert merged.merged_ids == ()
    assert merged.score == pytest.approx(expected_score(0.9), abs=1e-6)


def test_union_lists_hold_no_duplicates() -> None:
    one = cand("x", 0.6, ks="kb-a", tags=["billing", "refunds"])
    two = cand("x", 0.7, ks="kb-a", tags=["refunds"])
    (merged,) = run([one, two]).ranked
    assert merged.knowledge_source_ids == ("kb-a",)
    assert sorted(merged.tags) == ["billing", "refunds"]
    assert merged.sources == ("async-query",)


def test_tags_of_a_merged_copy_earn_the_skill_bonus() -> None:
    lead = cand("x", 0.9, ks="kb-a")
    other = cand("x", 0.4, ks="kb-b", tags=["billing"])
    (merged,) = run([lead, other], skills=["billing"]).ranked
    assert merged.why.skill_bonus == BONUS
    assert merged.score == pytest.approx(expected_score(0.9, skill=True), abs=1e-6)


def test_same_title_ignoring_case_and_spacing_merges() -> None:
    a = cand("kb-a-17", 0.6, title="How to  Reset a Password", ks="kb-a")
    b = cand("kb-b-99", 0.8, title="  how to reset A password ", ks="kb-b")
    (merged,) = run([a, b]).ranked
    assert merged.id == "kb-b-99"
    assert merged.merged_ids == ("kb-a-17",)
    assert set(merged.knowledge_source_ids) == {"kb-a", "kb-b"}


def test_different_titles_and_ids_do_not_merge() -> None:
    outcome = run([cand("a", 0.6, title="Reset a password"), cand("b", 0.6, title="Reset a PIN")])
    assert sorted(ids(outcome)) == ["a", "b"]


def test_empty_titles_do_not_merge_distinct_ids() -> None:
    outcome = run([cand("a", 0.6, title=""), cand("b", 0.5, title="")])
    assert ids(outcome) == ["a", "b"]


def test_merge_duplicates_groups_by_confidence_with_the_leader_first() -> None:
    groups = merge_duplicates(
        [
            cand("x", 0.3, title="T"),
            cand("y", 0.9, title="t"),
            cand("z", 0.5, title="Other"),
            cand("x", 0.7, title="T"),
        ]
    )
    assert [g.primary.id for g in groups] == ["y", "z"]
    assert groups[0].primary.confidence == 0.9
    assert sorted(groups[0].ids) == ["x", "y"]
    assert groups[1].ids == ["z"]


# --- suppression and the cut -----------------------------------------------------------------


def test_previously_shown_at_the_same_score_is_suppressed() -> None:
    score = round(expected_score(0.8), 6)
    outcome = run([cand("a", 0.8), cand("b", 0.5)], shown={"a": score})
    assert ids(outcome) == ["b"]
    (suppressed,) = outcome.suppressed
    assert suppressed.id == "a"
    assert suppressed.previous_score == score
    assert suppressed.score == pytest.approx(score, abs=1e-6)


def test_previously_shown_at_a_higher_score_is_suppressed() -> None:
    outcome = run([cand("a", 0.8)], shown={"a": 0.99})
    assert outcome.ranked == ()
    assert [s.id for s in outcome.suppressed] == ["a"]


def test_a_suggestion_whose_score_rose_is_shown_again() -> None:
    # Shown before at confidence 0.6; now 0.8 -> the score rose by 0.12.
    outcome = run([cand("a", 0.8)], shown={"a": round(expected_score(0.6), 6)})
    assert ids(outcome) == ["a"]
    assert outcome.suppressed == ()


def test_new_feedback_can_raise_a_score_above_its_shown_value() -> None:
    shown = {"a": round(expected_score(0.8), 6)}
    liked = {"a": FeedbackStats(shown=2, accepted=2)}  # signal 0.75 > 0.5
    assert ids(run([cand("a", 0.8)], shown=shown, feedback=liked)) == ["a"]


def test_the_cut_to_max_results_happens_after_suppression() -> None:
    candidates = [cand("a", 0.9), cand("b", 0.8), cand("c", 0.7), cand("d", 0.6)]
    outcome = run(candidates, shown={"a": 1.0}, max_results=2)
    assert ids(outcome) == ["b", "c"]
    assert [s.rank for s in outcome.ranked] == [1, 2]
    assert [s.id for s in outcome.suppressed] == ["a"]


def test_max_results_keeps_the_best() -> None:
    outcome = run([cand(f"s{i}", i / 10) for i in range(1, 10)], max_results=3)
    assert ids(outcome) == ["s9", "s8", "s7"]


# --- custom weights --------------------------------------------------------------------------


def test_custom_weights_change_the_order() -> None:
    confident = cand("confident", 0.9)
    adopted = cand("adopted", 0.5)
    history = {"adopted": FeedbackStats(shown=10, accepted=10)}
    # Default: 0.6*0.9 + 0.05 = 0.59 vs 0.6*0.5 + 0.1*11/12 = 0.392.
    assert ids(run([confident, adopted], feedback=history)) == ["confident", "adopted"]
    feedback_heavy = RankingWeights(confidence=0.1, skill=0.0, feedback=0.9)
    # 0.1*0.9 + 0.9*0.5 = 0.54 vs 0.1*0.5 + 0.9*11/12 = 0.875.
    outcome = run([confident, adopted], feedback=history, weights=feedback_heavy)
    assert ids(outcome) == ["adopted", "confident"]
    first = outcome.ranked[0]
    assert first.score == pytest.approx(0.1 * 0.5 + 0.9 * 11 / 12, abs=1e-6)
    assert first.why.weights == {"confidence": 0.1, "skill": 0.0, "feedback": 0.9}


def test_a_custom_skill_bonus_is_used() -> None:
    weights = RankingWeights(skill_bonus=1.0)
    (only,) = run([cand("a", 0.5, tags=["billing"])], skills=["billing"], weights=weights).ranked
    assert only.why.skill_bonus == 1.0
    assert only.score == pytest.approx(0.6 * 0.5 + 0.3 * 1.0 + 0.1 * 0.5, abs=1e-6)
