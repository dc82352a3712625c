"""Integration fixtures: real redis-server, the emulator and our app on loopback sockets.

- `redis_server` (session): a real redis-server on a free port, flushed around each test.
- `emulator` (session): the Genesys emulator over HTTP, reset around each test.
- `system`: our app served by a threaded werkzeug server on a free port (the emulator calls
  back to it for real), its `Services`, and `run_jobs()`, which drains the RQ queue with a
  burst `SimpleWorker` in this process.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from rq import SimpleWorker
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer
from werkzeug.serving import BaseWSGIServer, make_server

from assist.bootstrap import Services, build_services
from assist.settings import Settings
from emulator.config import EmulatorConfig
from emulator.server import EmulatorServer
from tests.conftest import (
    AUTH,
    CALLBACK_SECRET,
    CLIENT_ID,
    CLIENT_SECRET,
    make_settings,
    wait_for,
)
from tests.redis_server import RedisServer
from webapp import create_app
from workers import runtime


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _flush_redis(request: pytest.FixtureRequest) -> Iterator[None]:
    if "redis_server" not in request.fixturenames:
        yield
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    client = redis.Redis.from_url(server.url)
    client.flushall()
    yield
    if server.process is not None:
        client.flushall()
    client.close()


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorServer]:
    server = EmulatorServer(
        EmulatorConfig(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            callback_secret=CALLBACK_SECRET,
            callback_delay_ms=20,
            delivery_retry_s=(0.1, 0.2, 0.4),
        )
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def emulator_control(emulator: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.url, timeout=5) as client:
        client.post("/emulator/reset")
        yield client
        client.post("/emulator/reset")


class _LateBoundApp:
    """Lets the server bind its port before the app (whose settings need that port) exists."""

    app: Any = None

    def __call__(self, environ: Any, start_response: Any) -> Any:
        return self.app(environ, start_response)


@dataclass
class System:
    settings: Settings
    services: Services
    base_url: str
    client: httpx.Client
    emulator: httpx.Client

    def run_jobs(self) -> None:
        worker = SimpleWorker(
            self.settings.queues_to_work,
            connection=self.services.redis.raw,
            serializer=JSONSerializer,
        )
        worker.work(burst=True)

    def run_due_jobs(self) -> None:
        """Move scheduled jobs that are due (delayed retries, expiries) to the queue, then run."""
        scheduler = RQScheduler(
            self.settings.queues_to_work,
            connection=self.services.redis.raw,
            serializer=JSONSerializer,
        )
        scheduler.acquire_locks()
        try:
            scheduler.enqueue_scheduled_jobs()
        finally:
            scheduler.release_locks()
        self.run_jobs()

    def trigger(self, **body: Any) -> httpx.Response:
        payload = {"conversation_id": "conv-1", "knowledge_source_ids": ["kb-billing"]}
        payload.update(body)
        return self.client.post("/v1/suggestions", json=payload)

    def finished(self, request_id: str, timeout_s: float = 20) -> dict[str, Any]:
        """Run jobs until the request is completed, failed or expired; its API view."""

        def done() -> dict[str, Any] | None:
            self.run_jobs()
            view: dict[str, Any] = self.client.get(f"/v1/suggestions/{request_id}").json()
            return view if view["status"] in ("completed", "failed", "expired") else None

        result: dict[str, Any] = wait_for(done, timeout_s=timeout_s)
        return result

    def audit(self, event_type: str) -> list[dict[str, Any]]:
        """The audit log's records of one type, oldest first."""
        lines = Path(self.settings.audit_log_path).read_text().splitlines()
        return [r for r in map(json.loads, lines) if r["type"] == event_type]

    def records(self) -> dict[str, Any]:
        """What the emulator saw (`/emulator/records`)."""
        result: dict[str, Any] = self.emulator.get("/emulator/records").json()
        return result


@pytest.fixture
def system_factory(
    tmp_path: Path,
    redis_server: RedisServer,
    emulator: EmulatorServer,
    emulator_control: httpx.Client,
) -> Iterator[Callable[..., System]]:
    started: list[tuple[BaseWSGIServer, Services, httpx.Client]] = []

    def build(**overrides: Any) -> System:
        holder = _LateBoundApp()
        server = make_server("127.0.0.1", 0, holder, threaded=True)
        base_url = f"http://127.0.0.1:{server.server_port}"
        values: dict[str, Any] = {
            "redis_url": redis_server.url,
            "public_base_url": base_url,
            "genesys_api_base_url": emulator.url,
            "genesys_login_base_url": emulator.url,
            "analytics_url": f"{emulator.url}/analytics/events",
            "genesys_max_attempts": 4,
        }
        values.update(overrides)
        settings = make_settings(tmp_path, **values)
        services = build_services(settings)
        holder.app = create_app(settings, services)
        runtime.install(services)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        client = httpx.Client(base_url=base_url, headers=AUTH, timeout=10)
        started.append((server, services, client))
        return System(settings, services, base_url, client, emulator_control)

    yield build
    for server, services, client in started:
        client.close()
        server.shutdown()
        server.server_close()
        services.close()


@pytest.fixture
def system(system_factory: Callable[..., System]) -> System:
    return system_factory()
