"""Shared by the fuzz suites: one running system for the process-level suites, and the
one-line summaries every suite reports (printed at the end of the run and appended to
`test-artifacts/fuzz.md`, which the closing note of a run quotes)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import CALLBACK_SECRET, ProcessSystem

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
#: Slow uploads are cut after this long (ASSIST_BODY_READ_TIMEOUT_S of the fuzzed system).
BODY_READ_TIMEOUT_S = 2.0
_LINES: list[str] = []


def report(line: str) -> None:
    """A summary line: shown at the end of the pytest run, appended to fuzz.md."""
    _LINES.append(line)
    ARTIFACTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with (ARTIFACTS / "fuzz.md").open("a", encoding="utf-8") as out:
        out.write(f"- {stamp} {line}\n")


def sign(raw: bytes, msg_id: str, timestamp: int, secret: str = CALLBACK_SECRET) -> str:
    """Standard Webhooks, computed here over the raw bytes: `v1,<base64 HMAC-SHA256 of
    "{id}.{timestamp}.{body}">` (the library can only sign text)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + raw, hashlib.sha256).digest()
    return f"v1,{base64.b64encode(mac).decode()}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _LINES:
        terminalreporter.section("fuzz")
        for line in _LINES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="package")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessSystem]:
    """redis-server, emulator, gunicorn (gevent workers) and an rq worker, for every
    process-level fuzz suite of this package."""
    extra_env = {
        "ASSIST_BODY_READ_TIMEOUT_S": str(BODY_READ_TIMEOUT_S),
        # Feeds the fuzzer opened and dropped notice it within a second, so the server
        # stops at once at the end instead of waiting for them.
        "ASSIST_FEED_KEEPALIVE_S": "1",
    }
    with ProcessSystem(tmp_path_factory.mktemp("fuzz"), extra_env=extra_env) as running:
        yield running
