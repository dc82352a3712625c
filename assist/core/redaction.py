"""Redaction of personal data before anything is written or sent: cards, emails, phone numbers.

Applied to transcripts as they enter the server (so providers never receive them), and again
to every audit line, analytics record and log event. Replacements are fixed tokens
(`[CARD]`, `[NUMBER]`, `[EMAIL]`, `[PHONE]`, `[<LABEL>]` for configured patterns) so redacted
text stays readable and redaction is idempotent.

In order:

1. Configured extra patterns (`LABEL=regex`), over the whole text: an organisation's own
   formats (account or policy numbers) win over the generic rules below.
2. UUIDs (Genesys ids), IPv4 addresses and ISO dates/timestamps are set aside untouched.
3. Emails.
4. Card numbers: 13-19 digit runs (spaces or dashes allowed between digits) that pass the Luhn
   check become `[CARD]`; other runs of that length become `[NUMBER]`, because a long number
   in a transcript is far more often an account or card number than anything an agent needs
   in a log. Cards go before phone numbers, so a card is never reported as a phone number.
5. Phone numbers, found by `phonenumbers` (Google's libphonenumber metadata, maintained) for
   each configured region (national formats such as "020 7946 0958" need a region;
   "+44 20 7946 0958" is found whatever the region), at the POSSIBLE leniency (a plausible
   length, not necessarily an allocated range). Decimals and versions ("1234567.89",
   "HTTP/1.1", "Chrome/120.0.6099.109") are hidden from the matcher, and a find counts with
   7-15 digits, not glued to letters and not part of a time ("23:14:03.172687"). Texts
   without seven digits close together skip the matcher: redaction runs on every log line.

The process-wide `Redactor` behind `redact_text`/`redact_value` is set once per process by
`configure()` (called by `assist.logconfig.configure_logging`, the first call of every entry
point); until then the defaults apply.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import phonenumbers

# The lookbehind anchors a match at the start of the local part; without it a long run of
# letters with no "@" costs quadratic time.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
# Tokens that look like digit groups but are identifiers or moments: UUIDs (Genesys
# conversation ids), IPv4 addresses and ISO dates with an optional time (every log line's
# timestamp). They are set aside before the number rules run.
_KEEP = re.compile(
    # Hyphens may surround UUIDs: ids embed them ("analyse-<uuid>-<window>").
    r"(?<![0-9A-Za-z])[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}(?![0-9A-Za-z])"
    r"|(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)"
    r"|(?<![\w-])\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?(?![\w]|-\d)"
)
# Not starting inside a decimal or version ("HTTP/1.1 4111 1111 1111 1111").
_LONG_DIGITS = re.compile(r"(?<![\w])(?<!\d[.:])\d(?:[ -]?\d){12,18}(?![\w])")
# Cheap gate before the phone matcher: seven digits with at most a few separators between,
# the first not glued to a letter, digit or underscore before it. A find is only kept when
# nothing of the kind is glued to it (`_is_phone`), and it starts with its first digit or
# with "+" or "(" before it; so digits inside identifiers (hex ids, "req_5f3e...") never
# reach the matcher, which costs hundreds of microseconds on them.
_PHONE_CANDIDATE = re.compile(r"(?<!\w)\d(?:[^\w\n]{0,4}\d){6}")
_DOTTED = re.compile(r"\d+(?:\.\d+)+")
_DIGIT = re.compile(r"\d")
_PHONE_MIN_DIGITS = 7
_PHONE_MAX_DIGITS = 15
# POSSIBLE (the right length for the region) rather than VALID (an allocated range): a leak
# costs more than an over-redacted log, and allocations change faster than any pinned metadata
# (VALID misses Ofcom's 07700 900xxx, for one).
_PHONE_LENIENCY = phonenumbers.Leniency.POSSIBLE
# With no region, only numbers written with a "+" country code are found.
_NO_REGION = "ZZ"

#: Regions whose national phone formats are recognised unless configured otherwise.
DEFAULT_PHONE_REGIONS = ("US", "GB")
#: Labels of configured patterns: the placeholder is `[LABEL]`.
LABEL_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]{0,31}$")
#: Any placeholder redaction leaves in text, built-in or configured (`[CARD]`, `[ACCOUNT]`).
PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]{0,31}\]")

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


class RedactionConfigError(ValueError):
    """A configured pattern, label or phone region is unusable; the message names it."""


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


def parse_extra_patterns(value: str) -> dict[str, str]:
    """`LABEL=regex;LABEL=regex` -> {LABEL: regex} (a regex may contain "=", not ";")."""
    patterns: dict[str, str] = {}
    for item in value.split(";"):
        if not item.strip():
            continue
        label, sep, regex = item.partition("=")
        label = label.strip()
        if not sep or not regex.strip():
            raise RedactionConfigError(f"expected LABEL=regex, got {item.strip()!r}")
        if label in patterns:
            raise RedactionConfigError(f"label {label!r} is given twice")
        patterns[label] = regex.strip()
    return patterns


def compile_extra_patterns(patterns: Mapping[str, str]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """Check and compile configured patterns; errors name the label and the pattern."""
    compiled: list[tuple[str, re.Pattern[str]]] = []
    for label, regex in patterns.items():
        if not LABEL_PATTERN.match(label):
            raise RedactionConfigError(
                f"label {label!r}: use A-Z, 0-9 and _, starting with a letter (at most 32)"
            )
        try:
            pattern = re.compile(regex)
        except re.error as exc:
            raise RedactionConfigError(f"{label}: invalid regex {regex!r}: {exc}") from None
        if pattern.match("") is not None:
            raise RedactionConfigError(f"{label}: regex {regex!r} matches the empty string")
        compiled.append((label, pattern))
    return tuple(compiled)


def check_phone_regions(regions: Iterable[str]) -> tuple[str, ...]:
    """Upper-cased region codes, each one libphonenumber knows (e.g. US, GB, IE, DE)."""
    checked = tuple(region.strip().upper() for region in regions if region.strip())
    for region in checked:
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise RedactionConfigError(
                f"unknown phone region {region!r} (ISO 3166 codes such as US, GB, IE, DE)"
            )
    return checked


def _replace_long_digits(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[CARD]" if luhn_valid(digits) else "[NUMBER]"


def _is_phone(text: str, start: int, end: int) -> bool:
    """Whether the matcher's find at text[start:end] is a phone number in this context."""
    found = text[start:end]
    digits = sum(char.isdigit() for char in found)
    if not _PHONE_MIN_DIGITS <= digits <= _PHONE_MAX_DIGITS:
        return False
    if found.count(".") == 1 and _DOTTED.fullmatch(found):
        return False  # "555.0132" on its own may as well be a decimal
    before = text[max(start - 2, 0) : start].rjust(2)
    # Glued to a word, or the tail of a time, decimal or version ("23:14:03.172687"); but
    # "tel:+44..." and "phone:415..." are phone numbers.
    if before[1].isalnum() or before[1] == "_":
        return False
    if before[1] in ":." and before[0].isdigit():
        return False
    after = text[end : end + 2]
    if after[:1].isalnum() or after[:1] == "_":
        return False
    return not (after[:1] in (".", ":") and after[1:2].isdigit())


def _mask_dotted(match: re.Match[str]) -> str:
    """Decimals and versions become "x"s of the same length, so the phone matcher cannot take
    them for the start of a number ("HTTP/1.1 020 7946 0958"); dotted phone shapes stay
    ("01.42.68.53.00", "415.555.0132", "555.0132")."""
    found = match.group(0)
    groups = [len(group) for group in found.split(".")]
    if (len(groups) >= 3 and min(groups) >= 2) or groups == [3, 4]:
        return found
    return "x" * len(found)


class Redactor:
    """Redaction with one configuration: phone regions and extra `LABEL=regex` patterns."""

    def __init__(
        self,
        *,
        phone_regions: Iterable[str] = DEFAULT_PHONE_REGIONS,
        extra_patterns: Mapping[str, str] | None = None,
    ) -> None:
        self.phone_regions = check_phone_regions(phone_regions) or (_NO_REGION,)
        self.extra_patterns = compile_extra_patterns(extra_patterns or {})

    def text(self, text: str) -> str:
        """Replace configured patterns, emails, card numbers and phone numbers in free text.

        UUIDs, IPv4 addresses and ISO dates are kept as they are: they only look like digits.
        """
        for label, pattern in self.extra_patterns:
            text = pattern.sub(f"[{label}]", text)
        if "@" not in text and not _PHONE_CANDIDATE.search(text):
            # Most log values and record fields (ids, names, times, short numbers): every rule
            # below needs an "@" or seven digits close together (a card's 13 digits start with
            # seven such), and no set-aside token can make a piece match where the whole text
            # does not (tests/unit/test_redaction.py checks it against the full scan).
            return text
        return self._scan(text)

    def _scan(self, text: str) -> str:
        """Emails, cards and phone numbers, around the tokens set aside (`text` without its
        configured patterns and its shortcut)."""
        if not _DIGIT.search(text):
            # Most log values and utterances: only an email can be in there.
            return _EMAIL.sub("[EMAIL]", text) if "@" in text else text
        pieces: list[str] = []
        position = 0
        for keep in _KEEP.finditer(text):
            pieces.append(self._redact_numbers(text[position : keep.start()]))
            pieces.append(keep.group(0))
            position = keep.end()
        pieces.append(self._redact_numbers(text[position:]))
        return "".join(pieces)

    def value(self, value: Any) -> Any:
        """Redact every string inside nested dicts, lists and tuples; drop credential values."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {
                key: (
                    REDACTED_SECRET
                    if isinstance(key, str) and key.lower() in SECRET_KEYS
                    else self.value(item)
                )
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        return value

    def _redact_numbers(self, text: str) -> str:
        if not text:
            return text
        text = _EMAIL.sub("[EMAIL]", text)
        text = _LONG_DIGITS.sub(_replace_long_digits, text)
        for region in self.phone_regions:
            if not _PHONE_CANDIDATE.search(text):
                break
            text = self._redact_phones(text, region)
        return text

    @staticmethod
    def _redact_phones(text: str, region: str) -> str:
        masked = _DOTTED.sub(_mask_dotted, text)
        if not _PHONE_CANDIDATE.search(masked):
            return text
        pieces: list[str] = []
        position = 0
        for match in phonenumbers.PhoneNumberMatcher(masked, region, leniency=_PHONE_LENIENCY):
            if _is_phone(masked, match.start, match.end):
                pieces += [text[position : match.start], "[PHONE]"]
                position = match.end
        if not pieces:
            return text
        pieces.append(text[position:])
        return "".join(pieces)


_default = Redactor()


def configure(
    *,
    phone_regions: Iterable[str] = DEFAULT_PHONE_REGIONS,
    extra_patterns: Mapping[str, str] | None = None,
) -> Redactor:
    """Set the process-wide redactor (once per process, from the settings)."""
    global _default
    _default = Redactor(phone_regions=phone_regions, extra_patterns=extra_patterns)
    return _default


def current() -> Redactor:
    """The process-wide redactor that `redact_text` and `redact_value` use."""
    return _default


def redact_text(text: str) -> str:
    """Redact free text with the process-wide redactor (see `Redactor.text`)."""
    return _default.text(text)


def redact_value(value: Any) -> Any:
    """Redact nested values with the process-wide redactor (see `Redactor.value`)."""
    return _default.value(value)
