"""Keyword and entity detection (capability C3): configuration and the spaCy detector.

Lives outside `assist.core` because it imports spaCy; it does no I/O beyond reading its
configuration file, so it is unit-testable without Redis.
"""

from __future__ import annotations

from assist.nlp.config import (
    CardSpec,
    DefaultCard,
    EntityRule,
    KeywordConfig,
    KeywordConfigError,
    PhraseRule,
    load_config,
    parse_config,
)
from assist.nlp.detector import Card, Detector, Match, get_detector, load_pipeline, stem

__all__ = [
    "Card",
    "CardSpec",
    "DefaultCard",
    "Detector",
    "EntityRule",
    "KeywordConfig",
    "KeywordConfigError",
    "Match",
    "PhraseRule",
    "get_detector",
    "load_config",
    "load_pipeline",
    "parse_config",
    "stem",
]
