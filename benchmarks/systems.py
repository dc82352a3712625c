"""The processes under test: the project's `ProcessSystem` plus the bare baseline server.

`ProcessSystem` (tests/processes.py) is reused as it is, so the benchmarks run exactly what
the end-to-end tests run: redis-server with AOF and `appendfsync always`, the emulator,
gunicorn with `--config python:webapp.gunicorn_conf`, the RQ worker, all on 127.0.0.1.
The bare server is started next to it with the same gunicorn configuration, worker count and
environment, on its own loopback port.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import redis
from rq import Queue
from rq.registry import StartedJobRegistry

from assist.bootstrap import Services, build_services
from assist.settings import Settings
from benchmarks.environment import ROOT
from tests.processes import CALLBACK_SECRET, VENV_BIN, ProcessSystem
from tests.redis_server import free_port

# The defaults of `ASSIST_QUEUE_NAME` and `ASSIST_BACKGROUND_QUEUE_NAME` (ProcessSystem keeps them).
QUEUE_NAME = "assist"
BACKGROUND_QUEUE_NAME = "assist-background"
QUEUE_NAMES = (QUEUE_NAME, BACKGROUND_QUEUE_NAME)


class BareServer:
    """`benchmarks.bare_app:app` under gunicorn, configured like the system's web process."""

    def __init__(self, system: ProcessSystem, workdir: Path) -> None:
        self.system = system
        self.port = free_port()
        self.log_path = workdir / "logs" / "bare.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BareServer:
        env = {**self.system.env, "PORT": str(self.port)}
        args = [
            str(VENV_BIN / "gunicorn"),
            "--config", "python:webapp.gunicorn_conf",
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(self.system.web_workers),
            "--pythonpath", str(ROOT),
            "benchmarks.bare_app:app",
        ]  # fmt: skip
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                args, cwd=self.system.workdir, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"bare server exited: {self.log_path.read_text()[-2000:]}")
            try:
                # Any HTTP answer means it is serving (GET on a POST route answers 405).
                httpx.get(f"{self.url}/v1/callbacks/genesys", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("bare server not ready within 30 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None


def discard_redis_data(system: ProcessSystem) -> None:
    """Delete a stopped system's Redis append-only file (tens of MB per run)."""
    shutil.rmtree(system.workdir / "redis", ignore_errors=True)


def bench_services(system: ProcessSystem) -> Services:
    """The app's own services, built in this process against the system's Redis.

    Used only to write set-up data through the project's stores (and never to record
    events), so the keys are exactly those the web and worker processes read.
    """
    settings = Settings(
        _env_file=None,
        environment="test",
        redis_url=system.redis.url,
        callback_secrets=CALLBACK_SECRET,
        audit_log_path=str(system.workdir / "bench-setup-audit.jsonl"),
    )
    return build_services(settings)


def queue_state(raw: redis.Redis) -> dict[str, int]:
    """Jobs waiting, being handed to a worker (RQ's intermediate list), and running, summed
    over the live and the background queue."""
    with raw.pipeline(transaction=False) as pipe:
        for name in QUEUE_NAMES:
            queue = Queue(name, connection=raw)
            pipe.llen(queue.key)
            pipe.llen(queue.intermediate_queue_key)
            pipe.zcard(StartedJobRegistry(queue=queue).key)
        counts = [int(c) for c in pipe.execute()]
    return {
        "queued": counts[0] + counts[3],
        "handing_over": counts[1] + counts[4],
        "started": counts[2] + counts[5],
    }


def wait_queue_idle(
    raw: redis.Redis, timeout_s: float, *, quiet_s: float = 0.02, poll_s: float = 0.005
) -> bool:
    """Wait until no job is queued or running for `quiet_s`; False if `timeout_s` passed.

    Idle must hold over several polls: a job leaves the queue a moment before it appears in
    the started registry, and a job may enqueue another one just before it ends.
    """
    deadline = time.monotonic() + timeout_s
    idle_since: float | None = None
    while time.monotonic() < deadline:
        now = time.monotonic()
        if any(queue_state(raw).values()):
            idle_since = None
        elif idle_since is None:
            idle_since = now
        elif now - idle_since >= quiet_s:
            return True
        time.sleep(poll_s)
    return False


def process_pids(system: ProcessSystem, bare: BareServer | None = None) -> dict[str, int]:
    pids: dict[str, Any] = {name: p.pid for name, p in system.processes.items()}
    if system.redis.process is not None:
        pids["redis"] = system.redis.process.pid
    if bare is not None and bare.process is not None:
        pids["bare"] = bare.process.pid
    return {name: int(pid) for name, pid in pids.items()}
