""".env.example lists every setting, under the name Settings reads, with a value it accepts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import AliasChoices, SecretStr

from assist.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = ROOT / ".env.example"
PLATFORM_NAMES = {"REDIS_URL", "PORT", "GENESYS_ENV"}


def parse_env_file(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a KEY=VALUE line: {raw!r}"
        pairs.append((key.strip(), value.strip()))
    return pairs


def env_name(field_name: str) -> str:
    alias = Settings.model_fields[field_name].validation_alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        assert isinstance(first, str)
        return first
    return f"ASSIST_{field_name.upper()}"


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ASSIST_") or name in PLATFORM_NAMES:
            monkeypatch.delenv(name)


def test_keys_are_exactly_the_settings_plus_emulator_extras() -> None:
    keys = [key for key, _ in parse_env_file(ENV_EXAMPLE)]
    assert len(keys) == len(set(keys)), "a key is listed twice"
    expected = {env_name(name) for name in Settings.model_fields}
    listed = set(keys)
    assert expected - listed == set(), "settings missing from .env.example"
    extras = listed - expected
    assert all(key.startswith("EMULATOR_") for key in extras), extras


def test_platform_names_keep_their_conventional_names() -> None:
    assert env_name("redis_url") == "REDIS_URL"
    assert env_name("port") == "PORT"
    assert env_name("genesys_env") == "GENESYS_ENV"
    assert env_name("desk_tokens") == "ASSIST_DESK_TOKENS"


def _as_text(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, list):
        return ",".join(_as_text(item) for item in value)
    return str(value)


@pytest.mark.usefixtures("clean_environment")
def test_example_file_validates_and_every_value_is_read() -> None:
    settings = Settings(_env_file=ENV_EXAMPLE)  # type: ignore[call-arg]
    example = dict(parse_env_file(ENV_EXAMPLE))
    for field_name in Settings.model_fields:
        written = example[env_name(field_name)]
        actual = getattr(settings, field_name)
        if written == "":
            # Empty values are ignored: the default applies.
            assert actual == Settings.model_fields[field_name].get_default(
                call_default_factory=True
            ), field_name
        elif isinstance(actual, int | float):
            assert actual == type(actual)(written), field_name
        elif isinstance(actual, dict):
            pairs = dict(item.split("=") for item in written.split(","))
            assert actual == {k: int(v) for k, v in pairs.items()}, field_name
        else:
            assert _as_text(actual) == written.rstrip("/"), field_name
    # The example is a working local setup: callbacks can be verified and desks authenticated.
    assert settings.callback_secrets and settings.desk_tokens


@pytest.mark.usefixtures("clean_environment")
def test_comma_lists_in_an_env_file_become_lists(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "ASSIST_DESK_TOKENS=desk-a, desk-b ,,desk-c\n"
        "ASSIST_CALLBACK_SECRETS=whsec_EIvYBSq82SpIf8kOR41fBTNqWxw58aSw,"
        "whsec_ODK2QtRS3piknpqJLyw7rIwbonwhHL6o\n",
        encoding="utf-8",
    )
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert [t.get_secret_value() for t in settings.desk_tokens] == ["desk-a", "desk-b", "desk-c"]
    assert [s.get_secret_value() for s in settings.callback_secrets] == [
        "whsec_EIvYBSq82SpIf8kOR41fBTNqWxw58aSw",
        "whsec_ODK2QtRS3piknpqJLyw7rIwbonwhHL6o",
    ]


@pytest.mark.usefixtures("clean_environment")
def test_comma_lists_in_the_environment_become_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSIST_DESK_TOKENS", "one,two")
    monkeypatch.setenv("ASSIST_CALLBACK_SHARED_SECRET_HEADER", "X-Callback-Token")
    monkeypatch.setenv("ASSIST_CALLBACK_SHARED_SECRETS", "s1, s2")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert [t.get_secret_value() for t in settings.desk_tokens] == ["one", "two"]
    assert [s.get_secret_value() for s in settings.callback_shared_secrets] == ["s1", "s2"]
