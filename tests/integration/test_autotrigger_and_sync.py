"""Auto-trigger rules and the signed utterance webhook, against real Redis and the emulator."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks import Webhook
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from assist.core.transcripts import Speaker, Utterance
from assist.services import autotrigger, utterance_sync
from tests.conftest import ROTATED_SECRET, wait_for
from tests.integration.conftest import System


def utterance(
    conversation_id: str = "auto-1",
    n: int = 1,
    queue_id: str = "q-billing",
    speaker: Speaker = Speaker.CUSTOMER,
) -> Utterance:
    return Utterance(
        conversation_id=conversation_id,
        utterance_id=f"u-{n}",
        speaker=speaker,
        text="I was charged twice, I need a refund",
        is_final=True,
        confidence=0.9,
        received_at=datetime.now(UTC),
        queue_id=queue_id,
    )


def fill_window(system: System, conversation_id: str) -> None:
    key = system.services.redis.keys.conversation_transcript(conversation_id)
    system.services.redis.decoded.rpush(key, "customer: I was charged twice, I need a refund")


def test_queue_rule_triggers_once_per_debounce_window(
    system_factory: Callable[..., System],
) -> None:
    system = system_factory(
        autotrigger_queue_ids="q-billing",
        autotrigger_debounce_s=60,
        autotrigger_knowledge_source_ids="kb-billing",
    )
    fill_window(system, "auto-1")
    first = autotrigger.on_final_utterance(system.services, utterance(n=1))
    assert first is not None
    assert autotrigger.on_final_utterance(system.services, utterance(n=2)) is None  # debounced
    assert autotrigger.on_final_utterance(system.services, utterance(queue_id="q-other")) is None
    agent = utterance(conversation_id="auto-2", speaker=Speaker.AGENT)
    assert autotrigger.on_final_utterance(system.services, agent) is None
    system.run_jobs()
    view = wait_for(
        lambda: (
            (
                (v := system.client.get(f"/v1/suggestions/{first}").json())["status"] == "completed"
                and v
            )
            or system.run_jobs()
        )
    )
    assert view["suggestions"]
    query = system.emulator.get("/emulator/records").json()["queries"][0]["body"]
    assert query["transcript"] == "customer: I was charged twice, I need a refund"


def test_card_rule_and_no_transcript(system_factory: Callable[..., System]) -> None:
    system = system_factory(
        autotrigger_card_ids="billing-dispute",
        autotrigger_debounce_s=0,
        autotrigger_knowledge_source_ids="kb-billing",
    )
    # No live transcript yet: nothing to ask, and no error.
    assert autotrigger.on_cards_detected(system.services, "auto-3", ["billing-dispute"]) is None
    fill_window(system, "auto-3")
    assert autotrigger.on_cards_detected(system.services, "auto-3", ["lost-card"]) is None
    assert autotrigger.on_cards_detected(system.services, "auto-3", ["billing-dispute"])


class Receiver:
    """A loopback webhook receiver that fails the first `failures` deliveries."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/utterances"

    def app(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        self.received.append((dict(request.headers), request.get_data()))
        status = 503 if len(self.received) <= self.failures else 202
        return Response(status=status)(environ, start_response)


@pytest.fixture
def receiver_factory() -> Iterator[Callable[[int], Receiver]]:
    started: list[Receiver] = []

    def build(failures: int) -> Receiver:
        receiver = Receiver(failures)
        threading.Thread(target=receiver.server.serve_forever, daemon=True).start()
        started.append(receiver)
        return receiver

    yield build
    for receiver in started:
        receiver.server.shutdown()
        receiver.server.server_close()


def test_utterances_are_signed_retried_and_delivered(
    system_factory: Callable[..., System], receiver_factory: Callable[[int], Receiver]
) -> None:
    receiver = receiver_factory(1)
    system = system_factory(
        utterance_webhook_url=receiver.url,
        utterance_webhook_secret=ROTATED_SECRET,
        utterance_webhook_attempts=3,
    )
    utterance_sync.enqueue_sync(system.services, utterance())
    wait_for(
        lambda: len(receiver.received) >= 2 or system.run_due_jobs(), timeout_s=15, interval_s=0.2
    )
    (first_headers, body), (second_headers, body2) = receiver.received[:2]
    assert body == body2
    assert first_headers["Webhook-Id"] == second_headers["Webhook-Id"]  # stable across retries
    verified = Webhook(ROTATED_SECRET).verify(body, second_headers)
    assert verified["utterance"]["utterance_id"] == "u-1"
    assert verified["utterance"]["text"] == "I was charged twice, I need a refund"
    assert not system.services.redis.decoded.lrange(
        system.services.redis.keys.utterance_dead_letters(), 0, -1
    )


def test_utterances_that_never_get_through_are_dead_lettered(
    system_factory: Callable[..., System], receiver_factory: Callable[[int], Receiver]
) -> None:
    receiver = receiver_factory(99)
    system = system_factory(utterance_webhook_url=receiver.url, utterance_webhook_attempts=2)
    utterance_sync.enqueue_sync(system.services, utterance(n=7))
    key = system.services.redis.keys.utterance_dead_letters()
    letters = wait_for(
        lambda: system.services.redis.decoded.lrange(key, 0, -1) or system.run_due_jobs(),
        timeout_s=15,
        interval_s=0.2,
    )
    assert len(receiver.received) == 2
    entry = json.loads(letters[0])
    assert entry["utterance_id"] == "u-7" and "503" in entry["error"]
    assert system.services.background.queue.failed_job_registry.count == 1
