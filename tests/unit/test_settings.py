"""Settings validation and derived values."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from pydantic import ValidationError

from assist.settings import Settings
from tests.conftest import CALLBACK_SECRET, ROTATED_SECRET

SettingsFactory = Callable[..., Settings]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ASSIST_") or name in {"REDIS_URL", "PORT", "GENESYS_ENV"}:
            monkeypatch.delenv(name)


def _secrets(values: list[object]) -> list[str]:
    return [v.get_secret_value() for v in values]  # type: ignore[attr-defined]


# --- comma-separated lists -------------------------------------------------------------------


def test_comma_separated_tokens_are_split_and_stripped(settings_factory: SettingsFactory) -> None:
    settings = settings_factory(desk_tokens=" a ,b,, c ,")
    assert _secrets(settings.desk_tokens) == ["a", "b", "c"]


def test_several_callback_secrets_keep_their_order(settings_factory: SettingsFactory) -> None:
    settings = settings_factory(callback_secrets=f"{ROTATED_SECRET}, {CALLBACK_SECRET}")
    assert _secrets(settings.callback_secrets) == [ROTATED_SECRET, CALLBACK_SECRET]


def test_a_list_is_accepted_as_it_is(settings_factory: SettingsFactory) -> None:
    settings = settings_factory(desk_tokens=["x", "y"])
    assert _secrets(settings.desk_tokens) == ["x", "y"]


def test_comma_list_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not JSON: the NoDecode annotation keeps pydantic-settings from json-decoding the value.
    monkeypatch.setenv("ASSIST_DESK_TOKENS", "t1,t2")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert _secrets(settings.desk_tokens) == ["t1", "t2"]


def test_an_empty_token_list_is_empty(settings_factory: SettingsFactory) -> None:
    assert settings_factory(desk_tokens="").desk_tokens == []


# --- callback authentication -----------------------------------------------------------------


def test_a_callback_secret_without_whsec_prefix_is_refused(
    settings_factory: SettingsFactory,
) -> None:
    with pytest.raises(ValidationError, match="whsec_"):
        settings_factory(callback_secrets="plain-secret")


def test_one_bad_secret_among_good_ones_is_refused(settings_factory: SettingsFactory) -> None:
    with pytest.raises(ValidationError, match="whsec_"):
        settings_factory(callback_secrets=f"{CALLBACK_SECRET},not-a-webhook-secret")


def test_shared_secret_header_without_secrets_is_refused(
    settings_factory: SettingsFactory,
) -> None:
    with pytest.raises(ValidationError, match="ASSIST_CALLBACK_SHARED_SECRETS"):
        settings_factory(callback_shared_secret_header="X-Callback-Token")


def test_shared_secret_header_with_secrets_is_accepted(settings_factory: SettingsFactory) -> None:
    settings = settings_factory(
        callback_shared_secret_header="X-Callback-Token", callback_shared_secrets="s1,s2"
    )
    assert settings.callback_shared_secret_header == "X-Callback-Token"
    assert _secrets(settings.callback_shared_secrets) == ["s1", "s2"]


# --- Genesys hosts ---------------------------------------------------------------------------


def test_hosts_derive_from_genesys_env(settings_factory: SettingsFactory) -> None:
    settings = settings_factory(
        genesys_env="mypurecloud.de", genesys_api_base_url="", genesys_login_base_url=""
    )
    assert settings.api_base_url == "https://api.mypurecloud.de"
    assert settings.login_base_url == "https://login.mypurecloud.de"
    # With no provider override, queries go to the Genesys API.
    assert settings.query_base_url == "https://api.mypurecloud.de"


def test_genesys_env_is_read_from_its_conventional_name(
    monkeypatch: pytest.MonkeyPatch, settings_factory: SettingsFactory
) -> None:
    monkeypatch.setenv("GENESYS_ENV", "usw2.pure.cloud")
    settings = settings_factory(genesys_api_base_url="", genesys_login_base_url="")
    assert settings.api_base_url == "https://api.usw2.pure.cloud"
    assert settings.login_base_url == "https://login.usw2.pure.cloud"


def test_explicit_hosts_override_genesys_env(settings_factory: SettingsFactory) -> None:
    settings = settings_factory(
        genesys_env="mypurecloud.de",
        genesys_api_base_url="http://127.0.0.1:8790",
        genesys_login_base_url="http://127.0.0.1:8791",
        provider_base_url="http://provider.test",
    )
    assert settings.api_base_url == "http://127.0.0.1:8790"
    assert settings.login_base_url == "http://127.0.0.1:8791"
    assert settings.query_base_url == "http://provider.test"


def test_trailing_slashes_are_stripped(settings_factory: SettingsFactory) -> None:
    settings = settings_factory(
        public_base_url="https://assist.example.com//",
        genesys_api_base_url="http://127.0.0.1:8790/",
        genesys_login_base_url="http://127.0.0.1:8790/",
        provider_base_url="http://provider.test/",
        analytics_url="http://analytics.test/events/",
    )
    assert settings.public_base_url == "https://assist.example.com"
    assert settings.callback_url == "https://assist.example.com/v1/callbacks/genesys"
    assert settings.api_base_url == "http://127.0.0.1:8790"
    assert settings.login_base_url == "http://127.0.0.1:8790"
    assert settings.query_base_url == "http://provider.test"
    assert settings.analytics_url == "http://analytics.test/events"


# --- platform names --------------------------------------------------------------------------


def test_redis_url_and_port_use_platform_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://redis.internal:6379/2")
    monkeypatch.setenv("PORT", "8123")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.redis_url == "redis://redis.internal:6379/2"
    assert settings.port == 8123


# --- ranking weights -------------------------------------------------------------------------


def test_all_zero_ranking_weights_are_refused(settings_factory: SettingsFactory) -> None:
    with pytest.raises(ValidationError, match="ranking weight"):
        settings_factory(rank_weight_confidence=0, rank_weight_skill=0, rank_weight_feedback=0)


def test_a_single_positive_weight_is_enough(settings_factory: SettingsFactory) -> None:
    settings = settings_factory(
        rank_weight_confidence=0, rank_weight_skill=0, rank_weight_feedback=0.2
    )
    assert (settings.rank_weight_confidence, settings.rank_weight_feedback) == (0, 0.2)


def test_negative_weights_are_refused(settings_factory: SettingsFactory) -> None:
    with pytest.raises(ValidationError):
        settings_factory(rank_weight_skill=-0.1)


def test_latency_budgets_parse_from_pairs(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(latency_budgets_ms="suggestions_ranked=250, keywords_detected=99")
    assert settings.latency_budgets_ms == {"suggestions_ranked": 250, "keywords_detected": 99}
    with pytest.raises(ValidationError, match="event_type=milliseconds"):
        settings_factory(latency_budgets_ms="suggestions_ranked")
    with pytest.raises(ValidationError):
        settings_factory(latency_budgets_ms="suggestions_ranked=fast")
