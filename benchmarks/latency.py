"""Benchmark 2: trigger -> ranked result, with the emulator answering at once.

One `ProcessSystem` per RQ worker class (`fork`, RQ's default, forks a work horse per job;
`simple` runs jobs in the worker process), both with `EMULATOR_CALLBACK_DELAY_MS=0`, both
running at once and measured alternately (fork, simple, simple, fork, ...) so that anything
that drifts during the run affects both the same way.

Each trigger is measured on an idle system (no job queued or running in either system), so
a trigger's latency is its own and not the tail of the previous trigger's analytics jobs:

    t0 = POST /v1/suggestions sent
    poll GET status_url every `poll_interval_s` until the status is terminal
    latency = completion observed - t0

Stage figures come from the audit log the processes write (`query_submitted.latency_ms`:
trigger accepted -> provider accepted the query; `callback_received.latency_ms` of the
`completed` callback: trigger accepted -> callback received; `suggestions_ranked.latency_ms`
and `ranking_ms`: callback received -> ranked) and from the RQ job hashes (time each job
waited in the queue and ran).
"""

from __future__ import annotations

import csv
import http.client
import json
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
from rq.utils import utcparse

from benchmarks.ack import audit_events
from benchmarks.environment import CpuMeter, relative
from benchmarks.loadgen import summarize_ms
from benchmarks.systems import (
    QUEUE_NAMES,
    discard_redis_data,
    process_pids,
    queue_state,
    wait_queue_idle,
)
from tests.processes import DESK_TOKEN, ProcessSystem

TERMINAL = ("completed", "failed", "expired")


@dataclass(frozen=True)
class LatencyConfig:
    triggers: int = 100
    warmup: int = 10
    worker_classes: tuple[str, ...] = ("fork", "simple")
    poll_interval_s: float = 0.002
    #: Cap on one trigger (POST to terminal status).
    trigger_timeout_s: float = 15.0
    #: Cap on waiting for both systems to be idle before a trigger.
    idle_timeout_s: float = 30.0
    #: Cap on the whole benchmark; whatever was measured by then is reported.
    max_wall_s: float = 300.0
    web_workers: int = 2
    #: Keep each system's Redis append-only file under results/raw/ (large).
    keep_redis_data: bool = False


@dataclass
class TriggerSample:
    worker_class: str
    sequence: int
    warmup: bool
    request_id: str | None
    status: str | None
    latency_s: float
    accept_s: float
    polls: int
    suggestions: int
    server_ms: float | None  # completed_at - created_at, as the server recorded it
    error: str | None = None


class DeskClient:
    """A keep-alive desk client on `http.client` (cheap, like the load generator).

    gunicorn closes a keep-alive connection after 2 s of silence; a connection idle for
    longer than `max_idle_s` is replaced before use rather than found dead mid-trigger.
    """

    def __init__(self, port: int, max_idle_s: float = 1.0) -> None:
        self._port = port
        self._max_idle_s = max_idle_s
        self._conn = self._connect()
        self._last_used = time.monotonic()
        self._headers = {
            "Authorization": f"Bearer {DESK_TOKEN}",
            "Content-Type": "application/json",
        }

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self._port, timeout=10)

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        if time.monotonic() - self._last_used > self._max_idle_s:
            self._conn.close()
            self._conn = self._connect()
        try:
            self._conn.request(method, path, body, self._headers)
            response = self._conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self._conn.close()
            self._conn = self._connect()
            raise
        finally:
            self._last_used = time.monotonic()
        if response.will_close:
            self._conn.close()
        return response.status, json.loads(data) if data else None

    def close(self) -> None:
        self._conn.close()


def trigger_body(worker_class: str, sequence: int) -> bytes:
    return json.dumps(
        {
            # One conversation per trigger: no earlier result suppresses an article.
            "conversation_id": f"bench-latency-{worker_class}-{sequence}",
            "agent_id": "agent-bench",
            "agent_skills": ["billing"],
            "knowledge_source_ids": ["kb-billing", "kb-accounts"],
            "transcript": (
                "Hi, I was charged twice on my last bill and I want a refund. "
                "Can you also check why my invoice went up this month?"
            ),
        }
    ).encode()


def measure_trigger(
    client: DeskClient, worker_class: str, sequence: int, warmup: bool, config: LatencyConfig
) -> TriggerSample:
    body = trigger_body(worker_class, sequence)
    started = time.perf_counter()
    polls = 0
    request_id: str | None = None
    try:
        status, accepted = client.call("POST", "/v1/suggestions", body)
        accept_s = time.perf_counter() - started
        if status != 202:
            raise RuntimeError(f"trigger answered {status}: {accepted}")
        request_id = accepted["request_id"]
        status_url = accepted["status_url"]
        deadline = started + config.trigger_timeout_s
        while True:
            time.sleep(config.poll_interval_s)
            code, view = client.call("GET", status_url)
            polls += 1
            if code == 200 and view["status"] in TERMINAL:
                latency = time.perf_counter() - started
                break
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{request_id} still {view.get('status')}")
    except Exception as exc:
        return TriggerSample(
            worker_class,
            sequence,
            warmup,
            request_id,
            None,
            time.perf_counter() - started,
            0.0,
            polls,
            0,
            None,
            error=f"{type(exc).__name__}: {exc}",
        )
    created = datetime.fromisoformat(view["created_at"])
    completed = view.get("completed_at")
    server_ms = (
        (datetime.fromisoformat(completed) - created).total_seconds() * 1000 if completed else None
    )
    return TriggerSample(
        worker_class,
        sequence,
        warmup,
        request_id,
        view["status"],
        latency,
        accept_s,
        polls,
        len(view.get("suggestions", [])),
        server_ms,
    )


# --- stage breakdown ---------------------------------------------------------------------


def _summ(values_ms: list[float]) -> dict[str, Any]:
    return summarize_ms([v / 1000 for v in values_ms])


def job_timings(raw: redis.Redis, job_ids: list[str]) -> dict[str, list[float]]:
    """Queue wait (enqueued -> started) and run time (started -> ended) of RQ jobs, in ms."""
    fields = ("enqueued_at", "started_at", "ended_at", "status")
    with raw.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hmget(f"rq:job:{job_id}", fields)
        rows = pipe.execute()
    waits: list[float] = []
    runs: list[float] = []
    for row in rows:
        enqueued, started, ended, status = (v.decode() if v else "" for v in row)
        if status != "finished" or not (enqueued and started and ended):
            continue
        waits.append((utcparse(started) - utcparse(enqueued)).total_seconds() * 1000)
        runs.append((utcparse(ended) - utcparse(started)).total_seconds() * 1000)
    return {"queue_wait": waits, "run": runs}


def jobs_run_ahead_of_rank(raw: redis.Redis, request_ids: list[str]) -> dict[str, Any]:
    """How many jobs the worker ran while each rank job waited in the queue, and which.

    Read from the finished-job registry (results are kept 10 minutes): every job that
    started after the rank job was enqueued and before it started ran ahead of it.
    """
    finished = [
        _text(j)
        for name in QUEUE_NAMES
        for j in raw.zrange(f"rq:finished:{name}", 0, -1)
        if isinstance(j, bytes | str)
    ]
    with raw.pipeline(transaction=False) as pipe:
        for job_id in finished:
            pipe.hmget(f"rq:job:{job_id}", ("enqueued_at", "started_at", "description"))
        rows = pipe.execute()
    jobs = []
    for job_id, row in zip(finished, rows, strict=True):
        enqueued, started, description = (_text(v) if v else "" for v in row)
        if enqueued and started:
            name = description.split("(")[0].rsplit(".", 1)[-1] or "?"
            jobs.append((job_id, utcparse(enqueued), utcparse(started), name))
    by_id = {job[0]: job for job in jobs}
    counts: list[float] = []
    kinds: Counter[str] = Counter()
    for request_id in request_ids:
        rank = by_id.get(f"rank-{request_id}")
        if rank is None:
            continue
        ahead = [job for job in jobs if job[0] != rank[0] and rank[1] <= job[2] < rank[2]]
        counts.append(len(ahead))
        kinds.update(job[3] for job in ahead)
    ranks = max(len(counts), 1)
    return {
        "jobs_run_ahead_of_rank_job": {
            "mean": round(sum(counts) / ranks, 2),
            "max": max(counts, default=0),
            "by_job_per_rank": {name: round(n / ranks, 2) for name, n in kinds.most_common()},
        }
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def stage_breakdown(
    system: ProcessSystem, raw: redis.Redis, request_ids: list[str]
) -> dict[str, Any]:
    wanted = set(request_ids)
    stages: dict[str, list[float]] = {
        "query_submitted.latency_ms": [],
        "callback_received(completed).latency_ms": [],
        "suggestions_ranked.latency_ms": [],
        "suggestions_ranked.ranking_ms": [],
    }
    record_events = 0
    for event in audit_events(system.audit_path):
        if event.get("request_id") not in wanted:
            continue
        data = event["data"]
        record_events += 1
        if event["type"] == "query_submitted":
            stages["query_submitted.latency_ms"].append(data["latency_ms"])
        elif event["type"] == "callback_received" and data.get("callback_status") == "completed":
            stages["callback_received(completed).latency_ms"].append(data["latency_ms"])
        elif event["type"] == "suggestions_ranked":
            stages["suggestions_ranked.latency_ms"].append(data["latency_ms"])
            stages["suggestions_ranked.ranking_ms"].append(data["ranking_ms"])
    submit = job_timings(raw, [f"submit-{r}" for r in request_ids])
    rank = job_timings(raw, [f"rank-{r}" for r in request_ids])
    stages["submit job: queue wait"] = submit["queue_wait"]
    stages["submit job: run"] = submit["run"]
    stages["rank job: queue wait"] = rank["queue_wait"]
    stages["rank job: run"] = rank["run"]
    return jobs_run_ahead_of_rank(raw, request_ids) | {
        "stages_ms": {name: _summ(values) for name, values in stages.items()},
        # Every record event enqueues one analytics delivery job (ASSIST_ANALYTICS_URL is set).
        "record_events_per_trigger": round(record_events / max(len(wanted), 1), 2),
    }


# --- the benchmark -----------------------------------------------------------------------


def run(config: LatencyConfig, workdir: Path, raw_dir: Path) -> dict[str, Any]:
    systems: dict[str, ProcessSystem] = {}
    clients: dict[str, DeskClient] = {}
    samples: list[TriggerSample] = []
    began = time.monotonic()
    try:
        for worker_class in config.worker_classes:
            system = ProcessSystem(
                workdir / f"latency-{worker_class}",
                web_workers=config.web_workers,
                worker_class=worker_class,
                callback_delay_ms=0,
            )
            systems[worker_class] = system
            system.start()
            system.faults(callback_delay_ms=0)
            clients[worker_class] = DeskClient(system.web_port)
        raws = {name: redis.Redis.from_url(s.redis.url) for name, s in systems.items()}
        meters = {name: CpuMeter(process_pids(s)) for name, s in systems.items()}
        # Both systems' processes together, for the machine-wide picture (who else ran).
        everything = CpuMeter(
            {
                f"{name}-{proc}": pid
                for name, system in systems.items()
                for proc, pid in process_pids(system).items()
            }
        )
        meters["*"] = everything
        total = config.warmup + config.triggers
        stopped_early = False
        for sequence in range(total):
            warmup = sequence < config.warmup
            if sequence == config.warmup:
                for meter in meters.values():
                    meter.start()
            order = list(config.worker_classes)
            if sequence % 2:
                order.reverse()
            for worker_class in order:
                if time.monotonic() - began > config.max_wall_s:
                    stopped_early = True
                    break
                for raw in raws.values():
                    wait_queue_idle(raw, config.idle_timeout_s)
                samples.append(
                    measure_trigger(clients[worker_class], worker_class, sequence, warmup, config)
                )
            if stopped_early:
                break
        for meter in meters.values():
            meter.stop()
        # Let the last triggers' analytics jobs finish before reading the job registry.
        for raw in raws.values():
            wait_queue_idle(raw, config.idle_timeout_s)
        _write_samples(raw_dir / "latency-samples.csv", samples)
        per_class: dict[str, Any] = {}
        machine_load = everything.machine
        for worker_class, system in systems.items():
            measured = [s for s in samples if s.worker_class == worker_class and not s.warmup]
            ok = [s for s in measured if s.status == "completed"]
            ids = [s.request_id for s in ok if s.request_id]
            measured_count = max(len(measured), 1)
            meter = meters[worker_class]
            per_class[worker_class] = {
                "triggers": len(measured),
                "completed": len(ok),
                "not_completed": len(measured) - len(ok),
                "errors": sorted({s.error for s in measured if s.error})[:10],
                "latency_ms": summarize_ms([s.latency_s for s in ok]),
                "server_completed_minus_created_ms": _summ(
                    [s.server_ms for s in ok if s.server_ms is not None]
                ),
                "trigger_accept_ms": summarize_ms([s.accept_s for s in ok]),
                "polls_per_trigger": round(sum(s.polls for s in ok) / max(len(ok), 1), 1),
                "suggestions_per_result": round(
                    sum(s.suggestions for s in ok) / max(len(ok), 1), 2
                ),
                "cpu_ms_per_trigger": {
                    name: round(seconds * 1000 / measured_count, 2)
                    for name, seconds in meter.used.items()
                    if name != "loadgen"
                },
                "queue_after": queue_state(raws[worker_class]),
                "logs": relative(system.workdir / "logs"),
            } | stage_breakdown(system, raws[worker_class], ids)
        for raw in raws.values():
            raw.close()
        return {
            "per_worker_class": per_class,
            "stopped_early_at_wall_cap": stopped_early,
            "machine_load": machine_load,
            "wall_s": round(time.monotonic() - began, 1),
        }
    finally:
        for client in clients.values():
            client.close()
        for system in systems.values():
            system.stop()
            if not config.keep_redis_data:
                discard_redis_data(system)


def _write_samples(path: Path, samples: list[TriggerSample]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "worker_class",
                "sequence",
                "warmup",
                "request_id",
                "status",
                "latency_ms",
                "accept_ms",
                "polls",
                "suggestions",
                "server_ms",
                "error",
            ]
        )
        for s in samples:
            writer.writerow(
                [
                    s.worker_class,
                    s.sequence,
                    s.warmup,
                    s.request_id,
                    s.status,
                    round(s.latency_s * 1000, 3),
                    round(s.accept_s * 1000, 3),
                    s.polls,
                    s.suggestions,
                    s.server_ms,
                    s.error or "",
                ]
            )
