"""Secrets: placeholders refused in production, configured values masked in every log line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import structlog

from assist.logconfig import configure_logging, get_logger
from assist.settings import PLACEHOLDER_SECRETS, Settings

ROOT = Path(__file__).resolve().parents[2]
SECRET_SETTINGS = (
    "ASSIST_DESK_TOKENS",
    "ASSIST_CALLBACK_SECRETS",
    "ASSIST_CALLBACK_SHARED_SECRETS",
    "ASSIST_GENESYS_CLIENT_SECRET",
    "ASSIST_ANALYTICS_TOKEN",
    "ASSIST_UTTERANCE_WEBHOOK_SECRET",
    "ASSIST_TRAINING_WEBHOOK_SECRET",
)


def example_secret_values() -> set[str]:
    values: set[str] = set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() in SECRET_SETTINGS:
            values |= {v.strip() for v in value.split(",") if v.strip()}
    return values


def test_the_placeholder_list_is_what_env_example_ships() -> None:
    assert example_secret_values() == set(PLACEHOLDER_SECRETS)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("desk_tokens", "dev-desk-token"),
        ("callback_secrets", "whsec_EIvYBSq82SpIf8kOR41fBTNqWxw58aSw"),
        ("genesys_client_secret", "demo-secret"),
        ("training_webhook_secret", "whsec_EIvYBSq82SpIf8kOR41fBTNqWxw58aSw"),
    ],
)
def test_production_refuses_placeholder_secrets(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"ASSIST_{field.upper()} holds the development"):
        Settings(_env_file=None, environment="production", **{field: value})
    # Development (the README's run command) takes them.
    Settings(_env_file=None, environment="development", **{field: value})


def test_production_takes_real_secrets() -> None:
    settings = Settings(
        _env_file=None,
        environment="production",
        desk_tokens="a-real-desk-token-1234",
        callback_secrets="whsec_TirfarFFTptq3BY9aQSa9Vcshy8gkrQQ",
    )
    assert settings.secret_values() == [
        "a-real-desk-token-1234",
        "whsec_TirfarFFTptq3BY9aQSa9Vcshy8gkrQQ",
    ]


def test_configured_secret_values_never_reach_the_log_output(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = Settings(
        _env_file=None,
        environment="test",
        log_format="json",
        desk_tokens="desk-token-for-masking",
        genesys_client_secret="client-secret-for-masking",
    )
    try:
        configure_logging(settings, force=True)
        log = get_logger("test.secrets")
        # Not in a credential-named field, so only the value masking can catch them.
        log.info("calling", url="https://x.example/?t=desk-token-for-masking")
        try:
            raise RuntimeError("login failed with client-secret-for-masking")
        except RuntimeError:
            log.exception("failed")
        logging.getLogger("some.library").warning("header was desk-token-for-masking")
        out = capsys.readouterr().out
        assert "desk-token-for-masking" not in out
        assert "client-secret-for-masking" not in out
        assert out.count("[SECRET]") >= 3
    finally:
        structlog.reset_defaults()
        configure_logging(Settings(_env_file=None, environment="test"), force=True)
