"""Keyword and entity detection (C3) on a blank English spaCy pipeline: no Redis, no downloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import spacy
from structlog.testing import capture_logs

from assist.nlp import (
    Detector,
    KeywordConfig,
    KeywordConfigError,
    Match,
    get_detector,
    load_config,
    parse_config,
    stem,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "keywords.json"
CARD = {"title": "t", "content": "c", "confidence": 0.7}


def config(**parts: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "phrases": [
            {
                "id": "billing_dispute",
                "patterns": ["charged twice", "charged me twice"],
                "card": "bill",
            },
            {"id": "lost_card", "patterns": ["stolen", "card was stolen"], "card": "card"},
            {"id": "password", "patterns": ["can't log in", "locked out"], "card": "pw"},
            {"id": "cancel", "patterns": ["cancel my contract"], "card": "cancel"},
        ],
        "entities": [
            {"label": "PRODUCT", "patterns": ["Fibre Max"], "card": "fibre"},
            {"id": "tv", "label": "PRODUCT", "patterns": ["TV Essentials"]},
            {"label": "ORG", "patterns": ["Contoso Telecom", "Contoso"], "card": "competitor"},
            {"label": "GPE", "patterns": ["Spain"], "card": "roaming"},
            {"label": "FACILITY", "patterns": ["head office"]},
        ],
        "cards": {
            name: {**CARD, "title": f"card {name}"}
            for name in ("bill", "card", "pw", "cancel", "fibre", "competitor", "roaming")
        },
        "default_card": {
            "title": "Customer mentioned {text} ({label})",
            "content": "About {name}.",
            "tags": ["entity"],
            "confidence": 0.4,
        },
    }
    base.update(parts)
    return base


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector.build(parse_config(config()))


def found(detector: Detector, text: str) -> list[tuple[str, str, str, str]]:
    return [(m.kind, m.label, m.text, m.card_id) for m in detector.detect(text)]


# --- the stemmer behind inflection tolerance ----------------------------------------------------


@pytest.mark.parametrize(
    "forms",
    [
        ("charge", "charges", "charged", "charging"),
        ("cancel", "cancels", "cancelled", "cancelling", "canceled"),
        ("bill", "bills", "billed", "billing"),
        ("refund", "refunds", "refunded", "refunding"),
        ("reply", "replies", "replied"),
        ("access", "accesses"),
        ("speed", "speeds"),
        ("leave", "leaves", "leaving"),
    ],
)
def test_stem_maps_regular_inflections_to_one_form(forms: tuple[str, ...]) -> None:
    assert len({stem(form) for form in forms}) == 1, {form: stem(form) for form in forms}


def test_stem_leaves_short_and_non_alphabetic_tokens_alone() -> None:
    assert [stem(w) for w in ("was", "is", "n't", "wi-fi", "4g", "Thing")] == [
        "was",
        "is",
        "n't",
        "wi-fi",
        "4g",
        "thing",
    ]


# --- phrases ---------------------------------------------------------------------------------


def test_phrases_match_in_any_case_with_offsets(detector: Detector) -> None:
    text = "Hi, I was CHARGED TWICE last month"
    [match] = detector.detect(text)
    assert match == Match(
        kind="phrase",
        label="billing_dispute",
        rule_id="billing_dispute",
        text="CHARGED TWICE",
        start=10,
        end=23,
        card_id="bill",
    )
    assert text[match.start : match.end] == "CHARGED TWICE"


@pytest.mark.parametrize(
    "text",
    ["they keep charging me twice", "you charge me twice every month", "it charges me twice"],
)
def test_phrases_match_inflected_forms(detector: Detector, text: str) -> None:
    assert [m.card_id for m in detector.detect(text)] == ["bill"]


@pytest.mark.parametrize("text", ["I can't log in", "I cannot log in", "I can not log in"])
def test_contractions_and_their_spelled_out_forms_match_alike(
    detector: Detector, text: str
) -> None:
    assert [m.label for m in detector.detect(text)] == ["password"]


def test_a_longer_match_of_a_phrase_hides_the_shorter_one_inside_it(detector: Detector) -> None:
    assert found(detector, "my card was stolen") == [
        ("phrase", "lost_card", "card was stolen", "card")
    ]


def test_several_phrases_and_entities_in_text_order(detector: Detector) -> None:
    text = "I'm locked out and want to cancel my contract, Contoso Telecom is cheaper"
    assert found(detector, text) == [
        ("phrase", "password", "locked out", "pw"),
        ("phrase", "cancel", "cancel my contract", "cancel"),
        ("entity", "ORG", "Contoso Telecom", "competitor"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Thanks, that is all for today, have a lovely day",
        "I paid the bill twice? No, I paid it once.",  # "charged" is not "paid"
        "the charge was applied twice",  # words apart are not the phrase
        "",
    ],
)
def test_unrelated_text_matches_nothing(detector: Detector, text: str) -> None:
    assert detector.detect(text) == []


# --- entities --------------------------------------------------------------------------------


def test_multi_word_products_match_in_any_case(detector: Detector) -> None:
    [match] = detector.detect("is fibre MAX available at my address")
    assert (match.kind, match.label, match.text, match.card_id) == (
        "entity",
        "PRODUCT",
        "fibre MAX",
        "fibre",
    )
    assert (match.start, match.end, match.rule_id) == (3, 12, "fibre-max")


def test_organisations_and_places_from_the_configuration(detector: Detector) -> None:
    assert found(detector, "contoso offered me a deal, and I'm going to spain") == [
        ("entity", "ORG", "contoso", "competitor"),
        ("entity", "GPE", "spain", "roaming"),
    ]


def test_an_entity_without_a_card_gets_the_default_card(detector: Detector) -> None:
    [match] = detector.detect("my tv essentials box is broken")
    assert match.default_card
    assert match.card_id == "kw-entity-product-tv"
    card = detector.card(match)
    assert card.id == "kw-entity-product-tv"
    assert card.spec.title == "Customer mentioned tv essentials (PRODUCT)"
    assert card.spec.content == "About TV Essentials."  # {name}: the configured name
    assert (card.spec.confidence, card.spec.tags, card.spec.knowledge_source_id) == (
        0.4,
        ("entity",),
        "keywords",
    )


def test_custom_labels_work_like_the_standard_ones(detector: Detector) -> None:
    [match] = detector.detect("I called your Head Office")
    assert (match.label, match.card_id) == ("FACILITY", "kw-entity-facility-head-office")


def test_a_configured_card_is_returned_as_configured(detector: Detector) -> None:
    [match] = detector.detect("charged twice")
    card = detector.card(match)
    assert (card.id, card.spec.title, card.spec.confidence) == ("bill", "card bill", 0.7)


# --- configuration ---------------------------------------------------------------------------


def errors_of(raw: dict[str, Any]) -> str:
    with pytest.raises(KeywordConfigError) as caught:
        parse_config(raw)
    return str(caught.value)


def test_an_unknown_card_id_is_an_error_naming_the_entry() -> None:
    raw = config()
    raw["phrases"][2]["card"] = "nope"
    raw["entities"][0]["card"] = "missing"
    message = errors_of(raw)
    assert "phrases[2] (id 'password'): unknown card 'nope'" in message
    assert "entities[0] (id 'fibre-max'): unknown card 'missing'" in message


def test_empty_or_blank_patterns_are_errors_naming_the_entry() -> None:
    raw = config()
    raw["phrases"][1]["patterns"] = []
    raw["entities"][2]["patterns"] = ["Contoso", "   "]
    message = errors_of(raw)
    assert "phrases[1] (id 'lost_card').patterns: List should have at least 1 item" in message
    assert "entities[2].patterns[1]: String should have at least 1 character" in message


def test_duplicate_ids_unknown_fields_and_bad_templates_are_errors() -> None:
    raw = config()
    raw["phrases"].append({"id": "cancel", "patterns": ["quit"], "card": "cancel"})
    assert "phrases[4] (id 'cancel'): id 'cancel' is also used by phrases[3]" in errors_of(raw)
    raw = config()
    raw["cards"]["bill"]["confidance"] = 0.5
    assert "cards.bill.confidance: Extra inputs are not permitted" in errors_of(raw)
    raw = config()
    raw["default_card"]["title"] = "Mentioned {entity}"
    assert "default_card.title: Value error, unknown placeholder {entity}" in errors_of(raw)
    raw = config()
    raw["entities"][0]["label"] = "product"
    assert "entities[0].label: String should match pattern" in errors_of(raw)


def test_load_config_reports_missing_files_and_bad_json(tmp_path: Path) -> None:
    with pytest.raises(KeywordConfigError, match="cannot read keywords config"):
        load_config(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"phrases": [', encoding="utf-8")
    with pytest.raises(KeywordConfigError, match="is not JSON"):
        load_config(broken)


def test_the_shipped_configuration_is_valid_and_its_article_cards_are_real_articles() -> None:
    shipped = load_config(SHIPPED)
    assert shipped.phrases and shipped.entities
    articles = json.loads((ROOT / "emulator" / "data" / "knowledge.json").read_text())["articles"]
    titles = {a["id"]: a["title"] for a in articles}
    for card_id, card in shipped.cards.items():
        if card_id.startswith("kb-art-"):
            # Same id and title as the knowledge article, so ranking merges it with the
            # provider's copy and feedback on either counts for both.
            assert titles[card_id] == card.title, card_id


@pytest.mark.parametrize(
    ("text", "cards"),
    [
        ("I was CHARGED TWICE and want a refund", ["kb-art-001", "kb-art-003"]),
        ("I'm locked out, I can't log in", ["kb-art-004"]),
        ("someone stole my card", ["kb-art-005"]),
        ("I'm travelling to Spain, will roaming work?", ["kb-art-006"]),
        ("my wifi router keeps dropping", ["kb-art-007"]),
        ("I want to cancel my contract and go to Contoso", ["kb-art-010", "kw-competitor"]),
        ("is Fibre Max available", ["kw-product-fibre-max"]),
        ("I'd like TV Essentials", ["kw-entity-product-tv-essentials"]),
        ("Thank you, goodbye", []),
    ],
)
def test_the_shipped_configuration_on_contact_centre_phrases(text: str, cards: list[str]) -> None:
    detector = get_detector(SHIPPED)
    assert sorted({m.card_id for m in detector.detect(text)}) == cards


# --- pipelines -------------------------------------------------------------------------------


def test_a_configured_pipeline_that_is_not_installed_falls_back_to_blank_with_a_warning() -> None:
    with capture_logs() as logs:
        detector = Detector.build(parse_config(config()), "en_core_web_sm_not_installed")
    assert detector.pipeline == "blank:en"
    [warning] = [entry for entry in logs if entry["event"] == "nlp.pipeline_unavailable"]
    assert warning["log_level"] == "warning"
    assert warning["pipeline"] == "en_core_web_sm_not_installed"
    assert [m.card_id for m in detector.detect("charged twice")] == ["bill"]


def test_an_installed_pipeline_is_used_and_its_entities_can_get_the_default_card(
    tmp_path: Path,
) -> None:
    # Stands in for a statistical pipeline: its own NER finds places and people.
    model = spacy.blank("en")
    model.add_pipe("entity_ruler", name="ner").add_patterns(
        [
            {"label": "GPE", "pattern": "Paris"},
            {"label": "PERSON", "pattern": "Alice"},
            {"label": "ORG", "pattern": "Contoso"},
        ]
    )
    model.to_disk(tmp_path / "pipeline")
    raw = config(model_entity_labels=["GPE"])
    detector = Detector.build(parse_config(raw), str(tmp_path / "pipeline"))
    assert detector.pipeline == str(tmp_path / "pipeline")
    matches = detector.detect("Alice is in Paris and Contoso called her, she was charged twice")
    assert [(m.label, m.text, m.card_id, m.rule_id) for m in matches] == [
        ("GPE", "Paris", "kw-entity-gpe-paris", ""),  # the model's entity, an allowed label
        ("ORG", "Contoso", "competitor", "contoso-telecom"),  # ours wins over the model's
        ("billing_dispute", "charged twice", "bill", "billing_dispute"),
    ]


def test_the_detector_is_built_once_per_process_and_configuration() -> None:
    assert get_detector(SHIPPED) is get_detector(str(SHIPPED))
    assert isinstance(get_detector(SHIPPED).config, KeywordConfig)


def test_the_default_config_path_is_found_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assist.nlp.config import load_config

    monkeypatch.chdir(tmp_path)
    assert load_config("config/keywords.json").cards
