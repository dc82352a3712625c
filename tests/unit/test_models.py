"""Request lifecycle (RequestStatus / SuggestionRequest.moved_to) and FeedbackStats."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from assist.core.models import (
    FeedbackAction,
    FeedbackStats,
    RequestStatus,
    SuggestionRequest,
    can_transition,
)

Q, S, C, F, E = (
    RequestStatus.QUEUED,
    RequestStatus.SUBMITTED,
    RequestStatus.COMPLETED,
    RequestStatus.FAILED,
    RequestStatus.EXPIRED,
)
TERMINAL = (C, F, E)
# The lifecycle: queued -> submitted -> (completed | failed | expired), and queued may jump
# straight to a terminal state (a fast provider, a failed submission, a missed deadline).
ALLOWED = {(Q, S), (Q, C), (Q, F), (Q, E), (S, C), (S, F), (S, E)}
T0 = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)


def make_request(status: RequestStatus = Q) -> SuggestionRequest:
    return SuggestionRequest(
        request_id="req_1",
        conversation_id="conv-1",
        knowledge_source_ids=("kb-1",),
        transcript="hello",
        max_results=5,
        status=status,
        created_at=T0,
        updated_at=T0,
        expires_at=T0 + timedelta(minutes=2),
    )


@pytest.mark.parametrize(("current", "new"), list(itertools.product(RequestStatus, repeat=2)))
def test_transition_table(current: RequestStatus, new: RequestStatus) -> None:
    assert can_transition(current, new) is ((current, new) in ALLOWED)


def test_terminal_states() -> None:
    assert {s for s in RequestStatus if s.is_terminal} == set(TERMINAL)


@pytest.mark.parametrize("new", [S, C, F, E])
def test_queued_request_moves_forward(new: RequestStatus) -> None:
    at = T0 + timedelta(seconds=3)
    moved = make_request(Q).moved_to(new, at=at)
    assert moved.status is new
    assert moved.updated_at == at


@pytest.mark.parametrize(("terminal", "new"), list(itertools.product(TERMINAL, RequestStatus)))
def test_terminal_requests_never_change(terminal: RequestStatus, new: RequestStatus) -> None:
    with pytest.raises(ValueError, match="not allowed"):
        make_request(terminal).moved_to(new, at=T0)


def test_submitted_cannot_go_back_to_queued() -> None:
    with pytest.raises(ValueError):
        make_request(S).moved_to(Q, at=T0)


def test_submitted_sets_submitted_at_only() -> None:
    at = T0 + timedelta(seconds=1)
    moved = make_request(Q).moved_to(S, at=at, provider_request_id="prov-1")
    assert moved.submitted_at == at
    assert moved.completed_at is None
    assert moved.provider_request_id == "prov-1"


@pytest.mark.parametrize("terminal", TERMINAL)
def test_terminal_move_sets_completed_at(terminal: RequestStatus) -> None:
    submitted = make_request(Q).moved_to(S, at=T0 + timedelta(seconds=1))
    at = T0 + timedelta(seconds=5)
    done = submitted.moved_to(terminal, at=at)
    assert done.completed_at == at
    assert done.submitted_at == T0 + timedelta(seconds=1)  # kept from the earlier move


def test_queued_straight_to_completed_has_no_submitted_at() -> None:
    done = make_request(Q).moved_to(C, at=T0 + timedelta(seconds=1))
    assert done.submitted_at is None
    assert done.completed_at == T0 + timedelta(seconds=1)


def test_explicit_timestamps_in_changes_win() -> None:
    earlier = T0 + timedelta(seconds=1)
    moved = make_request(Q).moved_to(S, at=T0 + timedelta(seconds=2), submitted_at=earlier)
    assert moved.submitted_at == earlier


def test_moved_to_returns_a_copy() -> None:
    original = make_request(Q)
    failed = original.moved_to(F, at=T0, error="provider: boom")
    assert failed.error == "provider: boom"
    assert original.status is Q and original.error is None


def test_a_request_survives_a_json_round_trip() -> None:
    moved = make_request(Q).moved_to(S, at=T0, provider_request_id="p")
    assert SuggestionRequest.model_validate_json(moved.model_dump_json()) == moved


# --- feedback ---------------------------------------------------------------------------------


def test_signal_with_no_history_is_one_half() -> None:
    assert FeedbackStats().signal == 0.5


def test_one_dismissal_and_one_acceptance_move_the_signal_by_a_sixth() -> None:
    assert FeedbackStats(shown=1, accepted=0).signal == pytest.approx(1 / 3)
    assert FeedbackStats(shown=1, accepted=1).signal == pytest.approx(2 / 3)


@pytest.mark.parametrize("shown", [0, 1, 2, 5, 50, 10_000])
def test_signal_stays_strictly_between_zero_and_one(shown: int) -> None:
    for accepted in range(0, shown + 1, max(1, shown // 10)):
        signal = FeedbackStats(shown=shown, accepted=accepted).signal
        assert 0.0 < signal < 1.0


def test_signal_grows_with_acceptances() -> None:
    signals = [FeedbackStats(shown=10, accepted=a).signal for a in range(11)]
    assert signals == sorted(signals)
    assert len(set(signals)) == 11


def test_more_accepted_than_shown_is_capped() -> None:
    # Counters are updated separately, so a racing reader may see accepted > shown.
    assert FeedbackStats(shown=1, accepted=5).signal == FeedbackStats(shown=1, accepted=1).signal
    assert FeedbackStats(shown=0, accepted=3).signal == 0.5


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValidationError):
        FeedbackStats(shown=-1)
    with pytest.raises(ValidationError):
        FeedbackStats(accepted=-1)


def test_adoption_actions() -> None:
    assert {a for a in FeedbackAction if a.is_adoption} == {
        FeedbackAction.ACCEPTED,
        FeedbackAction.COPIED,
    }
