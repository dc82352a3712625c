"""Keyword and entity detection (capability C3) with spaCy, working without any download.

The pipeline is `spacy.blank("en")` (tokenizer only) unless `ASSIST_NLP_PIPELINE` names an
installed pipeline (`en_core_web_sm`, or a pipeline directory), which is then loaded; a name
that is not installed falls back to the blank pipeline with a logged warning. On top of it:

- an `entity_ruler` (`assist_entity_ruler`, before the pipeline's own `ner` if it has one)
  with the configured entities as token patterns on `LOWER`, so names match in any case;
- `assist_normalizer`, the last component, which writes a normalised form into every
  token's `NORM`: the lemma when the pipeline has a lemmatizer, else the tokenizer's norm
  (lower case, with contractions expanded: "ca n't" -> "can not"), then `stem()`;
- a `PhraseMatcher` on `NORM` for the configured phrases, whose patterns go through the same
  pipeline, so "I was CHARGED TWICE", "charges twice" and "charging twice" all meet the pattern
  "charged twice" at "charg twic".

Inflection without a lemmatizer: a blank pipeline has no lemma data (that would be the
`spacy-lookups-data` package, which is not a dependency), so `stem()` strips the regular
English endings (-s, -es, -ies, -ed, -ied, -ing, a final -e, a doubled final consonant). It is
applied to the text and to the patterns alike, so it only needs to be consistent, not correct:
"cancelled", "cancelling" and "cancels" all become "cancel". Irregular forms ("stolen",
"left", "paid") are not covered and belong in the patterns themselves.

`Detector.detect(text)` is pure (no Redis, no I/O) and returns `Match`es; `get_detector()`
builds one per process and configuration, on first use.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import spacy
from spacy.language import Language
from spacy.matcher import PhraseMatcher
from spacy.pipeline import EntityRuler
from spacy.tokens import Doc, Span
from spacy.util import filter_spans

from assist.logconfig import get_logger
from assist.nlp.config import CARD_ID_MAX, CardSpec, KeywordConfig, load_config, resolve_path, slug

log = get_logger(__name__)

NORMALIZER = "assist_normalizer"
ENTITY_RULER = "assist_entity_ruler"
# Prefix of our entity-ruler pattern ids, so our entities are told apart from a model's NER.
ENTITY_ID_PREFIX = "assist-kw:"
MAX_TEXT_CHARS = 20_000

MatchKind = Literal["phrase", "entity"]

_SUFFIXES: tuple[tuple[str, str, int], ...] = (
    # (ending, replacement, shortest stem left)
    ("ies", "y", 2),
    ("ied", "y", 2),
    ("ing", "", 3),
    ("ed", "", 3),
    ("es", "", 3),
    ("s", "", 3),
)


def stem(word: str) -> str:
    """A crude, consistent English stem: charge/charges/charged/charging -> "charg".

    Only alphabetic words longer than three letters change; "-eed" words ("speed") and "-ss"
    words ("access") keep their ending, so they are not confused with past tenses or plurals.
    """
    w = word.lower()
    if len(w) <= 3 or not w.isalpha():
        return w
    for ending, replacement, shortest in _SUFFIXES:
        if not w.endswith(ending) or len(w) - len(ending) < shortest:
            continue
        if (ending == "ed" and w.endswith("eed")) or (ending == "s" and w.endswith("ss")):
            continue
        w = w[: -len(ending)] + replacement
        break
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "aeiou":
        w = w[:-1]
    return w


def _normalize(doc: Doc) -> Doc:
    for token in doc:
        token.norm_ = stem(token.lemma_.lower() if token.lemma_ else token.norm_)
    return doc


Language.component(NORMALIZER, assigns=["token.norm"], func=_normalize)


@dataclass(frozen=True)
class Match:
    """One detection in a text.

    `label` is the entity label (PRODUCT, ORG, GPE, custom) or, for a phrase, the phrase id.
    `rule_id` is the configured phrase or entity id ("" for an entity only a model found).
    `start`/`end` are character offsets into the analysed text; `text` is the span as said.
    """

    kind: MatchKind
    label: str
    rule_id: str
    text: str
    start: int
    end: int
    card_id: str
    default_card: bool = False


@dataclass(frozen=True)
class Card:
    """A card ready to become a suggestion candidate."""

    id: str
    spec: CardSpec


def load_pipeline(name: str) -> tuple[Language, str]:
    """The configured pipeline and what was loaded ("blank:en" when none or not installed)."""
    if name:
        try:
            return spacy.load(name), name
        except (OSError, ImportError) as exc:
            log.warning(
                "nlp.pipeline_unavailable", pipeline=name, fallback="blank:en", error=str(exc)
            )
    return spacy.blank("en"), "blank:en"


class Detector:
    """Phrase and entity detection for one configuration on one spaCy pipeline."""

    def __init__(self, config: KeywordConfig, nlp: Language, *, pipeline: str = "blank:en"):
        self.config = config
        self.pipeline = pipeline
        self._nlp = nlp
        self._entities = {rule.rule_id: rule for rule in config.entities}
        self._model_labels = frozenset(config.model_entity_labels)
        ruler = nlp.add_pipe(
            "entity_ruler",
            name=ENTITY_RULER,
            before="ner" if "ner" in nlp.pipe_names else None,
            config={"validate": True},
        )
        assert isinstance(ruler, EntityRuler)
        ruler.add_patterns(
            [
                {
                    "label": rule.label,
                    "pattern": [{"LOWER": t.lower_} for t in nlp.make_doc(text) if not t.is_space],
                    "id": ENTITY_ID_PREFIX + rule.rule_id,
                }
                for rule in config.entities
                for text in rule.patterns
            ]
        )
        nlp.add_pipe(NORMALIZER, last=True)
        self._phrases = PhraseMatcher(nlp.vocab, attr="NORM")
        for phrase in config.phrases:
            self._phrases.add(phrase.id, list(nlp.pipe(phrase.patterns)))
        self._phrase_cards = {phrase.id: phrase.card for phrase in config.phrases}

    @classmethod
    def build(cls, config: KeywordConfig, pipeline: str = "") -> Detector:
        nlp, loaded = load_pipeline(pipeline)
        return cls(config, nlp, pipeline=loaded)

    def detect(self, text: str) -> list[Match]:
        """Phrases and entities in `text`, in text order (a longer phrase hides a shorter one)."""
        doc = self._nlp(text[:MAX_TEXT_CHARS])
        spans_by_rule: dict[str, list[Span]] = {}
        for match_id, start, end in self._phrases(doc):
            rule_id = self._nlp.vocab.strings[match_id]
            spans_by_rule.setdefault(rule_id, []).append(doc[start:end])
        matches = [
            Match(
                kind="phrase",
                label=rule_id,
                rule_id=rule_id,
                text=span.text,
                start=span.start_char,
                end=span.end_char,
                card_id=self._phrase_cards[rule_id],
            )
            for rule_id, spans in spans_by_rule.items()
            for span in filter_spans(spans)
        ]
        matches.extend(m for ent in doc.ents if (m := self._entity_match(ent)) is not None)
        matches.sort(key=lambda m: (m.start, -m.end, m.kind, m.rule_id))
        return matches

    def _entity_match(self, ent: Span) -> Match | None:
        ent_id = ent.ent_id_
        if ent_id.startswith(ENTITY_ID_PREFIX):
            rule = self._entities[ent_id.removeprefix(ENTITY_ID_PREFIX)]
            card_id, name, rule_id = rule.card, rule.name, rule.rule_id
        elif ent.label_ in self._model_labels:
            card_id, name, rule_id = None, ent.text, ""
        else:
            return None
        default_card = card_id is None
        if card_id is None:
            key = rule_id or slug(name) or "x"
            card_id = f"kw-entity-{slug(ent.label_, 20)}-{key}"[:CARD_ID_MAX]
        return Match(
            kind="entity",
            label=ent.label_,
            rule_id=rule_id,
            text=ent.text,
            start=ent.start_char,
            end=ent.end_char,
            card_id=card_id,
            default_card=default_card,
        )

    def card(self, match: Match) -> Card:
        """The card a match shows: its configured card, or the default card filled in."""
        if not match.default_card:
            return Card(match.card_id, self.config.card(match.card_id))
        rule = self._entities.get(match.rule_id)
        spec = self.config.default_card.fill(
            text=match.text, name=rule.name if rule else match.text, label=match.label
        )
        return Card(match.card_id, spec)


@functools.lru_cache(maxsize=4)
def _cached_detector(config_path: str, pipeline: str) -> Detector:
    config = load_config(config_path)
    detector = Detector.build(config, pipeline)
    log.info(
        "nlp.detector_ready",
        config=config_path,
        pipeline=detector.pipeline,
        phrases=len(config.phrases),
        entities=len(config.entities),
        cards=len(config.cards),
    )
    return detector


def get_detector(config_path: str | Path, pipeline: str = "") -> Detector:
    """The process's detector for this configuration file and pipeline, built on first use."""
    return _cached_detector(str(resolve_path(config_path).resolve()), pipeline)
