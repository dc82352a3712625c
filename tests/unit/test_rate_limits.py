"""Rate-limit settings (checked at start), client addresses, and the 429 in the API contract.

The limits themselves run against real Redis in tests/integration/test_abuse.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from assist.settings import Settings, rate_limit_items
from webapp import create_app
from webapp.openapi import build_openapi
from webapp.services import EXTENSION_KEY
from webapp.throttle import client_address

SettingsFactory = Callable[..., Settings]


def test_the_defaults(settings_factory: SettingsFactory) -> None:
    settings = settings_factory()
    assert settings.rate_limit_agent == "60/minute"
    assert settings.rate_limit_ip == "3000/minute"
    assert settings.trusted_proxy_hops == 0
    assert [repr(i) for i in rate_limit_items(settings.rate_limit_agent)] == ["60 per 1 minute"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("60/minute", ["60 per 1 minute"]),
        ("3 per 2 seconds", ["3 per 2 second"]),
        ("10/second;500/hour", ["10 per 1 second", "500 per 1 hour"]),
        ("off", []),
        (" OFF ", []),
        ("", []),
    ],
)
def test_the_limits_notation_and_off(value: str, expected: list[str]) -> None:
    assert [repr(item) for item in rate_limit_items(value)] == expected


@pytest.mark.parametrize("value", ["sixty", "60", "60/fortnight", "0/minute", "60/minute;x"])
@pytest.mark.parametrize("field", ["rate_limit_agent", "rate_limit_ip"])
def test_a_bad_limit_stops_the_start_with_its_name(
    settings_factory: SettingsFactory, field: str, value: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        settings_factory(**{field: value})
    message = str(caught.value)
    assert f"ASSIST_{field.upper()}" in message
    assert "off" in message


def test_off_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSIST_RATE_LIMIT_IP", "off")
    monkeypatch.setenv("ASSIST_RATE_LIMIT_AGENT", "5 per 10 seconds")
    monkeypatch.setenv("ASSIST_TRUSTED_PROXY_HOPS", "1")
    settings = Settings(_env_file=None)
    assert rate_limit_items(settings.rate_limit_ip) == []
    assert [repr(i) for i in rate_limit_items(settings.rate_limit_agent)] == ["5 per 10 second"]
    assert settings.trusted_proxy_hops == 1


def test_proxy_hops_are_bounded(settings_factory: SettingsFactory) -> None:
    for hops in (-1, 11):
        with pytest.raises(ValidationError):
            settings_factory(trusted_proxy_hops=hops)


@pytest.mark.parametrize("value", ["mypurecloud.com; script-src *", "https://x.com", "local"])
def test_genesys_env_must_be_a_domain(settings_factory: SettingsFactory, value: str) -> None:
    # It ends up in the pages' frame-ancestors: nothing but a domain may get there.
    with pytest.raises(ValidationError):
        settings_factory(genesys_env=value)


@pytest.mark.parametrize(
    ("remote_addr", "counted_as"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        (None, "unknown"),
        ("", "unknown"),
    ],
)
def test_client_addresses(remote_addr: str | None, counted_as: str) -> None:
    assert client_address(remote_addr) == counted_as


def test_a_malformed_forwarded_address_is_counted_by_its_digest() -> None:
    counted = client_address("not-an-address, <script>")
    assert counted.startswith("invalid-")
    assert counted == client_address("not-an-address, <script>")
    assert "<" not in counted


def test_the_openapi_document_lists_429_with_retry_after() -> None:
    paths: dict[str, Any] = build_openapi()["paths"]
    for path in ("/v1/suggestions", "/v1/feedback"):
        responses = paths[path]["post"]["responses"]
        for status in ("429", "503"):
            assert responses[status]["headers"]["Retry-After"]["schema"]["type"] == "integer"
    assert "429" not in paths["/v1/callbacks/genesys"]["post"]["responses"]


def test_off_switches_the_limiter_off(settings_factory: SettingsFactory) -> None:
    app = create_app(settings_factory(rate_limit_agent="off", rate_limit_ip="off"))
    try:
        limits = app.extensions["assist.rate_limits"]
        assert not limits.enabled
    finally:
        app.extensions[EXTENSION_KEY].close()
