"""The C2 gates: frame size, interruption detection and the decision for each utterance."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from assist.core.gates import (
    AudioFigures,
    GateDecision,
    GatePolicy,
    Overlap,
    Span,
    decide,
    detect_overlap,
    frame_gate,
    language_matches,
    poor_audio,
    resets_buffer,
)
from assist.core.transcripts import Speaker, Utterance

POLICY = GatePolicy(
    min_confidence=0.6,
    language="en-US",
    max_frame_bytes=64 * 1024,
    interruption_min_overlap_ms=200,
    min_audio_quality=0.5,
)


def utterance(**overrides: Any) -> Utterance:
    values: dict[str, Any] = {
        "conversation_id": "c-1",
        "utterance_id": "u-1",
        "speaker": Speaker.CUSTOMER,
        "text": "I was charged twice",
        "is_final": True,
        "confidence": 0.9,
        "dialect": "en-US",
        "offset_ms": 1000,
        "duration_ms": 2000,
        "received_at": datetime.now(UTC),
    }
    values.update(overrides)
    return Utterance(**values)


# --- frame size ----------------------------------------------------------------------------


def test_frames_up_to_the_limit_pass_and_larger_ones_are_oversized() -> None:
    assert frame_gate(64 * 1024, POLICY) is None
    assert frame_gate(64 * 1024 + 1, POLICY) is GateDecision.OVERSIZED
    assert frame_gate(0, POLICY) is None


# --- interruptions -------------------------------------------------------------------------


def test_a_span_is_placed_on_the_session_timeline() -> None:
    assert Span.of(1000, 2000) == Span(1000, 3000)
    assert Span.of(1000, 2000, session_start_ms=10_000) == Span(11_000, 13_000)
    assert Span.of(None, 2000) is None
    assert Span.of(1000, None) is None


def test_speech_after_the_other_side_finished_is_no_interruption() -> None:
    customer = Span(0, 5000)
    assert detect_overlap(Span(5200, 8000), customer, min_overlap_ms=200) is Overlap.NONE
    assert detect_overlap(Span(5000, 8000), customer, min_overlap_ms=0) is Overlap.NONE


def test_starting_while_the_other_side_speaks_interrupts_it() -> None:
    # billing-dispute: the customer speaks 26.8-34.8 s, the agent starts at 33.2 s.
    customer = Span(26_800, 34_800)
    agent = Span(33_200, 37_500)
    assert detect_overlap(agent, customer, min_overlap_ms=200) is Overlap.INTERRUPTS
    # Seen the other way round (the agent's final arrived first): the customer was cut off.
    assert detect_overlap(customer, agent, min_overlap_ms=200) is Overlap.INTERRUPTED


def test_a_short_overlap_is_back_channel_not_an_interruption() -> None:
    customer = Span(0, 5000)
    assert detect_overlap(Span(4850, 6000), customer, min_overlap_ms=200) is Overlap.NONE
    assert detect_overlap(Span(4700, 6000), customer, min_overlap_ms=200) is Overlap.INTERRUPTS


def test_speech_inside_the_other_sides_turn_interrupts_it() -> None:
    assert detect_overlap(Span(1000, 2000), Span(0, 5000), min_overlap_ms=200) is (
        Overlap.INTERRUPTS
    )


def test_unknown_timing_is_no_interruption() -> None:
    assert detect_overlap(None, Span(0, 1000), min_overlap_ms=0) is Overlap.NONE
    assert detect_overlap(Span(0, 1000), None, min_overlap_ms=0) is Overlap.NONE


def test_every_interruption_resets_the_buffer() -> None:
    assert resets_buffer(Overlap.INTERRUPTS)
    assert resets_buffer(Overlap.INTERRUPTED)
    assert not resets_buffer(Overlap.NONE)


# --- language and audio --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialect", "language", "matches"),
    [
        ("en-US", "en-US", True),
        ("en-us", "en-US", True),
        ("en_US", "en-US", True),
        ("es-ES", "en-US", False),
        ("en-GB", "en-US", False),
        ("en-GB", "en", True),
        ("es-ES", "en", False),
        (None, "en-US", True),
        ("", "en-US", True),
    ],
)
def test_language_matching(dialect: str | None, language: str, matches: bool) -> None:
    assert language_matches(dialect, language) is matches


def test_audio_quality_gates_only_when_a_score_is_present() -> None:
    assert not poor_audio(None, POLICY)
    assert not poor_audio(AudioFigures(score=None), POLICY)
    assert not poor_audio(AudioFigures(score=0.5), POLICY)
    assert poor_audio(AudioFigures(score=0.49), POLICY)
    assert not poor_audio(AudioFigures(score=0.1), GatePolicy(min_audio_quality=None))


# --- the decision --------------------------------------------------------------------------


def test_a_clear_final_customer_utterance_is_analysed() -> None:
    assert decide(utterance(), POLICY) is GateDecision.ANALYSED


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"is_final": False}, GateDecision.PARTIAL),
        ({"speaker": Speaker.AGENT}, GateDecision.AGENT_SIDE),
        ({"speaker": Speaker.UNKNOWN}, GateDecision.UNKNOWN_SPEAKER),
        ({"text": "   "}, GateDecision.EMPTY),
        ({"dialect": "es-ES"}, GateDecision.LANGUAGE_MISMATCH),
        ({"confidence": 0.35}, GateDecision.LOW_CONFIDENCE),
    ],
)
def test_each_gate_keeps_an_utterance_from_analysis(
    overrides: dict[str, Any], expected: GateDecision
) -> None:
    assert decide(utterance(**overrides), POLICY) is expected


def test_confidence_at_the_threshold_passes_and_unknown_confidence_passes() -> None:
    assert decide(utterance(confidence=0.6), POLICY) is GateDecision.ANALYSED
    assert decide(utterance(confidence=None), POLICY) is GateDecision.ANALYSED


def test_poor_audio_and_being_cut_off_keep_a_final_from_analysis() -> None:
    assert decide(utterance(), POLICY, audio=AudioFigures(0.2)) is GateDecision.POOR_AUDIO
    assert decide(utterance(), POLICY, overlap=Overlap.INTERRUPTED) is GateDecision.INTERRUPTED


def test_a_customer_who_interrupts_the_agent_is_still_analysed() -> None:
    assert decide(utterance(), POLICY, overlap=Overlap.INTERRUPTS) is GateDecision.ANALYSED


def test_the_first_failing_gate_is_the_decision() -> None:
    both = utterance(dialect="fr-FR", confidence=0.1)
    assert decide(both, POLICY) is GateDecision.LANGUAGE_MISMATCH
    partial_agent = utterance(is_final=False, speaker=Speaker.AGENT)
    assert decide(partial_agent, POLICY) is GateDecision.PARTIAL
