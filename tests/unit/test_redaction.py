"""Redaction of personal data (assist.core.redaction) and the record event built on it."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from assist.core import redaction
from assist.core.audit import EventType, RecordEvent
from assist.core.redaction import (
    REDACTED_SECRET,
    RedactionConfigError,
    Redactor,
    luhn_valid,
    parse_extra_patterns,
    redact_text,
    redact_value,
)
from assist.logconfig import configure_logging, get_logger
from assist.settings import Settings


@pytest.fixture
def default_redactor() -> Iterator[None]:
    """Put the process-wide redactor back to the defaults after a test that configures it."""
    yield
    redaction.configure()


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


@pytest.mark.parametrize(
    "phone",
    [
        "+44 20 7946 0958",  # GB
        "+44 (0)20 7946 0958",
        "+1-800-555-0199",  # US
        "+33 1 42 68 53 00",  # FR
        "+49 30 901820",  # DE
        "+49 171 1234567",
        "+353 91 123 4567",  # IE
        "+61 2 9374 4000",  # AU
        "+91 98765 43210",  # IN
        "+442079460958",
    ],
)
def test_international_numbers_are_found_whatever_the_regions(phone: str) -> None:
    for regions in (["US", "GB"], ["DE"], []):
        redactor = Redactor(phone_regions=regions)
        assert redactor.text(f"reach me at {phone}, thanks") == "reach me at [PHONE], thanks"
        assert redactor.text(f"tel:{phone}") == "tel:[PHONE]"


@pytest.mark.parametrize(
    ("region", "phone"),
    [
        ("US", "(415) 555-0132"),
        ("US", "415.555.0132"),
        ("US", "1-800-555-0199"),
        ("US", "4155550132"),
        ("GB", "020 7946 0958"),
        ("GB", "0800 123 4567"),
        ("IE", "091 123 4567"),
        ("IE", "087 123 4567"),
        ("DE", "030 901820"),
        ("DE", "0171 1234567"),
        ("FR", "01 42 68 53 00"),
        ("FR", "01.42.68.53.00"),
        ("AU", "(02) 9374 4000"),
        ("AU", "0412 345 678"),
    ],
)
def test_national_formats_of_the_configured_regions_become_phone(region: str, phone: str) -> None:
    redactor = Redactor(phone_regions=[region])
    assert redactor.text(f"my number is {phone} ok") == "my number is [PHONE] ok"


def test_default_regions_cover_us_and_gb_national_formats() -> None:
    text = "call (415) 555-0132 or 020 7946 0958 or 415.555.0132"
    assert redact_text(text) == "call [PHONE] or [PHONE] or [PHONE]"


def test_digits_spoken_one_by_one_are_redacted() -> None:
    # How an account number reaches a transcript (emulator script billing-dispute).
    assert redact_text("Sure, it's 4 4 7 1 9 2 3 0, and") == "Sure, it's [PHONE], and"


def test_a_card_is_a_card_not_a_phone_number() -> None:
    assert redact_text("card 4111 1111 1111 1111 or phone 020 7946 0958") == (
        "card [CARD] or phone [PHONE]"
    )


@pytest.mark.parametrize(
    ("value", "placeholder"),
    [
        ("4111 1111 1111 1111", "[CARD]"),
        ("020 7946 0958", "[PHONE]"),
        ("(415) 555-0132", "[PHONE]"),
        ("+44 20 7946 0958", "[PHONE]"),
        ("4 4 7 1 9 2 3 0", "[PHONE]"),
    ],
)
def test_numbers_right_after_a_version_or_decimal_are_found(value: str, placeholder: str) -> None:
    # gunicorn's warning about a malformed request line; "1.1" must not hide the number.
    line = f"Invalid HTTP Version: 'HTTP/1.1 {value}'"
    assert redact_text(line) == f"Invalid HTTP Version: 'HTTP/1.1 {placeholder}'"
    assert redact_text(f"it costs 12.50 {value}") == f"it costs 12.50 {placeholder}"


def test_dotted_phone_shapes_are_not_taken_for_decimals() -> None:
    assert redact_text("(415) 555.0132 or 415.555.0132") == "[PHONE] or [PHONE]"
    assert Redactor(phone_regions=["FR"]).text("au 01.42.68.53.00") == "au [PHONE]"


def test_unknown_phone_regions_are_refused() -> None:
    with pytest.raises(RedactionConfigError, match="'XX'"):
        Redactor(phone_regions=["US", "XX"])


# --- configured extra patterns ---------------------------------------------------------------


def test_extra_patterns_become_their_label() -> None:
    redactor = Redactor(extra_patterns={"ACCOUNT": r"ACC-\d{8}", "POLICY": r"(?i)pol\d{6}"})
    text = "account ACC-12345678, policy POL123456 and pol654321, call 020 7946 0958"
    assert redactor.text(text) == "account [ACCOUNT], policy [POLICY] and [POLICY], call [PHONE]"
    assert redactor.text(redactor.text(text)) == redactor.text(text)


def test_extra_patterns_run_before_the_number_rules() -> None:
    # Otherwise the digits would be taken as a phone number and the label never applied.
    redactor = Redactor(extra_patterns={"MEMBER": r"\b\d{3}-\d{3}-\d{4}\b"})
    assert redactor.text("member 415-555-0132") == "member [MEMBER]"


def test_extra_patterns_parse_from_the_env_format() -> None:
    assert parse_extra_patterns(r" ACCOUNT = ACC-\d{8} ;POLICY=POL(?=\d)\d{6};;KEY=a=b ") == {
        "ACCOUNT": r"ACC-\d{8}",
        "POLICY": r"POL(?=\d)\d{6}",
        "KEY": "a=b",
    }


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (r"ACCOUNT=ACC-(\d{8}", "ACCOUNT: invalid regex"),
        (r"account=ACC-\d{8}", "label 'account'"),
        (r"1ACCOUNT=ACC-\d{8}", "label '1ACCOUNT'"),
        (r"ACCOUNT=\d*", "ACCOUNT: regex .* matches the empty string"),
        ("ACCOUNT", "expected LABEL=regex"),
        ("ACCOUNT=", "expected LABEL=regex"),
        ("A=x;A=y", "label 'A' is given twice"),
    ],
)
def test_invalid_extra_patterns_are_refused_at_start(value: str, message: str) -> None:
    with pytest.raises(ValidationError, match="ASSIST_REDACTION_EXTRA_PATTERNS") as raised:
        Settings(_env_file=None, environment="test", redaction_extra_patterns=value)
    assert raised.match(message)


def test_settings_read_the_redaction_configuration() -> None:
    settings = Settings(
        _env_file=None,
        environment="test",
        redaction_phone_regions="us, ie",
        redaction_extra_patterns=r"ACCOUNT=ACC-\d{8}",
    )
    assert settings.redaction_phone_regions == ["US", "IE"]
    assert settings.redaction_extra_patterns == {"ACCOUNT": r"ACC-\d{8}"}
    defaults = Settings(_env_file=None, environment="test")
    assert defaults.redaction_phone_regions == ["US", "GB"]
    assert defaults.redaction_extra_patterns == {}
    with pytest.raises(ValidationError, match="ASSIST_REDACTION_PHONE_REGIONS"):
        Settings(_env_file=None, environment="test", redaction_phone_regions="US,XX")


@pytest.mark.usefixtures("default_redactor")
def test_configure_logging_configures_the_process_wide_redactor(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = Settings(
        _env_file=None,
        environment="test",
        log_format="json",
        redaction_phone_regions="IE",
        redaction_extra_patterns=r"ACCOUNT=ACC-\d{8}",
    )
    try:
        configure_logging(settings, force=True)
        assert redact_text("ACC-12345678, 091 123 4567") == "[ACCOUNT], [PHONE]"
        assert redact_value({"note": "ACC-87654321"}) == {"note": "[ACCOUNT]"}
        get_logger("test.redaction").info("said", text="my account is ACC-12345678")
        logging.getLogger("some.library").warning("ring 091 123 4567")
        out = capsys.readouterr().out
        assert "12345678" not in out and "123 4567" not in out
        assert "[ACCOUNT]" in out and "[PHONE]" in out
    finally:
        structlog.reset_defaults()
        configure_logging(Settings(_env_file=None, environment="test"), force=True)
    assert redact_text("ACC-12345678") == "ACC-[PHONE]"


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
        "took 0.0123456 s, amount 1234567.89",
        "at 23:14:03.172687 and 2025-01-02T03:04:05.123456Z",
        "logged 2024-03-15T14:30:00.123456+00:00 and 2024-03-15 14:30:59",
        "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0.6099.109 Safari/537.36",
        "connect redis://127.0.0.1:6390/0 from [::1]:5000",
        "pid 12345 ppid 1, 3 retries, 250 ms, HTTP 503",
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


# The shortcut of `Redactor.text` (no "@" and no seven digits close together: nothing to do)
# must never change a result: against the full scan, on texts made of what the rules look at.
_SHORTCUT_ALPHABET = "0123456789      --..::++()@/_xZTab\n"
_SHORTCUT_PIECES = [
    "123e4567-e89b-12d3-a456-426614174000",
    "2024-03-15T14:30:00Z",
    "2024-03-15 14:30",
    "192.168.100.200",
    "jane.doe@example.com",
    "4111 1111 1111 1111",
    "+44 20 7946 0958",
    "(415) 555-2671",
    "req_5f3e0a",
    "HTTP/1.1",
]


@settings(max_examples=3000, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(alphabet=_SHORTCUT_ALPHABET, max_size=12), st.sampled_from(_SHORTCUT_PIECES)
        ),
        max_size=8,
    ),
    st.sampled_from([("US", "GB"), ("GB",), ()]),
)
def test_the_shortcut_agrees_with_the_full_scan(parts: list[str], regions: tuple[str, ...]) -> None:
    redactor = Redactor(phone_regions=regions)
    text = "".join(parts)
    assert redactor.text(text) == redactor._scan(text)


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
