"""Property-based tests (hypothesis) of the three parsers of untrusted input, without I/O:

- the callback verifier (`assist.security.CallbackVerifier`): a correctly signed body always
  verifies; any change to the body, the id, the timestamp or the signature bytes is refused
  with the project's `AuthenticationError` (401), and so is anything else it can be given;
- the transcript parser (`TranscriptionMessage` and `TranscriptIngestor.ingest_transcription`):
  any JSON value either becomes the model or is refused by a `ValidationError` / a counted
  rejection, and the utterances it makes carry text whose redaction is idempotent;
- the Copilot filter model (`InsightFilter.parse`): any string either parses or raises
  `FilterError` with a message, a parsed filter survives being written back out and parsed
  again, and it judges any facts without raising.

Derandomized with a bounded number of examples, so CI runs are reproducible and short.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError
from standardwebhooks import Webhook

from assist.adapters.genesys.schemas import NotificationEnvelope, TranscriptionMessage
from assist.core.gates import GatePolicy
from assist.core.insights import ATTRIBUTES, OPERATORS, FilterError, InsightFilter
from assist.core.redaction import redact_text
from assist.core.transcripts import Utterance
from assist.errors import AuthenticationError
from assist.security import CallbackVerifier, VerifiedCallback
from assist.services.transcripts import IngestResult, TranscriptIngestor
from tests.fuzz.conftest import report, sign

SECRET = "whsec_EIvYBSq82SpIf8kOR41fBTNqWxw58aSw"
OTHER_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SHARED_HEADER = "x-assist-callback-secret"
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
EXAMPLES: Counter[str] = Counter()
#: How many examples reached the interesting outcomes (the generators must get there).
REACHED: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    yield
    per_suite = ", ".join(f"{name}: {n}" for name, n in sorted(EXAMPLES.items()))
    reached = ", ".join(f"{name}: {n}" for name, n in sorted(REACHED.items()))
    report(
        f"FUZZ properties: {sum(EXAMPLES.values())} examples, 0 unexpected exceptions "
        f"({per_suite}; reached {reached})"
    )


# --- the callback verifier ----------------------------------------------------------------------

VERIFIER = CallbackVerifier([SecretStr(SECRET), SecretStr(OTHER_SECRET)])
SHARED_VERIFIER = CallbackVerifier(
    [SecretStr(SECRET)],
    shared_secret_header=SHARED_HEADER,
    shared_secrets=[SecretStr("a-shared-secret")],
)
AUTH_CODES = {"missing_signature", "invalid_signature", "expired_signature"}

#: What a sender may put in a webhook-id: printable ASCII, as HTTP headers carry.
ids = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64)
utf8_bodies = st.one_of(
    st.text(max_size=2000).map(str.encode),
    st.binary(max_size=2000).filter(lambda raw: _is_utf8(raw)),
)
#: Offsets from now, well inside the ±300 s window.
fresh = st.integers(min_value=-290, max_value=290)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def signed(body: bytes, msg_id: str, offset_s: int, secret: str = SECRET) -> dict[str, str]:
    """Headers as a Standard Webhooks sender makes them (the library's own `sign`)."""
    when = datetime.fromtimestamp(math.floor(time.time()) + offset_s, UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(math.floor(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body.decode()),
    }


def refused(verifier: CallbackVerifier, body: bytes, headers: dict[str, str]) -> str:
    """The verifier's refusal code; fails the test on acceptance or on any other exception."""
    with pytest.raises(AuthenticationError) as caught:
        verifier.verify(body, headers)
    assert caught.value.status_code == 401
    assert caught.value.message
    assert caught.value.code in AUTH_CODES, caught.value.code
    return caught.value.code


@PROPERTY
@given(body=utf8_bodies, msg_id=ids, offset_s=fresh, secret=st.sampled_from([SECRET, OTHER_SECRET]))
def test_a_correctly_signed_body_always_verifies(
    body: bytes, msg_id: str, offset_s: int, secret: str
) -> None:
    EXAMPLES["verifier"] += 1
    headers = signed(body, msg_id, offset_s, secret)
    # Header names are case-insensitive; any casing verifies.
    shouted = {name.upper(): value for name, value in headers.items()}
    for presented in (headers, shouted):
        assert VERIFIER.verify(body, presented) == VerifiedCallback("standard-webhooks", msg_id)


@PROPERTY
@given(body=utf8_bodies, other=st.binary(max_size=2000), msg_id=ids, offset_s=fresh)
def test_a_changed_body_is_refused(body: bytes, other: bytes, msg_id: str, offset_s: int) -> None:
    EXAMPLES["verifier"] += 1
    assume(other != body)
    assert refused(VERIFIER, other, signed(body, msg_id, offset_s)) == "invalid_signature"


@PROPERTY
@given(body=utf8_bodies, msg_id=ids, other_id=ids, offset_s=fresh)
def test_a_changed_id_is_refused(body: bytes, msg_id: str, other_id: str, offset_s: int) -> None:
    EXAMPLES["verifier"] += 1
    assume(other_id != msg_id)
    headers = signed(body, msg_id, offset_s) | {"webhook-id": other_id}
    assert refused(VERIFIER, body, headers) == "invalid_signature"


@PROPERTY
@given(body=utf8_bodies, msg_id=ids, offset_s=fresh, shift=st.integers(-100_000, 100_000))
def test_a_changed_timestamp_is_refused(
    body: bytes, msg_id: str, offset_s: int, shift: int
) -> None:
    EXAMPLES["verifier"] += 1
    assume(shift != 0)
    # Not within 10 s of the window's edge, where the clock ticking during the test decides.
    assume(not 290 <= abs(offset_s + shift) <= 310)
    headers = signed(body, msg_id, offset_s)
    moved = str(int(headers["webhook-timestamp"]) + shift)
    code = refused(VERIFIER, body, headers | {"webhook-timestamp": moved})
    # Inside the window the signature no longer matches; outside, the time says no first.
    assert code == ("invalid_signature" if abs(offset_s + shift) < 300 else "expired_signature")


@PROPERTY
@given(body=utf8_bodies, msg_id=ids, offset_s=fresh, data=st.data())
def test_changed_signature_bytes_are_refused(
    body: bytes, msg_id: str, offset_s: int, data: st.DataObject
) -> None:
    """Any other 32 bytes in the signature (a flipped bit, a truncation, random bytes)."""
    EXAMPLES["verifier"] += 1
    headers = signed(body, msg_id, offset_s)
    mac = bytearray(base64.b64decode(headers["webhook-signature"].removeprefix("v1,")))
    mutation = data.draw(st.sampled_from(["flip", "truncate", "random"]))
    if mutation == "flip":
        bit = data.draw(st.integers(0, len(mac) * 8 - 1))
        mac[bit // 8] ^= 1 << (bit % 8)
        forged = bytes(mac)
    elif mutation == "truncate":
        forged = bytes(mac[: data.draw(st.integers(0, len(mac) - 1))])
    else:
        forged = data.draw(st.binary(min_size=32, max_size=32))
        assume(forged != bytes(mac))
    signature = f"v1,{base64.b64encode(forged).decode()}"
    assert refused(VERIFIER, body, headers | {"webhook-signature": signature}) == (
        "invalid_signature"
    )


header_names = st.sampled_from(
    ["webhook-id", "webhook-timestamp", "webhook-signature", "Webhook-Signature", SHARED_HEADER]
)
header_values = st.one_of(
    st.text(max_size=200),
    st.sampled_from(["v1,", "v1,AAAA", "v2,abc", "v1,a,b", "nan", "inf", "-1", "1e308", "", " "]),
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True).map(str),
)


@PROPERTY
@given(
    body=st.binary(max_size=4000),
    headers=st.dictionaries(st.one_of(header_names, st.text(max_size=20)), header_values),
)
def test_anything_else_is_refused_with_the_auth_error(body: bytes, headers: dict[str, str]) -> None:
    """Arbitrary bytes and headers: an `AuthenticationError`, never any other exception."""
    EXAMPLES["verifier"] += 1
    refused(VERIFIER, body, headers)
    if headers.get(SHARED_HEADER) != "a-shared-secret":
        refused(SHARED_VERIFIER, body, headers)


@PROPERTY
@given(body=st.binary(min_size=1, max_size=500), msg_id=ids, offset_s=fresh)
def test_a_body_that_is_not_utf8_is_refused_even_if_signed(
    body: bytes, msg_id: str, offset_s: int
) -> None:
    """Standard Webhooks signs text: a non-UTF-8 body cannot be verified (401, never a crash)."""
    EXAMPLES["verifier"] += 1
    assume(not _is_utf8(body))
    timestamp = math.floor(time.time()) + offset_s
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(body, msg_id, timestamp, SECRET),
    }
    assert refused(VERIFIER, body, headers) == "invalid_signature"


# --- the transcript parser ----------------------------------------------------------------------

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=50),
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)

PII = st.sampled_from(
    [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "1234567890123456",
        "jane.doe@example.com",
        "+44 20 7946 0958",
        "(555) 123-4567",
        "192.168.0.1",
        "0b5e6f8a-1c2d-4e3f-8a9b-0c1d2e3f4a5b",
        "23:14:03.172687",
        "2026-11-20",
        "[CARD]",
        "[EMAIL]",
    ]
)
spoken = st.lists(st.one_of(st.text(max_size=30), PII), max_size=8).map(" ".join)


Wrap = Callable[[st.SearchStrategy[Any]], st.SearchStrategy[Any]]


def exact(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return valid


def sometimes_wrong(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The right type nine times in ten, any JSON value otherwise."""
    return st.integers(0, 9).flatmap(lambda draw: json_values if draw == 0 else valid)


def unit(spread: float) -> st.SearchStrategy[float]:
    """Mostly 0..1, now and then up to `spread` outside it."""
    return st.integers(0, 5).flatmap(
        lambda draw: st.floats(-spread, 1 + spread) if draw == 0 else st.floats(0, 1)
    )


def transcription_body(field: Wrap) -> st.SearchStrategy[dict[str, Any]]:
    """A transcription eventBody shape; `field` decides how often a field has a wrong type."""
    alternative = st.fixed_dictionaries(
        {"transcript": field(spoken)},
        optional={
            "confidence": field(unit(0.5)),
            "offsetMs": field(st.integers(-10, 10**7)),
            "durationMs": field(st.integers(-10, 10**6)),
        },
    )
    result = st.fixed_dictionaries(
        {
            "utteranceId": field(st.text(min_size=1, max_size=20)),
            "isFinal": field(st.booleans()),
            "alternatives": field(st.lists(alternative, min_size=1, max_size=3)),
        },
        optional={
            "channel": field(st.sampled_from(["INTERNAL", "EXTERNAL", "UNKNOWN", "BOTH", "x"])),
            "dialect": field(st.sampled_from(["en-US", "fr-FR"])),
            "audioQuality": field(st.fixed_dictionaries({"score": unit(0.5)})),
        },
    )
    return st.fixed_dictionaries(
        {
            "conversationId": field(st.sampled_from(["conv-1", "conv-1", "conv-2"])),
            "transcripts": field(st.lists(result, min_size=1, max_size=4)),
        },
        optional={
            "eventTime": field(st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat())),
            "sessionStartTimeMs": field(st.integers(0, 2 * 10**12)),
            "status": field(
                st.fixed_dictionaries(
                    {"status": st.sampled_from(["SESSION_ONGOING", "SESSION_ENDED", "nope"])}
                )
            ),
        },
    )


transcription_bodies = st.one_of(
    json_values, transcription_body(exact), transcription_body(sometimes_wrong)
)


class RecordingStore:
    """The transcript store's surface, in memory: records what the ingestor hands it."""

    def __init__(self) -> None:
        self.utterances: list[Utterance] = []

    def set_partial(self, utterance: Utterance) -> bool:
        self.utterances.append(utterance)
        return True

    def commit_final(self, utterance: Utterance, span: Any, judge: Any) -> None:
        self.utterances.append(utterance)
        judge(None)  # the gate decision runs on every parsed final
        return None  # "seen before": nothing is handed on, so no services are needed

    def close(self, conversation_id: str) -> bool:
        return True


@PROPERTY
@given(body=transcription_bodies)
def test_any_transcription_body_parses_or_is_a_validation_error(body: Any) -> None:
    EXAMPLES["transcripts"] += 1
    try:
        message = TranscriptionMessage.model_validate(body)
    except ValidationError as exc:
        assert exc.errors()
        REACHED["transcript refused"] += 1
        return
    REACHED["transcript parsed"] += 1
    # What parsed is exactly what was sent: the strict fields read later took no coercion
    # (a "true", 1 or "0.9" in the body would have been refused, not converted).
    for raw, transcript in zip(body.get("transcripts") or [], message.transcripts, strict=True):
        assert type(transcript.is_final) is type(raw.get("isFinal"))
        assert transcript.is_final == raw.get("isFinal")
        raw_alternatives = raw.get("alternatives") or []
        for raw_alt, alt in zip(raw_alternatives, transcript.alternatives or (), strict=True):
            assert alt.transcript == raw_alt.get("transcript")
            assert type(alt.transcript) is type(raw_alt.get("transcript"))
            assert alt.confidence == raw_alt.get("confidence")


@PROPERTY
@given(body=transcription_bodies, frame=st.booleans())
def test_ingesting_any_transcription_event_never_raises(body: Any, frame: bool) -> None:
    """Through the stream's path (envelope -> message -> utterances -> gates): a result with
    counts or rejections, never an exception, and every utterance's text already redacted."""
    EXAMPLES["transcripts"] += 1
    data = {"topicName": "v2.conversations.conv-1.transcription", "eventBody": body}
    if frame:  # as the socket delivers it: JSON text first
        data = json.loads(json.dumps(data))
    try:
        envelope = NotificationEnvelope.model_validate(data)
    except ValidationError:
        return  # a frame that is not an envelope is dropped before ingestion
    store = RecordingStore()
    ingestor = TranscriptIngestor(None, store=store, policy=GatePolicy())  # type: ignore[arg-type]
    result = ingestor.ingest_transcription(envelope, datetime.now(UTC))
    assert isinstance(result, IngestResult)
    assert result.rejections or result.counts or not store.utterances
    REACHED["utterances made"] += len(store.utterances)
    for utterance in store.utterances:
        assert utterance.conversation_id == "conv-1"
        assert redact_text(utterance.text) == utterance.text, "redaction is not idempotent"


@PROPERTY
@given(text=spoken)
def test_redaction_of_spoken_text_is_idempotent(text: str) -> None:
    EXAMPLES["transcripts"] += 1
    once = redact_text(text)
    assert redact_text(once) == once


# --- the Copilot filter model ------------------------------------------------------------------

clause_parts = st.one_of(
    st.sampled_from([*ATTRIBUTES, *OPERATORS, "confidence", "gte", "lte", "in", ""]),
    st.text(max_size=12),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["0.6", "1", "0", "1.0000001", "-0", "nan", "1e-400", "knowledge|compliance"]),
)
noise_clauses = st.lists(clause_parts, min_size=0, max_size=4).map(":".join)
plain_values = st.text(
    st.characters(blacklist_characters=";|", blacklist_categories=("Cs",)), min_size=1, max_size=12
).filter(str.strip)
valid_clauses = st.one_of(
    st.builds(
        lambda attribute, operator, values: f"{attribute}:{operator}:{'|'.join(values)}",
        st.sampled_from(["event_type", "insight_type", "conversation_id", "confidence"]),
        st.sampled_from(["eq", "in"]),
        st.lists(plain_values, min_size=1, max_size=3),
    ),
    st.builds(
        lambda operator, number: f" confidence : {operator} : {number} ",
        st.sampled_from(["gte", "lte"]),
        st.one_of(st.floats(-0.5, 1.5).map(str), st.sampled_from(["0", "1", ".5", "1e-1"])),
    ),
)
filter_texts = st.one_of(
    st.text(max_size=120),
    st.lists(st.one_of(valid_clauses, noise_clauses), max_size=4).map(";".join),
    st.lists(valid_clauses, min_size=1, max_size=4).map(";".join),
)
facts = st.dictionaries(
    st.sampled_from(ATTRIBUTES), st.one_of(json_leaves, st.floats(), st.text(max_size=20))
)


def render(parsed: InsightFilter) -> str:
    """A filter written back in the configuration syntax."""
    return ";".join(f"{c.attribute}:{c.operator}:{'|'.join(c.values)}" for c in parsed.clauses)


@PROPERTY
@given(text=filter_texts, judged=facts)
def test_any_filter_text_parses_or_is_a_filter_error(text: str, judged: dict[str, Any]) -> None:
    EXAMPLES["filters"] += 1
    try:
        parsed = InsightFilter.parse(text)
    except FilterError as exc:
        assert str(exc), "a FilterError without a message"
        REACHED["filter refused"] += 1
        return
    REACHED["filter parsed" if parsed.clauses else "filter empty"] += 1
    assert InsightFilter.parse(render(parsed)) == parsed
    assert isinstance(parsed.keeps(judged), bool)


def test_the_generators_reach_both_outcomes() -> None:
    """Runs last in this module: the properties above were not vacuous."""
    for outcome in ("transcript parsed", "transcript refused", "utterances made"):
        assert REACHED[outcome] >= 10, (outcome, REACHED)
    for outcome in ("filter parsed", "filter refused"):
        assert REACHED[outcome] >= 10, (outcome, REACHED)
