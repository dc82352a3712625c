"""The C2 gates: which live utterances go to analysis, and why the others do not.

Pure functions over `Utterance`s and numbers (no I/O), so every rule is unit-tested on its
own. The stream process calls them for each transcription event:

1. `frame_gate`: a notification frame larger than the limit is dropped before parsing.
2. `detect_overlap`: whether a final utterance overlaps the other side's last final one,
   from `offsetMs`/`durationMs` on the session's timeline (an interruption).
3. `decide`: the one decision recorded for every final utterance. The first rule that
   applies wins, in this order: partial, not the customer, empty, language mismatch, low
   confidence, poor audio quality, interrupted, analysed.

Interruptions. Two utterances of different sides overlap when each starts before the other
ends, by more than `interruption_min_overlap_ms` (short overlaps are back-channel noise such as
"mm-hm"). The one that started later *interrupts*; the one that started earlier *was
interrupted*. Every interruption resets the pending analysis buffer, because the turn that
was cut off is no longer a complete thought. A customer utterance that was itself cut off is
not analysed (`INTERRUPTED`); a customer who interrupts the agent is analysed normally, after
the reset.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from assist.core.transcripts import Speaker, Utterance


class GateDecision(StrEnum):
    ANALYSED = "analysed"
    PARTIAL = "partial"
    AGENT_SIDE = "agent_side"
    UNKNOWN_SPEAKER = "unknown_speaker"
    EMPTY = "empty"
    LANGUAGE_MISMATCH = "language_mismatch"
    LOW_CONFIDENCE = "low_confidence"
    POOR_AUDIO = "poor_audio"
    INTERRUPTED = "interrupted"
    OVERSIZED = "oversized"


class Overlap(StrEnum):
    NONE = "none"
    INTERRUPTS = "interrupts"  # started while the other side was still speaking
    INTERRUPTED = "interrupted"  # the other side started before this one had finished


@dataclass(frozen=True)
class GatePolicy:
    """The thresholds of the gates (from settings)."""

    min_confidence: float = 0.6
    language: str = "en-US"
    max_frame_bytes: int = 64 * 1024
    interruption_min_overlap_ms: int = 200
    #: Audio-quality score (0..1) below which a final is not analysed; None: no gate.
    min_audio_quality: float | None = 0.5


@dataclass(frozen=True)
class Span:
    """Where an utterance sits on the session timeline, in milliseconds."""

    start_ms: int
    end_ms: int

    @classmethod
    def of(
        cls, offset_ms: int | None, duration_ms: int | None, session_start_ms: int | None = None
    ) -> Span | None:
        """The span of an utterance, or None when its offset or duration is unknown."""
        if offset_ms is None or duration_ms is None:
            return None
        start = (session_start_ms or 0) + offset_ms
        return cls(start, start + max(0, duration_ms))


@dataclass(frozen=True)
class AudioFigures:
    """Optional audio-quality figures of an utterance (an absent figure passes the gate)."""

    score: float | None = None


def frame_too_large(size_bytes: int, policy: GatePolicy) -> bool:
    return size_bytes > policy.max_frame_bytes


def frame_gate(size_bytes: int, policy: GatePolicy) -> GateDecision | None:
    """`OVERSIZED` for a frame over the limit; None when it may be parsed."""
    return GateDecision.OVERSIZED if frame_too_large(size_bytes, policy) else None


def detect_overlap(current: Span | None, other: Span | None, *, min_overlap_ms: int) -> Overlap:
    """How `current` relates to the other side's last utterance `other` (see module doc)."""
    if current is None or other is None:
        return Overlap.NONE
    overlap_ms = min(current.end_ms, other.end_ms) - max(current.start_ms, other.start_ms)
    if overlap_ms <= max(0, min_overlap_ms):
        return Overlap.NONE
    return Overlap.INTERRUPTS if current.start_ms >= other.start_ms else Overlap.INTERRUPTED


def language_matches(dialect: str | None, language: str) -> bool:
    """Whether an utterance's `dialect` is the configured language.

    Case-insensitive (`en-us` is `en-US`); a language configured without a region (`en`)
    accepts every region of it. An utterance without a dialect is not flagged.
    """
    if not dialect or not language:
        return True
    dialect_tag = dialect.strip().replace("_", "-").lower()
    wanted = language.strip().replace("_", "-").lower()
    if dialect_tag == wanted:
        return True
    return "-" not in wanted and dialect_tag.split("-", 1)[0] == wanted


def poor_audio(audio: AudioFigures | None, policy: GatePolicy) -> bool:
    """Whether a present audio-quality score is below the threshold (absent: never)."""
    if audio is None or audio.score is None or policy.min_audio_quality is None:
        return False
    return audio.score < policy.min_audio_quality


def decide(
    utterance: Utterance,
    policy: GatePolicy,
    *,
    overlap: Overlap = Overlap.NONE,
    audio: AudioFigures | None = None,
) -> GateDecision:
    """The gate decision of one utterance; only `ANALYSED` goes on to analysis."""
    if not utterance.is_final:
        return GateDecision.PARTIAL
    if utterance.speaker is Speaker.AGENT:
        return GateDecision.AGENT_SIDE
    if utterance.speaker is not Speaker.CUSTOMER:
        return GateDecision.UNKNOWN_SPEAKER
    if not utterance.text.strip():
        return GateDecision.EMPTY
    if not language_matches(utterance.dialect, policy.language):
        return GateDecision.LANGUAGE_MISMATCH
    if utterance.confidence is not None and utterance.confidence < policy.min_confidence:
        return GateDecision.LOW_CONFIDENCE
    if poor_audio(audio, policy):
        return GateDecision.POOR_AUDIO
    if overlap is Overlap.INTERRUPTED:
        return GateDecision.INTERRUPTED
    return GateDecision.ANALYSED


def resets_buffer(overlap: Overlap) -> bool:
    """Every interruption, whichever side started it, resets the pending analysis buffer."""
    return overlap is not Overlap.NONE
