"""The whole system as real processes on loopback, for end-to-end tests and benchmarks.

`ProcessSystem` starts redis-server (the shipped `config/redis.conf`: AOF, so restarts keep
acknowledged work), the emulator (`python -m emulator`), gunicorn serving `webapp.wsgi:app`
and an RQ worker (`python -m workers.rq_worker`), each on a free 127.0.0.1 port and
configured only through its environment, exactly as the Procfile would. Process output goes
to `<workdir>/logs/`. Each worker runs in a process group of its own with the RQ scheduler it
forks, so `kill_group` kills both as a dying container would, and stopping a worker never
leaves its scheduler behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.redis_server import RedisServer, free_port

DESK_TOKEN = "desk-e2e-token"
# Not the .env.example placeholder: production settings refuse that one.
CALLBACK_SECRET = "whsec_TirfarFFTptq3BY9aQSa9Vcshy8gkrQQ"
CLIENT_ID = "e2e-client"
CLIENT_SECRET = "e2e-secret"
VENV_BIN = Path(sys.executable).parent


class ProcessSystem:
    def __init__(
        self,
        workdir: Path,
        *,
        web_workers: int = 2,
        worker_class: str = "simple",
        callback_delay_ms: int = 50,
        delivery_retry_s: str = "0.2,0.5,1,2,4",
        extra_env: dict[str, str] | None = None,
        stream: bool = False,
    ) -> None:
        self.with_stream = stream
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(workdir / "redis")
        self.web_port = free_port()
        self.emulator_port = free_port()
        self.emulator_ws_port = free_port()
        self.web_workers = web_workers
        self.audit_path = workdir / "audit.jsonl"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("ASSIST_", "EMULATOR_"))},
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "REDIS_URL": self.redis.url,
            "PORT": str(self.web_port),
            "ASSIST_ENVIRONMENT": "production",
            "ASSIST_LOG_FORMAT": "json",
            "ASSIST_PUBLIC_BASE_URL": self.web_url,
            "ASSIST_DESK_TOKENS": DESK_TOKEN,
            "ASSIST_CALLBACK_SECRETS": CALLBACK_SECRET,
            "ASSIST_GENESYS_API_BASE_URL": self.emulator_url,
            "ASSIST_GENESYS_LOGIN_BASE_URL": self.emulator_url,
            "ASSIST_GENESYS_CLIENT_ID": CLIENT_ID,
            "ASSIST_GENESYS_CLIENT_SECRET": CLIENT_SECRET,
            "ASSIST_AUDIT_LOG_PATH": str(self.audit_path),
            "ASSIST_AUDIT_ROTATE": "never",
            "ASSIST_ANALYTICS_URL": f"{self.emulator_url}/analytics/events",
            "ASSIST_WORKER_CLASS": worker_class,
            "ASSIST_WORKER_MAINTENANCE_INTERVAL_S": "5",
            # The benchmarks drive one agent desk from one address far above the default
            # limits; these keep the limiter in the measured path without ever refusing.
            "ASSIST_RATE_LIMIT_AGENT": "100000/minute",
            "ASSIST_RATE_LIMIT_IP": "100000/minute",
            "EMULATOR_PORT": str(self.emulator_port),
            "EMULATOR_WS_PORT": str(self.emulator_ws_port),
            "EMULATOR_CLIENT_ID": CLIENT_ID,
            "EMULATOR_CLIENT_SECRET": CLIENT_SECRET,
            "EMULATOR_CALLBACK_SECRET": CALLBACK_SECRET,
            "EMULATOR_TRAINING_SECRET": CALLBACK_SECRET,
            "EMULATOR_CALLBACK_DELAY_MS": str(callback_delay_ms),
            "EMULATOR_DELIVERY_RETRY_S": delivery_retry_s,
            **(extra_env or {}),
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._groups: set[str] = set()
        self.desk = httpx.Client(
            base_url=self.web_url, headers={"Authorization": f"Bearer {DESK_TOKEN}"}, timeout=10
        )
        self.emulator = httpx.Client(base_url=self.emulator_url, timeout=10)

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"

    # --- lifecycle -----------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str], *, own_group: bool = False) -> None:
        """Start a process logging to `<logs>/<name>.log`; `own_group`: in a process group of
        its own (with its children), which `kill_group` and `stop_process` end as a whole."""
        log = (self.logs / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            args,
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0 if own_group else None,
        )
        if own_group:
            self._groups.add(name)
        log.close()

    def start_web(self) -> None:
        self._spawn(
            "web",
            [
                str(VENV_BIN / "gunicorn"),
                "--config", "python:webapp.gunicorn_conf",
                "--bind", f"127.0.0.1:{self.web_port}",
                "--workers", str(self.web_workers),
                "webapp.wsgi:app",
            ],
        )  # fmt: skip

    def start_worker(self, name: str = "worker") -> None:
        # Its own process group: the worker forks RQ's scheduler, which must go with it.
        self._spawn(name, [sys.executable, "-m", "workers.rq_worker"], own_group=True)

    def kill_group(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal a process and its children at once (a worker with its scheduler), as a
        container or dyno that dies takes every process in it; waits for the leader."""
        process = self.processes.pop(name)
        self._groups.discard(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        process.wait(timeout=20)

    def start(self) -> ProcessSystem:
        self.redis.start()
        self._spawn("emulator", [sys.executable, "-m", "emulator"])
        self.start_web()
        self.start_worker()
        if self.with_stream:
            self._spawn("stream", [sys.executable, "-m", "workers.stream"])
        self.wait_http(f"{self.emulator_url}/healthz")
        self.wait_http(f"{self.web_url}/readyz")
        return self

    def wait_http(self, url: str, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited: {self.log_tail(name)}")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{url} not ready within {timeout_s}s")

    def stop_process(self, name: str, sig: int = signal.SIGTERM) -> None:
        process = self.processes.pop(name, None)
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if name in self._groups:
            # Children it left behind (a SIGKILLed worker's scheduler) go too.
            self._groups.discard(name)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

    def stop(self) -> None:
        self.desk.close()
        self.emulator.close()
        for name in reversed(list(self.processes)):
            self.stop_process(name)
        self.redis.stop()

    def __enter__(self) -> ProcessSystem:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text().splitlines()[-lines:]) if path.exists() else ""

    # --- helpers -------------------------------------------------------------------------
    def trigger(self, **body: Any) -> httpx.Response:
        payload: dict[str, Any] = {
            "conversation_id": "e2e-conv-1",
            "knowledge_source_ids": ["kb-billing"],
        }
        payload.update(body)
        return self.desk.post("/v1/suggestions", json=payload)

    def wait_terminal(self, request_id: str, timeout_s: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            view: dict[str, Any] = self.desk.get(f"/v1/suggestions/{request_id}").json()
            if view.get("status") in ("completed", "failed", "expired"):
                return view
            if time.monotonic() > deadline:
                raise AssertionError(f"{request_id} still {view.get('status')} after {timeout_s}s")
            time.sleep(0.05)

    def redis_client(self) -> redis.Redis:
        """A client of the system's Redis (decoded replies); the caller closes it or not."""
        return redis.Redis.from_url(self.redis.url, decode_responses=True)

    def records(self) -> dict[str, Any]:
        records: dict[str, Any] = self.emulator.get("/emulator/records").json()
        return records

    def faults(self, **faults: Any) -> None:
        self.emulator.post("/emulator/faults", json=faults).raise_for_status()
