"""The live-feed load process: holds N Server-Sent Events feeds open and timestamps every event.

Run as its own process (`python -m benchmarks.sse_client ...`), never inside the server or the
benchmark that publishes, so its CPU is its own and shows in its own figures. One thread, one
epoll loop, non-blocking sockets, no asyncio: per event it does a `recv`, one
`time.monotonic()` reading and a couple of byte searches; the JSON of each event is parsed only
when the records are dumped, after the measurement.

Feeds are `GET /v1/conversations/<prefix><i>/events?access_token=...` (EventSource cannot send
headers; the desk token goes in the query string), one per conversation, i in [0, count). A feed
counts as open once its first SSE bytes (`retry: ...`) have arrived, which the server sends at
once. Connects go in waves of `--connect-concurrency`, not as one SYN flood.

Control: JSON lines on stdin, one JSON answer per command on stdout.

- `{"cmd": "stats"}`: open/closed feeds, events received, this process's CPU seconds.
- `{"cmd": "wait", "events": E, "timeout_s": T}`: until E events in all have arrived (or T).
- `{"cmd": "dump", "path": P}`: write the events received since the last dump to P as JSON
  lines `[monotonic_s, feed_index, data]`, `data` being the event's `data:` line.
- `{"cmd": "quit"}`: close every feed and exit.

`time.monotonic()` is CLOCK_MONOTONIC, one clock for every process on the machine, so the
publisher's send time and this process's receive time can be subtracted.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import queue
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Feed:
    index: int
    sock: socket.socket
    state: str = "connecting"  # connecting -> sent -> open -> closed
    buffer: bytes = b""
    failed: str | None = None


@dataclass
class Client:
    port: int
    token: str
    prefix: str
    count: int
    connect_concurrency: int
    selector: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)
    feeds: list[Feed] = field(default_factory=list)
    records: list[tuple[float, int, bytes]] = field(default_factory=list)
    events: int = 0
    opened: int = 0
    closed: int = 0
    failed: int = 0
    next_index: int = 0
    connecting: int = 0
    _stdin: str = ""

    def cpu_s(self) -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def stats(self) -> dict[str, object]:
        return {
            "open": self.opened - self.closed,
            "opened": self.opened,
            "closed": self.closed,
            "failed": self.failed,
            "events": self.events,
            "cpu_s": round(self.cpu_s(), 4),
            "t": time.monotonic(),
        }

    # --- connecting --------------------------------------------------------------------------
    def _start_connects(self) -> None:
        while self.next_index < self.count and self.connecting < self.connect_concurrency:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            feed = Feed(self.next_index, sock)
            self.next_index += 1
            self.connecting += 1
            code = sock.connect_ex(("127.0.0.1", self.port))
            if code not in (0, errno.EINPROGRESS):
                self._fail(feed, f"connect: {os.strerror(code)}")
                continue
            self.feeds.append(feed)
            self.selector.register(sock, selectors.EVENT_WRITE, feed)

    def _fail(self, feed: Feed, reason: str) -> None:
        feed.failed = reason
        feed.state = "closed"
        self.failed += 1
        self.connecting -= 1
        if feed.sock.fileno() >= 0:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(feed.sock)
            feed.sock.close()

    def _send_request(self, feed: Feed) -> None:
        code = feed.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._fail(feed, f"connect: {os.strerror(code)}")
            return
        request = (
            f"GET /v1/conversations/{self.prefix}{feed.index}/events?access_token={self.token} "
            f"HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        feed.sock.setblocking(True)
        feed.sock.sendall(request)  # a few hundred bytes into an empty socket buffer
        feed.sock.setblocking(False)
        feed.state = "sent"
        self.selector.modify(feed.sock, selectors.EVENT_READ, feed)

    # --- reading -----------------------------------------------------------------------------
    def _read(self, feed: Feed) -> None:
        try:
            data = feed.sock.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            data = b""
            feed.failed = str(exc)
        received = time.monotonic()
        if not data:
            if feed.state == "sent":
                self._fail(feed, feed.failed or "closed before the feed opened")
                return
            feed.state = "closed"
            self.closed += 1
            self.selector.unregister(feed.sock)
            feed.sock.close()
            return
        buffer = feed.buffer + data
        while (end := buffer.find(b"\n\n")) >= 0:
            segment = buffer[:end]
            buffer = buffer[end + 2 :]
            if feed.state == "sent":
                # The response head and the stream's first bytes ("retry: ...").
                if b" 200 " not in segment.split(b"\r\n", 1)[0]:
                    self._fail(feed, segment.split(b"\r\n", 1)[0].decode(errors="replace"))
                    return
                if b"retry:" in segment:
                    feed.state = "open"
                    self.opened += 1
                    self.connecting -= 1
                continue
            start = segment.find(b"data: ")
            if start >= 0:
                stop = segment.find(b"\n", start)
                self.records.append(
                    (received, feed.index, segment[start + 6 : stop if stop >= 0 else None])
                )
                self.events += 1
        feed.buffer = buffer

    def poll(self, timeout_s: float) -> list[str]:
        """One turn of the loop; returns the control lines read from stdin."""
        self._start_connects()
        lines: list[str] = []
        for key, mask in self.selector.select(timeout_s):
            if key.data is None:
                chunk = os.read(sys.stdin.fileno(), 65536).decode()
                if not chunk:
                    lines.append('{"cmd": "quit"}')
                else:
                    self._stdin += chunk
                    *complete, self._stdin = self._stdin.split("\n")
                    lines += [line for line in complete if line.strip()]
                continue
            feed: Feed = key.data
            if mask & selectors.EVENT_WRITE and feed.state == "connecting":
                self._send_request(feed)
            elif mask & selectors.EVENT_READ:
                self._read(feed)
        return lines

    def dump(self, path: str) -> int:
        records, self.records = self.records, []
        with open(path, "w") as handle:
            for received, index, data in records:
                handle.write(json.dumps([received, index, data.decode()]) + "\n")
        return len(records)

    def close(self) -> None:
        for feed in self.feeds:
            if feed.state != "closed":
                feed.sock.close()


def answer(payload: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sse_client")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--prefix", required=True, help="conversation id prefix")
    parser.add_argument("--count", type=int, required=True, help="feeds, one per conversation")
    parser.add_argument("--connect-concurrency", type=int, default=200)
    parser.add_argument("--connect-timeout-s", type=float, default=60.0)
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.count + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.count + 1024), hard))
    client = Client(args.port, args.token, args.prefix, args.count, args.connect_concurrency)
    client.selector.register(sys.stdin.fileno(), selectors.EVENT_READ, None)
    began = time.monotonic()
    pending: list[str] = []
    while client.opened + client.failed < args.count:
        if time.monotonic() - began > args.connect_timeout_s:
            break
        pending += client.poll(0.05)
    answer(
        {"ready": client.opened, "connect_s": round(time.monotonic() - began, 3)} | client.stats()
    )
    wait_until: tuple[int, float] | None = None
    while True:
        if wait_until is not None:
            target, deadline = wait_until
            if client.events >= target or time.monotonic() >= deadline:
                answer({"reached": client.events >= target} | client.stats())
                wait_until = None
        if pending:
            line, pending = pending[0], pending[1:]
            command = json.loads(line)
            cmd = command.get("cmd")
            if cmd == "stats":
                answer(client.stats())
            elif cmd == "wait":
                wait_until = (
                    int(command["events"]),
                    time.monotonic() + float(command["timeout_s"]),
                )
            elif cmd == "dump":
                answer({"dumped": client.dump(str(command["path"]))} | client.stats())
            elif cmd == "quit":
                client.close()
                answer({"quit": True} | client.stats())
                return 0
            continue
        pending += client.poll(0.05 if wait_until is None else 0.01)


# --- the benchmark side: start and drive the load process ------------------------------------


class FeedLoad:
    """Drives one `benchmarks.sse_client` process from a benchmark (the publisher's side)."""

    def __init__(
        self,
        *,
        port: int,
        token: str,
        prefix: str,
        count: int,
        log_path: Path,
        connect_timeout_s: float = 60.0,
    ) -> None:
        self.args = [
            sys.executable, "-m", "benchmarks.sse_client",
            "--port", str(port), "--token", token, "--prefix", prefix, "--count", str(count),
            "--connect-timeout-s", str(connect_timeout_s),
        ]  # fmt: skip
        self.count = count
        self.log_path = log_path
        self.connect_timeout_s = connect_timeout_s
        self.process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str] = queue.Queue()

    def start(self) -> dict[str, Any]:
        """Spawn the process and wait (bounded) until its feeds are open; its ready line."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        root = str(Path(__file__).resolve().parent.parent)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
        }
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                self.args, cwd=root, env=env, text=True, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=log,
            )  # fmt: skip
        threading.Thread(target=self._reader, daemon=True).start()
        return self._next(self.connect_timeout_s + 30)

    def _reader(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put("")

    def _next(self, timeout_s: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            raise TimeoutError(f"the feed load process did not answer in {timeout_s} s") from None
        if not line:
            raise RuntimeError(f"the feed load process exited: {self.log_path.read_text()[-2000:]}")
        answer_: dict[str, Any] = json.loads(line)
        return answer_

    def command(self, payload: dict[str, Any], timeout_s: float = 30.0) -> dict[str, Any]:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(json.dumps(payload) + "\n")
        self.process.stdin.flush()
        return self._next(timeout_s)

    def stats(self) -> dict[str, Any]:
        return self.command({"cmd": "stats"})

    def wait(self, events: int, timeout_s: float) -> dict[str, Any]:
        """Until `events` events in all have arrived, or `timeout_s`."""
        return self.command(
            {"cmd": "wait", "events": events, "timeout_s": timeout_s}, timeout_s + 30
        )

    def dump(self, path: Path) -> list[tuple[float, int, dict[str, Any]]]:
        """The events received since the last dump: (monotonic receive time, feed, event)."""
        self.command({"cmd": "dump", "path": str(path)}, timeout_s=120)
        records = []
        with path.open() as handle:
            for line in handle:
                received, index, data = json.loads(line)
                records.append((float(received), int(index), json.loads(data)))
        return records

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(Exception):
                self.command({"cmd": "quit"}, timeout_s=10)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None


if __name__ == "__main__":
    sys.exit(main())
