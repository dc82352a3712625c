"""The live feed at scale, against a real gunicorn (gevent) web process on loopback.

- 1,000 feeds held open at once by ONE web worker process: every one receives a published
  ranking, normal requests are still answered meanwhile, and the worker's memory stays bounded.
- A feed client that never reads is dropped by the server (send timeout) instead of making it
  buffer an ever-growing backlog.

Loops are bounded in count and time; everything binds 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

from assist.stores.keys import Keys
from tests.processes import DESK_TOKEN, ProcessSystem

pytestmark = pytest.mark.e2e

FEEDS = 1000
CONNECT_DEADLINE_S = 60
DELIVERY_DEADLINE_S = 60


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessSystem]:
    running = ProcessSystem(
        tmp_path_factory.mktemp("feed-load"),
        web_workers=1,
        extra_env={"ASSIST_FEED_KEEPALIVE_S": "5", "ASSIST_FEED_SEND_TIMEOUT_S": "2"},
    )
    with running:
        yield running


def web_worker(system: ProcessSystem) -> psutil.Process:
    master = psutil.Process(system.processes["web"].pid)
    children = master.children()
    assert len(children) == 1
    return children[0]


async def open_feed(
    port: int, conversation_id: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /v1/conversations/{conversation_id}/events?access_token={DESK_TOKEN} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    # Connected once the stream's first bytes ("retry: ...") have arrived.
    while b"retry:" not in await reader.readline():
        pass
    return reader, writer


async def wait_for_event(reader: asyncio.StreamReader) -> str:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("feed closed before the event arrived")
        if line.startswith(b"data: "):
            return str(json.loads(line[6:])["request_id"])


def test_one_web_process_holds_1000_feeds_and_all_receive_a_ranking(
    system: ProcessSystem,
) -> None:
    worker = web_worker(system)
    rss_before = worker.memory_info().rss

    async def scenario() -> tuple[list[str], list[float], int, int]:
        semaphore = asyncio.Semaphore(200)  # connect in waves, not one SYN flood

        async def connect(n: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            async with semaphore:
                return await open_feed(system.web_port, "load-conv")

        feeds = await asyncio.wait_for(
            asyncio.gather(*(connect(n) for n in range(FEEDS))), CONNECT_DEADLINE_S
        )
        try:
            rss_open = worker.memory_info().rss
            redis_clients = int(system.redis_client().info("clients")["connected_clients"])
            # Normal requests are not starved while 1,000 feeds are held.
            async with httpx.AsyncClient(base_url=system.web_url, timeout=5) as client:
                health = []
                for _ in range(20):
                    started = time.perf_counter()
                    assert (await client.get("/healthz")).status_code == 200
                    health.append(time.perf_counter() - started)
                accepted = await client.post(
                    "/v1/suggestions",
                    headers={"Authorization": f"Bearer {DESK_TOKEN}"},
                    json={
                        "conversation_id": "load-conv",
                        "transcript": "refund double charge",
                        "knowledge_source_ids": ["kb-billing"],
                    },
                )
                assert accepted.status_code == 202
            received = await asyncio.wait_for(
                asyncio.gather(*(wait_for_event(reader) for reader, _ in feeds)),
                DELIVERY_DEADLINE_S,
            )
            return received, health, rss_open, redis_clients
        finally:
            for _, writer in feeds:
                writer.close()

    received, health, rss_open, redis_clients = asyncio.run(scenario())
    request_id = received[0]
    assert len(received) == FEEDS
    assert set(received) == {request_id}
    growth_mib = (rss_open - rss_before) / 2**20
    per_feed_kib = (rss_open - rss_before) / FEEDS / 1024
    print(
        f"\n[feed-load] {FEEDS} feeds on one gevent worker: RSS {rss_before / 2**20:.1f} MiB -> "
        f"{rss_open / 2**20:.1f} MiB (+{growth_mib:.1f} MiB, {per_feed_kib:.0f} KiB per feed); "
        f"redis clients {redis_clients}; /healthz p50 "
        f"{sorted(health)[len(health) // 2] * 1000:.1f} ms, max {max(health) * 1000:.1f} ms"
    )
    # Bounded: a feed is a greenlet, a socket and a Redis connection, not a thread.
    assert per_feed_kib < 256


def test_a_client_that_never_reads_is_dropped(system: ProcessSystem) -> None:
    worker = web_worker(system)
    stalled = socket.create_connection(("127.0.0.1", system.web_port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(
        f"GET /v1/conversations/stalled-conv/events?access_token={DESK_TOKEN} HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\n\r\n".encode()
    )
    try:
        time.sleep(0.5)
        rss_before = worker.memory_info().rss
        # Far more than the socket buffers can hold (loopback autotunes them to a few MiB).
        feed = system.redis_client()
        key = Keys("assist:v1").conversation_feed("stalled-conv")
        padding = "x" * 16_000
        for n in range(1000):
            feed.xadd(key, {"event": json.dumps({"type": "suggestions", "n": n, "pad": padding})})

        def closed_by_server() -> bool:
            return any(
                '"feed.closed"' in line and "stalled-conv" in line and "client_gone" in line
                for line in system.log_tail("web", 400).splitlines()
            )

        deadline = time.monotonic() + 30
        while not closed_by_server():
            assert time.monotonic() < deadline, "the server kept the stalled feed open"
            time.sleep(0.2)
        # The server did not buffer the 16 MB backlog for the stalled client.
        assert worker.memory_info().rss - rss_before < 8 * 2**20
    finally:
        stalled.close()
