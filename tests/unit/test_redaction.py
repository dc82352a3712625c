"""Redaction of personal data (assist.core.redaction) and the record event built on it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from assist.core.audit import EventType, RecordEvent
from assist.core.redaction import REDACTED_SECRET, luhn_valid, redact_text, redact_value

# --- cards and long numbers ------------------------------------------------------------------
# Test card numbers published by the card networks; all pass the Luhn check.
VISA = "4111111111111111"
MASTERCARD = "5555555555554444"
AMEX = "378282246310005"


@pytest.mark.parametrize("number", [VISA, MASTERCARD, AMEX])
def test_test_cards_are_luhn_valid(number: str) -> None:
    assert luhn_valid(number)
    # Changing the last digit breaks the checksum.
    assert not luhn_valid(number[:-1] + str((int(number[-1]) + 1) % 10))


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        VISA,
        "5555 5555 5555 4444",
        "3782 822463 10005",
    ],
)
def test_card_numbers_become_card(text: str) -> None:
    assert redact_text(f"my card is {text}, thanks") == "my card is [CARD], thanks"


@pytest.mark.parametrize("text", ["4111 1111 1111 1112", "1234-5678-9012-3456", "1234567890123"])
def test_long_numbers_that_fail_luhn_become_number(text: str) -> None:
    assert not luhn_valid("".join(c for c in text if c.isdigit()))
    assert redact_text(f"account {text}.") == "account [NUMBER]."


def test_digits_glued_to_letters_are_not_a_card() -> None:
    # A card-length run inside an identifier is part of the identifier.
    assert redact_text(f"ref ABC{VISA}") == f"ref ABC{VISA}"


# --- emails ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "email", ["jane@example.com", "first.last+tag@mail.example.co.uk", "a_b-c%d@sub-domain.io"]
)
def test_emails_become_email(email: str) -> None:
    assert redact_text(f"write to {email} please") == "write to [EMAIL] please"


# --- phone numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone",
    [
        "+44 20 7946 0958",
        "(415) 555-2671",
        "415.555.2671",
        "415-555-2671",
        "07700 900123",
        "+1 415 555 2671",
    ],
)
def test_phone_numbers_become_phone(phone: str) -> None:
    redacted = redact_text(f"call me on {phone} tomorrow")
    assert redacted == "call me on [PHONE] tomorrow"


# --- what must survive -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "the charge on 2024-03-15 was wrong",
        "between 2024-03-15 and 2024-04-01",
        "at 14:30 or 09:05:59",
        "it cost 1250.00 and then $1,250.00",
        "order 12345 and order #98765",
        "running version 2.13.0 (v10.4.1)",
        "server 10.0.0.12 is down",
        "object 9b2c4d61e8f0, commit 3f9c2e1b7a, id 0x1f2e3d4c",
        "request req_0f8e4d2c1b3a49c6a7d5e3f1b2c4d6e8",
    ],
)
def test_ordinary_values_survive(text: str) -> None:
    assert redact_text(text) == text


def test_an_iso_date_followed_by_a_time_survives() -> None:
    # "on 2024-03-15 14:30" is how people and systems write a moment; it is not a phone number.
    text = "your appointment is on 2024-03-15 14:30 at the branch"
    assert redact_text(text) == text


@pytest.mark.parametrize("address", ["192.168.100.200", "10.20.30.40", "172.16.254.1"])
def test_ipv4_addresses_survive(address: str) -> None:
    text = f"connection from {address} refused"
    assert redact_text(text) == text


@pytest.mark.parametrize(
    "uuid",
    [
        "123e4567-e89b-12d3-a456-426614174000",
        "5f1c2b9e-7d4a-4c3b-9a8e-202405151230",
        "12345678-1234-4abc-8def-0123456789ab",
    ],
)
def test_uuids_survive(uuid: str) -> None:
    # Genesys conversation ids are UUIDs, and RecordEvent.create redacts conversation ids.
    text = f"conversation {uuid} transferred"
    assert redact_text(text) == text


def test_a_uuid_inside_a_hyphenated_id_survives() -> None:
    # RQ job ids embed conversation ids: "analyse-<uuid>-<window>" (logged by every job).
    job_id = "analyse-01d78e5f-6727-4084-be73-470517cf3c23-d25a46c75add4117"
    assert redact_text(job_id) == job_id
    # A phone number next to it is still found.
    assert redact_text(f"{job_id} call 0871 234 5678") == f"{job_id} call [PHONE]"


# --- idempotence and structure ---------------------------------------------------------------

MIXED = (
    "Hi, I'm jane.doe@example.com, card 4111 1111 1111 1111, account 1234-5678-9012-3456, "
    "call +44 20 7946 0958 or (415) 555-2671 about order 12345 from 2024-03-15."
)


def test_a_mixed_transcript() -> None:
    assert redact_text(MIXED) == (
        "Hi, I'm [EMAIL], card [CARD], account [NUMBER], "
        "call [PHONE] or [PHONE] about order 12345 from 2024-03-15."
    )


@pytest.mark.parametrize(
    "text", [MIXED, "4111-1111-1111-1111", "415.555.2671", "x@y.org", "[CARD] [PHONE]"]
)
def test_redaction_is_idempotent(text: str) -> None:
    once = redact_text(text)
    assert redact_text(once) == once


def test_redact_value_recurses_into_dicts_and_lists() -> None:
    value = {
        "transcript": "mail me at a@b.com",
        "turns": ["card 4111 1111 1111 1111", {"text": "415-555-2671"}],
        "pair": ("x@y.org", 3),
        "count": 7,
        "ok": True,
        "nothing": None,
    }
    assert redact_value(value) == {
        "transcript": "mail me at [EMAIL]",
        "turns": ["card [CARD]", {"text": "[PHONE]"}],
        "pair": ["[EMAIL]", 3],
        "count": 7,
        "ok": True,
        "nothing": None,
    }


@pytest.mark.parametrize(
    "key",
    [
        "authorization",
        "Authorization",
        "token",
        "access_token",
        "client_secret",
        "password",
        "secret",
        "api_key",
        "webhook-signature",
        "signature",
    ],
)
def test_credential_keys_are_dropped_whatever_their_value(key: str) -> None:
    redacted = redact_value({"outer": {key: "Bearer abc123", "keep": "me"}, key: {"a": 1}})
    assert redacted == {"outer": {key: REDACTED_SECRET, "keep": "me"}, key: REDACTED_SECRET}


def test_ordinary_keys_that_contain_credential_words_are_kept() -> None:
    assert redact_value({"token_count": 3}) == {"token_count": 3}


# --- record events ---------------------------------------------------------------------------


def test_record_event_create_redacts_its_data() -> None:
    event = RecordEvent.create(
        EventType.QUERY_REQUESTED,
        request_id="req_1",
        conversation_id="conv-1",
        agent_id="agent jane@example.com",
        transcript="card 4111 1111 1111 1111",
        headers={"Authorization": "Bearer x", "webhook-id": "msg_1"},
        items=["415-555-2671"],
    )
    assert event.request_id == "req_1"
    assert event.conversation_id == "conv-1"
    assert event.agent_id == "agent [EMAIL]"
    assert event.data == {
        "transcript": "card [CARD]",
        "headers": {"Authorization": REDACTED_SECRET, "webhook-id": "msg_1"},
        "items": ["[PHONE]"],
    }


def test_record_event_keeps_a_uuid_conversation_id() -> None:
    # Audit lines are joined to Genesys data by conversation id; redacting part of it breaks that.
    conversation_id = "5f1c2b9e-7d4a-4c3b-9a8e-202405151230"
    event = RecordEvent.create(EventType.QUERY_REQUESTED, conversation_id=conversation_id)
    assert event.conversation_id == conversation_id


def test_record_events_get_distinct_ids() -> None:
    first = RecordEvent.create(EventType.ERROR)
    second = RecordEvent.create(EventType.ERROR)
    assert first.event_id != second.event_id


def test_audit_line_is_one_json_line() -> None:
    at = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    event = RecordEvent.create(
        EventType.SUGGESTIONS_RANKED,
        request_id="req_1",
        at=at,
        note="line one\nline two",
        ranked=[{"id": "a", "score": 0.5}],
    )
    line = event.to_audit_line()
    assert line.endswith("\n")
    assert line.count("\n") == 1
    parsed = json.loads(line)
    assert parsed == event.to_record()
    assert parsed["type"] == "suggestions_ranked"
    assert datetime.fromisoformat(parsed["ts"]) == at
    assert parsed["data"]["note"] == "line one\nline two"
