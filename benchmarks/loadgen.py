"""A small closed-loop HTTP load generator: N threads, one keep-alive connection each.

Every request is prepared (and signed) before the clock starts, so the generator's own work
during the run is the bare minimum: write bytes, read the answer, take two `perf_counter`
readings. It uses the standard library's `http.client` rather than httpx because it costs
several times less CPU per request, CPU that would otherwise be taken from the servers under
test on a two-core machine.

A run stops by itself: after its requests are used up or when its wall-time cap is reached,
whichever comes first (unsent requests are then counted, never silently dropped).
"""

from __future__ import annotations

import http.client
import math
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PreparedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Sample:
    index: int
    started: float  # perf_counter
    latency_s: float
    status: int  # 0 when the request failed without an HTTP answer
    body: bytes = b""
    error: str | None = None
    #: Open-loop runs: how long after it was due the request actually left (seconds).
    late_s: float = 0.0


@dataclass
class PhaseResult:
    samples: list[Sample]
    wall_s: float
    planned: int
    timed_out: bool
    errors: list[str] = field(default_factory=list)
    #: Connections the server closed (and the generator reopened) during the phase.
    reconnects: int = 0

    @property
    def completed(self) -> int:
        return len(self.samples)

    @property
    def unsent(self) -> int:
        return self.planned - self.completed


def _connect(host: str, port: int, timeout_s: float) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(host, port, timeout=timeout_s)


class LoadGenerator:
    """`concurrency` threads against one `host:port`; connections persist across phases."""

    def __init__(
        self, host: str, port: int, *, concurrency: int, request_timeout_s: float = 30.0
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.host = host
        self.port = port
        self.concurrency = concurrency
        self.request_timeout_s = request_timeout_s
        self._connections = [_connect(host, port, request_timeout_s) for _ in range(concurrency)]

    def close(self) -> None:
        for connection in self._connections:
            connection.close()

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(
        self,
        requests: Sequence[PreparedRequest],
        *,
        max_wall_s: float,
        keep_body: bool = True,
        rate_per_s: float | None = None,
    ) -> PhaseResult:
        """Send every request once, `concurrency` at a time, within `max_wall_s` seconds.

        `rate_per_s` (open loop): request i is due `i / rate_per_s` after the start, whatever
        the answers before it took, and its latency counts from when it was due, so time spent
        waiting for a free connection is counted too (no coordinated omission). `concurrency`
        must then exceed rate x latency, or requests fall behind their schedule (which the
        latencies show)."""
        lock = threading.Lock()
        next_index = 0
        samples_by_thread: list[list[Sample]] = [[] for _ in range(self.concurrency)]
        errors: list[str] = []
        reconnects = [0] * self.concurrency
        barrier = threading.Barrier(self.concurrency + 1)
        deadline = 0.0  # set once every thread is ready
        origin = 0.0

        def take() -> int | None:
            nonlocal next_index
            with lock:
                if next_index >= len(requests) or time.perf_counter() >= deadline:
                    return None
                index = next_index
                next_index += 1
                return index

        def worker(slot: int) -> None:
            out = samples_by_thread[slot]
            barrier.wait()
            while (index := take()) is not None:
                prepared = requests[index]
                connection = self._connections[slot]
                started = time.perf_counter()
                late = 0.0
                if rate_per_s is not None:
                    due = origin + index / rate_per_s
                    if due > started:
                        time.sleep(due - started)
                    late = max(time.perf_counter() - due, 0.0)
                    started = due
                try:
                    connection.request(
                        prepared.method, prepared.path, prepared.body, prepared.headers
                    )
                    response = connection.getresponse()
                    body = response.read()
                    elapsed = time.perf_counter() - started
                    out.append(
                        Sample(
                            index,
                            started,
                            elapsed,
                            response.status,
                            body if keep_body else b"",
                            late_s=late,
                        )
                    )
                    if response.will_close:
                        connection.close()
                        reconnects[slot] += 1
                except (OSError, http.client.HTTPException) as exc:
                    elapsed = time.perf_counter() - started
                    text = f"{type(exc).__name__}: {exc}"
                    out.append(Sample(index, started, elapsed, 0, error=text, late_s=late))
                    with lock:
                        errors.append(text)
                    connection.close()
                    self._connections[slot] = _connect(self.host, self.port, self.request_timeout_s)

        threads = [
            threading.Thread(target=worker, args=(slot,), name=f"loadgen-{slot}", daemon=True)
            for slot in range(self.concurrency)
        ]
        for thread in threads:
            thread.start()
        began = time.perf_counter()
        deadline = began + max_wall_s
        origin = began
        barrier.wait()
        # A request in flight at the deadline still has its own socket timeout to finish in.
        for thread in threads:
            thread.join(max_wall_s + self.request_timeout_s + 5)
        wall = time.perf_counter() - began
        samples = sorted((s for per in samples_by_thread for s in per), key=lambda s: s.index)
        return PhaseResult(
            samples=samples,
            wall_s=wall,
            planned=len(requests),
            timed_out=len(samples) < len(requests),
            errors=errors,
            reconnects=sum(reconnects),
        )


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def summarize_ms(values_s: Sequence[float]) -> dict[str, Any]:
    """count, mean, p50, p90, p95, p99, max (milliseconds) of durations given in seconds."""
    ms = sorted(v * 1000 for v in values_s)
    if not ms:
        return {"count": 0}
    return {
        "count": len(ms),
        "mean": round(statistics.fmean(ms), 3),
        "p50": round(percentile(ms, 50), 3),
        "p90": round(percentile(ms, 90), 3),
        "p95": round(percentile(ms, 95), 3),
        "p99": round(percentile(ms, 99), 3),
        "max": round(ms[-1], 3),
    }


def phase_summary(result: PhaseResult) -> dict[str, Any]:
    ok = [s for s in result.samples if 200 <= s.status < 300]
    statuses: dict[str, int] = {}
    for sample in result.samples:
        key = str(sample.status) if sample.status else "error"
        statuses[key] = statuses.get(key, 0) + 1
    return {
        "planned": result.planned,
        "completed": result.completed,
        "unsent": result.unsent,
        "timed_out": result.timed_out,
        "ok_2xx": len(ok),
        "non_2xx": result.completed - len(ok),
        "status_counts": statuses,
        "errors": sorted(set(result.errors))[:10],
        "reconnects": result.reconnects,
        "wall_s": round(result.wall_s, 3),
        "throughput_rps": round(result.completed / result.wall_s, 1) if result.wall_s else None,
        "latency_ms": summarize_ms([s.latency_s for s in result.samples]),
        # Open loop: how late requests left their schedule (all connections busy).
        "late_ms": summarize_ms([s.late_s for s in result.samples]),
    }
