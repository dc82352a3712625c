"""Personal data through every path of the real system, then grep every output for it.

One module-scoped run drives the real processes (redis-server, emulator, gunicorn, RQ worker,
stream) with a configured extra pattern (`ACCOUNT=ACC-\\d{8}`) and logging at DEBUG:

- a trigger whose transcript is full of personal data, answered by the async-query provider
  and by Genesys Knowledge search (both requests land in the emulator's records), with ranked
  results POSTed to the results webhook;
- feedback from an agent whose id is an email address (audit line, analytics record);
- a scripted live call (`billing-dispute`: the customer reads out an account number digit by
  digit) through the stream process, each final utterance synced to a webhook, and then a
  trigger on the live transcript window;
- the analytics sink receiving every record event;
- log lines that carry what a caller sent: the request line of each API call (its path holds
  the values) and gunicorn's own warning about a malformed HTTP request line.

Then every output (each process log, the audit file, everything the emulator received, the
live window) is searched for every raw value, also with its digits re-separated any way; and
the placeholders must show up where each path leads, so a path that was not exercised fails
the test instead of passing it vacuously.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest

from tests.conftest import wait_for
from tests.processes import CALLBACK_SECRET, ProcessSystem

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SCRIPTS = Path(__file__).resolve().parents[2] / "emulator" / "data" / "conversations"
LIVE_SCRIPT = "billing-dispute"
LIVE_QUEUE_ID = json.loads((SCRIPTS / f"{LIVE_SCRIPT}.json").read_text())["queue_id"]
LIVE_CONVERSATION = "pii-live-1"

CARD = "4111 1111 1111 1111"  # Visa test card, Luhn-valid
CUSTOMER_EMAIL = "jane.doe@example.com"
AGENT_EMAIL = "agent.smith@example.org"
ACCOUNT = "ACC-58293746"
PHONE_INTERNATIONAL = "+44 20 7946 0958"
PHONE_US = "(415) 555-0132"
PHONE_GB = "020 7946 0958"
# What the customer of the scripted call says (emulator/data/conversations/billing-dispute.json).
SPOKEN_ACCOUNT = "4 4 7 1 9 2 3 0"

TRANSCRIPT = (
    f"customer: Hi, I'm {CUSTOMER_EMAIL} and I was charged twice on my bill, I want a refund.\n"
    f"agent: Sorry about that. Which card and account?\n"
    f"customer: The card is {CARD}, account {ACCOUNT}. Call me on {PHONE_INTERNATIONAL}, "
    f"{PHONE_US} or at home on {PHONE_GB}."
)
RAW_VALUES = [
    CARD,
    CUSTOMER_EMAIL,
    AGENT_EMAIL,
    ACCOUNT,
    PHONE_INTERNATIONAL,
    PHONE_US,
    PHONE_GB,
    SPOKEN_ACCOUNT,
]
PLACEHOLDERS = ["[CARD]", "[EMAIL]", "[PHONE]", "[ACCOUNT]"]

T = TypeVar("T")


def digit_pattern(value: str) -> re.Pattern[str]:
    """The value's digits with any (or no) separators between them: catches "4111111111111111",
    "+442079460958", "4-4-7-1-9-2-3-0" and JSON-escaped forms alike."""
    digits = re.sub(r"\D", "", value)
    return re.compile(r"(?<!\d)" + r"[^0-9A-Za-z]{0,3}".join(digits) + r"(?!\d)")


LEAK_PATTERNS = {value: digit_pattern(value) for value in RAW_VALUES if re.search(r"\d", value)}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessSystem]:
    running = ProcessSystem(
        tmp_path_factory.mktemp("pii"),
        stream=True,
        extra_env={
            "ASSIST_LOG_LEVEL": "DEBUG",
            "ASSIST_REDACTION_EXTRA_PATTERNS": r"ACCOUNT=ACC-\d{8}",
            "ASSIST_REDACTION_PHONE_REGIONS": "US,GB",
            "ASSIST_GENESYS_KNOWLEDGE_SOURCE_IDS": "kb-tech",
            "ASSIST_STREAM_QUEUE_IDS": LIVE_QUEUE_ID,
            "ASSIST_KEYWORD_BUFFER_MS": "0",
            "ASSIST_KEYWORD_COOLDOWN_S": "0",
            "ASSIST_UTTERANCE_WEBHOOK_SECRET": CALLBACK_SECRET,
            "ASSIST_UTTERANCE_WEBHOOK_ATTEMPTS": "1",
            "EMULATOR_HEARTBEAT_S": "5",
        },
    )
    # Outbound webhooks go to the emulator, whose port is known only now. It has no receiver
    # of utterances; its training receiver records any body it is sent, which is what counts.
    running.env["ASSIST_RESULTS_WEBHOOK_URL"] = f"{running.emulator_url}/results/suggestions"
    running.env["ASSIST_UTTERANCE_WEBHOOK_URL"] = f"{running.emulator_url}/training/insights"
    with running:
        yield running


def trigger_and_wait(system: ProcessSystem, **body: Any) -> dict[str, Any]:
    accepted = system.trigger(**body)
    assert accepted.status_code == 202, accepted.text
    view = system.wait_terminal(accepted.json()["request_id"], timeout_s=60)
    assert view["status"] == "completed", view
    return view


def play_live_call(system: ProcessSystem) -> list[str]:
    """The scripted call through the stream process; returns the live transcript window."""
    wait_for(
        lambda: any(
            call.get("status") == 200
            for call in system.records()["notifications"]["subscription_calls"]
        ),
        timeout_s=60,
        interval_s=0.2,
        what="the stream subscribed to the queue",
    )
    started = system.emulator.post(
        "/emulator/conversations",
        json={"script": LIVE_SCRIPT, "conversation_id": LIVE_CONVERSATION, "speed": 10},
    )
    assert started.status_code == 201, started.text
    redis = system.redis_client()
    key = f"assist:v1:conversation:{LIVE_CONVERSATION}:transcript"

    def window_with_the_account_line() -> list[str] | None:
        window: list[str] = redis.lrange(key, 0, -1)  # type: ignore[assignment]
        return window if any("the account is in the name" in line for line in window) else None

    try:
        return wait_for(
            window_with_the_account_line,
            timeout_s=60,
            interval_s=0.2,
            what="the account-number utterance in the window",
        )
    finally:
        redis.close()


def send_to_the_logs(system: ProcessSystem) -> None:
    """Values a caller sent, in lines our logging writes: our request line and gunicorn's."""
    for value in RAW_VALUES:
        # The canonical request line logs the (decoded) path.
        response = system.desk.get(f"/v1/suggestions/{quote(value, safe='')}")
        assert response.status_code in (400, 404), response.text
        # gunicorn (a foreign logger) quotes a malformed request line in a warning.
        with socket.create_connection(("127.0.0.1", system.web_port), timeout=5) as raw:
            raw.sendall(f"GET / HTTP/1.1 {value}\r\n\r\n".encode())
            assert raw.recv(64).startswith(b"HTTP/1.1 400")


@pytest.fixture(scope="module")
def outputs(system: ProcessSystem) -> dict[str, str]:
    """Drive every path, wait for every delivery, and return every output by name."""
    # 1. Trigger with a transcript: async-query provider and Genesys Knowledge search.
    view = trigger_and_wait(
        system,
        conversation_id="pii-trigger-1",
        transcript=TRANSCRIPT,
        agent_id="agent-7",
        agent_skills=["billing"],
        knowledge_source_ids=["kb-billing", "kb-tech"],
    )
    assert view["suggestions"], view
    # 2. Feedback from an agent whose id is an email address.
    for suggestion in view["suggestions"][:2]:
        feedback = system.desk.post(
            "/v1/feedback",
            json={
                "conversation_id": "pii-trigger-1",
                "suggestion_id": suggestion["id"],
                "agent_id": AGENT_EMAIL,
                "action": "accepted",
                "request_id": view["request_id"],
            },
        )
        assert feedback.status_code == 202, feedback.text
    # 3. A live call through the stream process, then a trigger on its transcript window.
    window = play_live_call(system)
    trigger_and_wait(
        system,
        conversation_id=LIVE_CONVERSATION,
        agent_id="agent-7",
        knowledge_source_ids=["kb-billing"],
    )

    # 4. Values sent by callers into lines the web process logs.
    send_to_the_logs(system)

    # 5. Wait for the asynchronous deliveries: analytics, results, utterance webhook.
    def records_when_delivered() -> dict[str, Any] | None:
        records = system.records()
        analytics_types = {event.get("type") for event in records["analytics_events"]}
        delivered = (
            {"feedback_recorded", "utterance_received"} <= analytics_types
            and len(records["results"]) >= 2
            and any("the account is in the name" in json.dumps(t) for t in records["training"])
        )
        return records if delivered else None

    records = wait_for(
        records_when_delivered,
        timeout_s=60,
        interval_s=0.2,
        what="analytics, results and utterance deliveries",
    )
    time.sleep(1)  # let the processes flush their last log lines
    found: dict[str, str] = {
        f"log {path.name}": path.read_text(errors="replace")
        for path in sorted(system.logs.glob("*.log"))
    }
    found["audit file"] = system.audit_path.read_text()
    found["live transcript window"] = "\n".join(window)
    for name, items in records.items():
        found[f"emulator {name}"] = json.dumps(items, ensure_ascii=False)
    return found


def test_every_path_was_exercised(outputs: dict[str, str]) -> None:
    assert {"log web.log", "log worker.log", "log stream.log", "log emulator.log"} <= set(outputs)
    # Transcripts reach the providers, redacted: the trigger's and the live window's.
    queries = outputs["emulator queries"]
    for placeholder in PLACEHOLDERS:
        assert placeholder in queries, f"{placeholder} not in the async queries"
    assert "charged twice on my bill" in queries and "Daniel Okafor" in queries
    # Genesys Knowledge search gets the query text, placeholders (configured ones too) removed.
    searches = outputs["emulator knowledge_searches"]
    assert "charged twice on my bill" in searches
    assert not [p for p in PLACEHOLDERS if p in searches]
    # The account number the caller read out is in the window and the webhook, redacted.
    assert "[PHONE], and the account is in the name" in outputs["live transcript window"]
    assert "[PHONE], and the account is in the name" in outputs["emulator training"]
    # The agent's email reaches the records, redacted.
    for name in ("audit file", "emulator analytics_events"):
        assert "[EMAIL]" in outputs[name], name
        assert "feedback_recorded" in outputs[name], name
    assert "[SECRET]" not in outputs["emulator results"]
    # What callers sent reaches the web log redacted, the configured pattern included.
    web_log = outputs["log web.log"]
    assert "Invalid request from ip=127.0.0.1: Invalid HTTP Version: 'HTTP/1.1 [CARD]'" in web_log
    for placeholder in PLACEHOLDERS:
        assert f'"path": "/v1/suggestions/{placeholder}"' in web_log, placeholder


@pytest.mark.parametrize("value", RAW_VALUES)
def test_no_raw_personal_data_in_any_output(outputs: dict[str, str], value: str) -> None:
    leaks = [name for name, text in outputs.items() if value in text]
    pattern = LEAK_PATTERNS.get(value)
    if pattern is not None:
        leaks += [f"{name} (digits)" for name, text in outputs.items() if pattern.search(text)]
    assert leaks == [], f"{value!r} found in {leaks}"


def test_the_raw_values_would_be_found(outputs: dict[str, str]) -> None:
    # The search itself works: each raw value is found in text that holds it, however spaced.
    for value in RAW_VALUES:
        assert value in f"x {value} y"
        pattern = LEAK_PATTERNS.get(value)
        if pattern is not None:
            digits = re.sub(r"\D", "", value)
            assert pattern.search(f'"n": "{digits}"') and pattern.search("-".join(digits))
    assert outputs
