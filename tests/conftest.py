"""Shared test helpers: the settings factory and constants every layer of tests uses."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from assist.settings import Settings

DESK_TOKEN = "desk-test-token"
CALLBACK_SECRET = "whsec_EIvYBSq82SpIf8kOR41fBTNqWxw58aSw"
ROTATED_SECRET = "whsec_ODK2QtRS3piknpqJLyw7rIwbonwhHL6o"
CLIENT_ID = "demo-client"
CLIENT_SECRET = "integration-client-secret"
AUTH = {"Authorization": f"Bearer {DESK_TOKEN}"}


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for tests: never read from `.env` or the machine's ASSIST_* variables."""
    values: dict[str, Any] = {
        "environment": "test",
        "log_format": "json",
        "desk_tokens": DESK_TOKEN,
        "callback_secrets": CALLBACK_SECRET,
        "genesys_client_id": CLIENT_ID,
        "genesys_client_secret": CLIENT_SECRET,
        "audit_log_path": str(tmp_path / "audit.jsonl"),
        # Tests read one audit file; a run across UTC midnight must not rotate it away.
        "audit_rotate": "never",
        "redis_url": "redis://127.0.0.1:1/0",
        "genesys_api_base_url": "http://127.0.0.1:1",
        "genesys_login_base_url": "http://127.0.0.1:1",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    return lambda **overrides: make_settings(tmp_path, **overrides)


def wait_for(
    predicate: Callable[[], Any],
    timeout_s: float = 10.0,
    interval_s: float = 0.05,
    what: str = "",
) -> Any:
    """Poll until `predicate()` is truthy and return its value; fail the test with a clear
    message (`what`, or the predicate) otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s}s: {what or predicate}")
        time.sleep(interval_s)
