"""Redaction of personal data before anything is written: card numbers, emails, phone numbers.

Applied to transcripts as they enter the server (so providers never receive them), and again
to every audit line, analytics record and log event. Replacements are fixed tokens
(`[CARD]`, `[NUMBER]`, `[EMAIL]`, `[PHONE]`) so redacted text stays readable and redaction is
idempotent.

Card numbers are 13-19 digit runs (spaces or dashes allowed between digits) that pass the Luhn
check; other runs of that length become `[NUMBER]`, because a long number in a transcript is
far more often an account or card number than anything an agent needs in a log.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# The lookbehind anchors a match at the start of the local part; without it a long run of
# letters with no "@" costs quadratic time.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
# Tokens that look like digit groups but are identifiers: UUIDs (Genesys conversation ids)
# and IPv4 addresses. They are set aside before the number patterns run.
_KEEP = re.compile(
    # Hyphens may surround them: ids embed UUIDs ("analyse-<uuid>-<window>").
    r"(?<![0-9A-Za-z])[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}(?![0-9A-Za-z])"
    r"|(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)"
)
_LONG_DIGITS = re.compile(r"(?<![\w])\d(?:[ -]?\d){12,18}(?![\w])")
# Digit groups next to ":" or a "." followed by digits belong to times, timestamps and
# decimals ("23:14:03.172687"), not to phone numbers.
_PHONE = re.compile(
    r"(?<![\w+:.])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){1,4}"
    r"(?![\w]|[.:]\d)"
)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PHONE_MIN_DIGITS = 7
_PHONE_MAX_DIGITS = 15

# Keys whose values are credentials: dropped from records whatever their content.
SECRET_KEYS = frozenset(
    {
        "authorization",
        "password",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "api_key",
        "webhook-signature",
        "signature",
    }
)
REDACTED_SECRET = "[SECRET]"


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _replace_long_digits(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[CARD]" if luhn_valid(digits) else "[NUMBER]"


def _replace_phone(match: re.Match[str]) -> str:
    text = match.group(0)
    digit_count = sum(char.isdigit() for char in text)
    if not _PHONE_MIN_DIGITS <= digit_count <= _PHONE_MAX_DIGITS or _ISO_DATE.match(text):
        return text
    return "[PHONE]"


def _redact_numbers(text: str) -> str:
    text = _EMAIL.sub("[EMAIL]", text)
    text = _LONG_DIGITS.sub(_replace_long_digits, text)
    return _PHONE.sub(_replace_phone, text)


def redact_text(text: str) -> str:
    """Replace card numbers, emails and phone numbers in free text.

    UUIDs and IPv4 addresses are kept as they are: they only look like digit groups.
    """
    pieces: list[str] = []
    position = 0
    for keep in _KEEP.finditer(text):
        pieces.append(_redact_numbers(text[position : keep.start()]))
        pieces.append(keep.group(0))
        position = keep.end()
    pieces.append(_redact_numbers(text[position:]))
    return "".join(pieces)


def redact_value(value: Any) -> Any:
    """Redact every string inside nested dicts, lists and tuples; drop credential values."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            key: (
                REDACTED_SECRET
                if isinstance(key, str) and key.lower() in SECRET_KEYS
                else redact_value(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_value(item) for item in value]
    return value
