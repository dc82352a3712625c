"""Fault: redis-server stopped and restarted during a load of triggers (SIGTERM, then SIGKILL).

A load thread posts triggers continuously; twice Redis goes away for a few seconds and comes
back on the same port and data directory, once stopped cleanly (SIGTERM) and once killed
(SIGKILL), running the shipped configuration (`config/redis.conf`: AOF with
`appendfsync always`, `maxmemory-policy noeviction`).

While Redis is down the web tier must answer 503 with `Retry-After` (no other error, and no
2xx for anything it could not store); the emulator's callbacks refused meanwhile are
redelivered by the sender. Every trigger acknowledged with a 202, before, during or after an
outage, must end `completed`, ranked exactly once. The worker (whose loop restarts after a
Redis error) and the stream process must survive both outages.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import wait_for
from tests.faults.figures import FaultFigures
from tests.faults.support import (
    KEYS,
    audit_records,
    feed_lengths,
    per_request,
    request_statuses,
)
from tests.processes import ProcessSystem
from tests.redis_server import RedisServer

LOAD_S = 17.0
SENDERS = 4
PAUSE_S = 0.15
DOWN_S = 3.0
#: When each outage starts (s into the load) and how Redis is stopped.
OUTAGES = ((4.0, signal.SIGTERM), (11.0, signal.SIGKILL))


@dataclass
class Sent:
    sent_at: float
    done_at: float
    status: int | None
    request_id: str | None = None
    conversation_id: str = ""
    retry_after: str | None = None
    error: str | None = None


@dataclass
class Outage:
    how: str
    stopped_at: float
    restarted_at: float = 0.0
    up_at: float = 0.0


@pytest.mark.timeout(30)
def test_the_shipped_redis_configuration_persists_and_never_evicts(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    client = redis.Redis(port=server.port, decode_responses=True)
    try:
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
    finally:
        client.close()
        server.stop()


@pytest.fixture
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessSystem]:
    running = ProcessSystem(
        tmp_path_factory.mktemp("fault-redis-restart"),
        stream=True,
        # The emulator redelivers callbacks the web tier refused for up to ~30 s.
        delivery_retry_s="0.5,1,2,4,8,16",
        extra_env={
            "ASSIST_STREAM_QUEUE_IDS": "3b8f1c2a-6d4e-4f7a-9b1c-2e5d8a7f0b11",
            "ASSIST_WORKER_HEARTBEAT_S": "1",
            "ASSIST_WORKER_ABANDONED_AFTER_S": "3",
            "ASSIST_WORKER_MAINTENANCE_INTERVAL_S": "5",
            "ASSIST_REQUEST_EXPIRY_S": "600",
        },
    )
    with running:
        yield running


def stop_redis(system: ProcessSystem, sig: int) -> None:
    process = system.redis.process
    assert process is not None
    process.send_signal(sig)
    process.wait(timeout=20)
    system.redis.process = None


@pytest.mark.e2e
@pytest.mark.timeout(150)
def test_redis_restarts_under_load_lose_nothing_acknowledged(system: ProcessSystem) -> None:
    sent: list[Sent] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + LOAD_S
    counter = iter(range(1_000_000))

    def sender(client: httpx.Client) -> None:
        while time.monotonic() < stop_at:
            with lock:
                conversation_id = f"fault-redis-{next(counter)}"
            began = time.monotonic()
            try:
                response = client.post(
                    "/v1/suggestions",
                    json={
                        "conversation_id": conversation_id,
                        "transcript": "refund a double charge",
                        "knowledge_source_ids": ["kb-billing"],
                    },
                )
                outcome = Sent(
                    began,
                    time.monotonic(),
                    response.status_code,
                    response.json().get("request_id") if response.status_code == 202 else None,
                    conversation_id,
                    response.headers.get("Retry-After"),
                )
            except httpx.HTTPError as exc:
                outcome = Sent(began, time.monotonic(), None, error=repr(exc))
            with lock:
                sent.append(outcome)
            time.sleep(PAUSE_S)

    clients = [
        httpx.Client(base_url=system.web_url, headers=system.desk.headers, timeout=15)
        for _ in range(SENDERS)
    ]
    threads = [threading.Thread(target=sender, args=(c,), daemon=True) for c in clients]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    outages: list[Outage] = []
    for at, sig in OUTAGES:
        time.sleep(max(0.0, started + at - time.monotonic()))
        outage = Outage(signal.Signals(sig).name, time.monotonic())
        stop_redis(system, sig)
        time.sleep(DOWN_S)
        outage.restarted_at = time.monotonic()
        system.redis.start()
        outage.up_at = time.monotonic()
        outages.append(outage)
    for thread in threads:
        thread.join(timeout=60)
    for client in clients:
        client.close()

    acknowledged = {s.request_id: s.conversation_id for s in sent if s.status == 202}
    assert all(acknowledged), "a 202 without a request id"
    ids = [r for r in acknowledged if r is not None]
    store = system.redis_client()

    def backlog_done() -> bool:
        statuses = request_statuses(store, ids)
        return all(status == "completed" for status in statuses.values())

    wait_for(backlog_done, timeout_s=60, interval_s=0.2, what="every acknowledged ranked")
    backlog_s = time.monotonic() - outages[-1].restarted_at
    time.sleep(1)  # a duplicate ranking, if any, would be written by now
    final = request_statuses(store, ids)
    ranked = per_request(audit_records(system, "suggestions_ranked"))
    feeds = feed_lengths(store, [acknowledged[r] for r in ids])
    stream_updated = float(store.hget(KEYS.stream_status(), "updated_at") or 0)
    store.close()

    # While Redis was down: 503 + Retry-After, nothing else; never a transport error.
    errors = [s for s in sent if s.error is not None]
    unexpected = [s for s in sent if s.status not in (202, 503)]
    refused = [s for s in sent if s.status == 503]
    missing_retry_after = [s for s in refused if not (s.retry_after or "").isdigit()]
    during = [
        s
        for s in sent
        for o in outages
        if o.stopped_at + 0.5 <= s.sent_at and s.done_at <= o.restarted_at
    ]
    web_back = [
        min(
            (s.done_at for s in sent if s.status == 202 and s.sent_at >= o.restarted_at),
            default=float("inf"),
        )
        - o.restarted_at
        for o in outages
    ]
    processed = [r for r in ids if final[r] == "completed" and ranked[r] >= 1]
    duplicated = [r for r in ids if ranked[r] > 1 or feeds[acknowledged[r]] > 1]
    callbacks = system.records()["callbacks"]
    refused_callbacks = [
        c for c in callbacks if not 200 <= (c["response_status"] or 0) < 300 and not c["gave_up"]
    ]
    given_up = [c for c in callbacks if c["gave_up"]]
    FaultFigures(
        scenario="redis-server restarted under load (SIGTERM, then SIGKILL; 3 s down each)",
        sent=len(sent),
        acknowledged=len(ids),
        processed=len(processed),
        lost=len(ids) - len(processed),
        duplicated=len(duplicated),
        recovery_s=max(web_back),
        notes=(
            f"{len(refused)} answered 503 + Retry-After ({len(during)} sent while down, all "
            f"503: {all(s.status == 503 for s in during)}); other statuses {len(unexpected)}, "
            f"transport errors {len(errors)}; web 2xx again "
            f"{', '.join(f'{w:.1f}' for w in web_back)} s after each restart; backlog ranked "
            f"{backlog_s:.1f} s after the last restart; callback deliveries refused then "
            f"retried by the emulator: {len(refused_callbacks)}"
        ),
    ).check()
    assert not errors, errors[:3]
    assert not unexpected, [(s.status, s.sent_at) for s in unexpected[:5]]
    assert not missing_retry_after
    assert not given_up, given_up[:3]
    assert during and all(s.status == 503 for s in during)
    assert max(web_back) < 10
    # The worker and the stream process lived through both outages and work again.
    for name in ("worker", "stream", "web"):
        assert system.processes[name].poll() is None, f"{name} died: {system.log_tail(name)}"
    assert stream_updated > time.time() - 5, "the stream process stopped writing its status"
    after = system.trigger(conversation_id="fault-redis-after", transcript="refund please")
    assert after.status_code == 202
    assert system.wait_terminal(after.json()["request_id"])["status"] == "completed"
