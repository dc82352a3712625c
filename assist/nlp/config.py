"""The keyword and entity configuration (capability C3): what to listen for, and which card to show.

The file (`ASSIST_KEYWORDS_CONFIG_PATH`, JSON) has four parts:

    {
      "phrases": [{"id": "billing_dispute", "patterns": ["charged twice", ...],
                   "card": "kb-art-001"}],
      "entities": [{"label": "PRODUCT", "patterns": ["Fibre Max"], "card": "kw-fibre-max"},
                   {"label": "PRODUCT", "patterns": ["TV Essentials"]}],
      "cards":    {"kb-art-001": {"title": ..., "content": ..., "tags": [...], "confidence": 0.8,
                                  "knowledge_source_id": "keywords"}},
      "default_card": {"title": "Customer mentioned {text} ({label})", "content": ..., ...},
      "model_entity_labels": []
    }

- A phrase is a keyword or multi-word expression; matching ignores case and simple inflection
  (see `assist.nlp.detector.stem`). Every phrase names a card.
- An entity is a name (product, organisation, place, or any custom upper-case label) matched
  case-insensitively. Its `card` is optional: without one, the default card is filled in
  with `{text}` (as said), `{name}` (the entity's first pattern) and `{label}`.
- `model_entity_labels`: only with an installed statistical pipeline (`ASSIST_NLP_PIPELINE`),
  entities its NER finds with these labels also get the default card. Empty by default, since
  a general-purpose NER also finds people's names, which are not worth a card.

The file is validated once, at load, with the models below; every error names the entry
(`phrases[3] (id 'refund').patterns: ...`), and a card id that no card defines is an error.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

# Card ids become suggestion ids, which agents' feedback refers to: keep them URL- and key-safe.
CARD_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
CARD_ID_MAX = 128
TEMPLATE_FIELDS = frozenset({"text", "name", "label"})

CardId = Annotated[
    str, StringConstraints(min_length=1, max_length=CARD_ID_MAX, pattern=CARD_ID_PATTERN)
]
RuleId = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[a-z0-9_-]+$")]
Label = Annotated[str, StringConstraints(min_length=1, max_length=50, pattern=r"^[A-Z][A-Z0-9_]*$")]
Pattern = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class KeywordConfigError(ValueError):
    """The keyword configuration file is missing, not JSON, or not valid."""


def slug(text: str, max_length: int = 60) -> str:
    """Lower-case ASCII letters and digits joined by `-` ("Fibre Max" -> "fibre-max")."""
    return "-".join(re.findall(r"[a-z0-9]+", text.casefold()))[:max_length].strip("-")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CardSpec(_Strict):
    """A suggestion card as the configuration defines it."""

    title: str = Field(min_length=1, max_length=500)
    content: str = Field(min_length=1, max_length=20_000)
    tags: tuple[str, ...] = ()
    confidence: float = Field(ge=0.0, le=1.0)
    knowledge_source_id: str = Field(default="keywords", min_length=1, max_length=200)


class DefaultCard(CardSpec):
    """Template of the card for an entity with no card of its own."""

    title: str = Field(default="Customer mentioned {text} ({label})", min_length=1, max_length=500)
    confidence: float = Field(default=0.5, ge=0.0, le=1.0)

    @field_validator("title", "content")
    @classmethod
    def _known_placeholders(cls, template: str) -> str:
        for _, field, _, _ in string.Formatter().parse(template):
            if field is not None and field not in TEMPLATE_FIELDS:
                known = ", ".join("{" + f + "}" for f in sorted(TEMPLATE_FIELDS))
                raise ValueError(f"unknown placeholder {{{field}}}; use {known}")
        return template

    def fill(self, *, text: str, name: str, label: str) -> CardSpec:
        values = {"text": text, "name": name, "label": label}
        return CardSpec(
            title=self.title.format(**values)[:500],
            content=self.content.format(**values)[:20_000],
            tags=self.tags,
            confidence=self.confidence,
            knowledge_source_id=self.knowledge_source_id,
        )


class PhraseRule(_Strict):
    id: RuleId
    patterns: list[Pattern] = Field(min_length=1)
    card: CardId


class EntityRule(_Strict):
    id: RuleId | None = Field(default=None, description="Default: the slug of the first pattern.")
    label: Label
    patterns: list[Pattern] = Field(min_length=1)
    card: CardId | None = None

    @property
    def rule_id(self) -> str:
        return self.id or slug(self.patterns[0]) or "entity"

    @property
    def name(self) -> str:
        """The canonical name: the first pattern as written."""
        return self.patterns[0]


class KeywordConfig(_Strict):
    phrases: list[PhraseRule] = Field(default_factory=list)
    entities: list[EntityRule] = Field(default_factory=list)
    cards: dict[CardId, CardSpec] = Field(default_factory=dict)
    default_card: DefaultCard
    model_entity_labels: list[Label] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> KeywordConfig:
        problems: list[str] = []
        seen: dict[str, str] = {}
        entries: list[tuple[str, str, str | None]] = [
            *((f"phrases[{i}]", rule.id, rule.card) for i, rule in enumerate(self.phrases)),
            *((f"entities[{i}]", rule.rule_id, rule.card) for i, rule in enumerate(self.entities)),
        ]
        for where, rule_id, card in entries:
            described = f"{where} (id {rule_id!r})"
            key = f"{where.partition('[')[0]}:{rule_id}"
            if key in seen:
                problems.append(f"{described}: id {rule_id!r} is also used by {seen[key]}")
            seen.setdefault(key, described)
            if card is not None and card not in self.cards:
                problems.append(f"{described}: unknown card {card!r} (not in 'cards')")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def card(self, card_id: str) -> CardSpec:
        return self.cards[card_id]


def _where(raw: Any, loc: tuple[int | str, ...]) -> str:
    """`phrases[3] (id 'refund').patterns` for a pydantic error location."""
    parts: list[str] = []
    node = raw
    for step in loc:
        if isinstance(step, int):
            parts[-1:] = [f"{parts[-1] if parts else ''}[{step}]"]
            node = node[step] if isinstance(node, list) and step < len(node) else None
            rule_id = node.get("id") if isinstance(node, dict) else None
            if rule_id is not None:
                parts[-1] += f" (id {rule_id!r})"
        else:
            parts.append(str(step))
            node = node.get(step) if isinstance(node, dict) else None
    return ".".join(parts) or "(top level)"


def parse_config(raw: Any, *, source: str = "keywords config") -> KeywordConfig:
    """Validate already-parsed JSON; raises `KeywordConfigError` naming each bad entry."""
    try:
        return KeywordConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{_where(raw, err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise KeywordConfigError(f"{source} is not valid: " + "; ".join(lines)) from None


# The checkout the code runs from: relative paths that do not exist in the working directory
# are looked up here, so a process started from elsewhere still finds the shipped config.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def resolve_path(path: str | Path) -> Path:
    file = Path(path)
    if not file.is_absolute() and not file.exists() and (PROJECT_ROOT / file).exists():
        return PROJECT_ROOT / file
    return file


def load_config(path: str | Path) -> KeywordConfig:
    """Read and validate the JSON configuration file (relative: cwd, then the project root)."""
    file = resolve_path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeywordConfigError(f"cannot read keywords config {str(file)!r}: {exc}") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KeywordConfigError(f"{str(file)!r} is not JSON: {exc}") from exc
    return parse_config(raw, source=repr(str(file)))
