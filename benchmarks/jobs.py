"""Ranking-job throughput against RQ's own no-op job: `python benchmarks/jobs.py`.

Issue 8: ranking jobs at >= 70 % of RQ's own no-op job throughput with the same worker class
and process count. For each (worker class, process count) in `configs` (default simple and
fork, 1 and 2 processes), in one system (`ProcessSystem`: redis-server on the shipped
`config/redis.conf`, `appendfsync always`; the emulator receiving the analytics deliveries):

1. `processes` workers are started exactly as the Procfile does (`python -m workers.rq_worker`,
   `ASSIST_WORKER_CLASS`), and the benchmark waits until every one is registered and idle in
   Redis, so their start-up (measured by `coldstart.py`) is not in the figures.
2. **no-op batch** (the baseline): N jobs of `benchmarks.noop.noop` (PYTHONPATH carries the
   repository), enqueued in one transaction with the project's serializer and result TTL.
3. **rank batch**: N pending requests written through the project's stores, as
   `submit_query` leaves them (benchmarks/ack.py's helpers), then N `rank_callback` jobs enqueued
   exactly as `receive_callback` does (`TaskQueue.enqueue`, job id `rank-<request_id>`,
   `RANK_RETRY`, a genuine `completed` callback payload), in one transaction.

Throughput = N / (last job ended - first job started), from the RQ job hashes (`started_at`,
`ended_at`, written by the workers), so enqueueing is not counted; the analytics deliveries
that ranking enqueues run inside that window and are part of the cost. Per-job run time
(ended - started) p50/p95/p99; worker and Redis CPU per job from /proc. The order of the two
batches alternates between configurations. Every job must finish (none failed or left); each
batch is capped at `max_batch_s`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == ROOT / "benchmarks":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from rq import Queue  # noqa: E402
from rq.serializers import JSONSerializer  # noqa: E402
from rq.utils import utcparse  # noqa: E402

from assist.bootstrap import Services  # noqa: E402
from assist.services.suggestions import CallbackPayload  # noqa: E402
from assist.stores.callbacks import RANK_RETRY  # noqa: E402
from benchmarks import environment  # noqa: E402
from benchmarks.ack import callback_bodies, new_pending, store_pending  # noqa: E402
from benchmarks.environment import CpuMeter  # noqa: E402
from benchmarks.loadgen import summarize_ms  # noqa: E402
from benchmarks.systems import (  # noqa: E402
    QUEUE_NAME,
    QUEUE_NAMES,
    bench_services,
    discard_redis_data,
    wait_queue_idle,
)
from tests.processes import ProcessSystem  # noqa: E402

NOOP = "benchmarks.noop.noop"


@dataclass(frozen=True)
class JobsConfig:
    jobs: int = 500
    configs: tuple[tuple[str, int], ...] = (("simple", 1), ("simple", 2), ("fork", 1), ("fork", 2))
    #: Cap on one batch, enqueue to every job finished.
    max_batch_s: float = 120.0
    ready_timeout_s: float = 60.0
    seed: int = 20261121


class Workers:
    """`processes` RQ workers of one class, each in its own process group (with its scheduler)."""

    def __init__(self, system: ProcessSystem, worker_class: str, processes: int) -> None:
        self.system = system
        self.worker_class = worker_class
        self.count = processes
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, raw: redis.Redis, timeout_s: float) -> float:
        env = {
            **self.system.env,
            "ASSIST_WORKER_CLASS": self.worker_class,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        began = time.monotonic()
        for number in range(self.count):
            log = (self.system.logs / f"jobs-{self.worker_class}-{number}.log").open("ab")
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "workers.rq_worker"],
                    cwd=self.system.workdir,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    process_group=0,
                )
            )
            log.close()
        pids = {p.pid for p in self.processes}
        deadline = began + timeout_s
        while time.monotonic() < deadline:
            if sum(
                1 for pid, state in worker_states(raw) if pid in pids and state == "idle"
            ) == len(pids):
                return time.monotonic() - began
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"worker exited with {process.returncode}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.count} {self.worker_class} workers not idle in {timeout_s} s")

    @property
    def pids(self) -> dict[str, int]:
        return {f"worker-{n}": p.pid for n, p in enumerate(self.processes)}

    def stop(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        self.processes = []


def worker_states(raw: redis.Redis) -> list[tuple[int, str]]:
    """(pid, state) of every worker registered on the queue."""
    keys = [
        k.decode() if isinstance(k, bytes) else k for k in raw.smembers(f"rq:workers:{QUEUE_NAME}")
    ]
    with raw.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hmget(key, ("pid", "state"))
        rows = pipe.execute()
    return [(int(pid), state.decode()) for pid, state in rows if pid and state]


def finished_count(raw: redis.Redis) -> int:
    """Jobs in the finished registries of both queues."""
    return sum(int(raw.zcard(f"rq:finished:{name}")) for name in QUEUE_NAMES)


def enqueue_noop(raw: redis.Redis, count: int, tag: str) -> list[str]:
    queue = Queue(QUEUE_NAME, connection=raw, serializer=JSONSerializer)
    ids = [f"noop-{tag}-{k}" for k in range(count)]
    with raw.pipeline() as pipe:
        for job_id in ids:
            queue.enqueue_call(
                NOOP, job_id=job_id, result_ttl=600, failure_ttl=7 * 24 * 3600, pipeline=pipe
            )
        pipe.execute()
    return ids


def prepare_rank(services: Services, count: int, tag: str, rng: random.Random) -> list[Any]:
    """Pending requests (as `submit_query` leaves them) and their callback payloads."""
    pending = new_pending(count, tag)
    store_pending(services, pending)
    bodies = callback_bodies(pending, rng)
    payloads = [CallbackPayload.model_validate_json(b).model_dump(mode="json") for b in bodies]
    return list(zip(pending, payloads, strict=True))


def enqueue_rank(services: Services, prepared: list[Any]) -> list[str]:
    """The rank jobs, enqueued as `receive_callback` does (one transaction for all)."""
    received_at = datetime.now(UTC).isoformat()
    ids = []
    with services.redis.raw.pipeline() as pipe:
        for item, payload in prepared:
            ids.append(
                services.queue.enqueue(
                    "rank_callback",
                    item.request_id,
                    payload,
                    received_at,
                    job_id=f"rank-{item.request_id}",
                    retry=RANK_RETRY,
                    pipeline=pipe,
                )
            )
        pipe.execute()
    return ids


def job_rows(raw: redis.Redis, job_ids: list[str]) -> list[tuple[str, str, str]]:
    with raw.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hmget(f"rq:job:{job_id}", ("status", "started_at", "ended_at"))
        rows = pipe.execute()
    return [tuple((v.decode() if v else "") for v in row) for row in rows]  # type: ignore[misc]


def run_batch(
    raw: redis.Redis,
    workers: Workers,
    kind: str,
    enqueue: Any,
    config: JobsConfig,
    redis_pid: int,
) -> dict[str, Any]:
    wait_queue_idle(raw, timeout_s=30, quiet_s=0.2)
    finished_before = finished_count(raw)
    meter = CpuMeter(workers.pids | {"redis": redis_pid})
    meter.start()
    began = time.monotonic()
    job_ids: list[str] = enqueue()
    enqueued_s = time.monotonic() - began
    statuses: list[str] = []
    timed_out = True
    while time.monotonic() - began < config.max_batch_s:
        statuses = [row[0] for row in job_rows(raw, job_ids)]
        if all(s in ("finished", "failed") for s in statuses):
            timed_out = False
            break
        time.sleep(0.05)
    drained_s = time.monotonic() - began
    meter.stop()
    wait_queue_idle(raw, timeout_s=30, quiet_s=0.2)
    rows = job_rows(raw, job_ids)
    done = [r for r in rows if r[0] == "finished" and r[1] and r[2]]
    starts = [utcparse(r[1]) for r in done]
    ends = [utcparse(r[2]) for r in done]
    runs = [(e - s).total_seconds() for s, e in zip(starts, ends, strict=True)]
    window = (max(ends) - min(starts)).total_seconds() if done else 0.0
    count = max(len(done), 1)
    other = finished_count(raw) - finished_before - len(done)
    status_counts: dict[str, int] = {}
    for row in rows:
        status_counts[row[0] or "missing"] = status_counts.get(row[0] or "missing", 0) + 1
    return {
        "kind": kind,
        "jobs": len(job_ids),
        "finished": len(done),
        "status": status_counts,
        "timed_out": timed_out,
        "window_s": round(window, 3),
        "jobs_per_s": round(len(done) / window, 1) if window else None,
        "enqueue_s": round(enqueued_s, 3),
        "enqueue_to_drained_s": round(drained_s, 3),
        "run_ms": summarize_ms(runs),
        "other_jobs_finished": other,
        "cpu_ms_per_job": {
            name: round(seconds * 1000 / count, 3)
            for name, seconds in meter.used.items()
            if name != "loadgen"
        },
        "workers_cpu_ms_per_job": round(
            sum(s for n, s in meter.used.items() if n.startswith("worker-")) * 1000 / count, 3
        ),
        "machine_load": meter.machine,
    }


def run(config: JobsConfig, workdir: Path) -> dict[str, Any]:
    rng = random.Random(config.seed)
    system = ProcessSystem(workdir)
    services: Services | None = None
    rows: list[dict[str, Any]] = []
    try:
        system.start()
        system.stop_process("worker")
        services = bench_services(system)
        raw = services.redis.raw
        assert system.redis.process is not None
        redis_pid = system.redis.process.pid
        for position, (worker_class, processes) in enumerate(config.configs):
            tag = f"{worker_class}{processes}-{int(time.time())}"
            prepared = prepare_rank(services, config.jobs, tag, rng)
            workers = Workers(system, worker_class, processes)
            try:
                ready_s = workers.start(raw, config.ready_timeout_s)
                batches = {
                    "noop": lambda tag=tag: enqueue_noop(raw, config.jobs, tag),
                    "rank": lambda prepared=prepared: enqueue_rank(services, prepared),
                }
                order = ["noop", "rank"] if position % 2 == 0 else ["rank", "noop"]
                figures = {
                    kind: run_batch(raw, workers, kind, batches[kind], config, redis_pid)
                    for kind in order
                }
            finally:
                workers.stop()
            noop, rank = figures["noop"], figures["rank"]
            ratio = (
                round(rank["jobs_per_s"] / noop["jobs_per_s"], 3)
                if rank["jobs_per_s"] and noop["jobs_per_s"]
                else None
            )
            rows.append(
                {
                    "worker_class": worker_class,
                    "processes": processes,
                    "workers_ready_s": round(ready_s, 2),
                    "order": order,
                    "noop": noop,
                    "rank": rank,
                    "ratio": ratio,
                }
            )
        bad = [
            f"{r['worker_class']}x{r['processes']} {kind}"
            for r in rows
            for kind in ("noop", "rank")
            if r[kind]["finished"] != r[kind]["jobs"] or r[kind]["timed_out"]
        ]
        return {
            "config": asdict(config),
            "rows": rows,
            "checks": {"not_finished": bad, "ok": not bad},
        }
    finally:
        if services is not None:
            services.close()
        system.stop()
        discard_redis_data(system)


def render(result: dict[str, Any]) -> str:
    lines = [
        "| worker class | processes | no-op jobs/s | rank jobs/s | ratio | rank run p50/p95/p99 ms "
        "| no-op run p50/p95/p99 ms | worker CPU ms/job rank / no-op | other jobs in rank batch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        rank, noop = r["rank"], r["noop"]
        lines.append(
            f"| {r['worker_class']} | {r['processes']} | {noop['jobs_per_s']} "
            f"| {rank['jobs_per_s']} | {r['ratio']} "
            f"| {rank['run_ms'].get('p50')} / {rank['run_ms'].get('p95')} / "
            f"{rank['run_ms'].get('p99')} | {noop['run_ms'].get('p50')} / "
            f"{noop['run_ms'].get('p95')} / {noop['run_ms'].get('p99')} "
            f"| {rank['workers_cpu_ms_per_job']} / {noop['workers_cpu_ms_per_job']} "
            f"| {rank['other_jobs_finished']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    default = JobsConfig()
    parser = argparse.ArgumentParser(prog="benchmarks/jobs.py", description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=default.jobs, help="per batch")
    parser.add_argument(
        "--configs",
        default=",".join(f"{c}x{n}" for c, n in default.configs),
        help="comma-separated CLASSxPROCESSES (default simple x1, x2, fork x1, x2)",
    )
    environment.add_output_arguments(parser, tag="jobs")
    args = parser.parse_args(argv)
    configs = tuple(
        (part.split("x")[0], int(part.split("x")[1])) for part in args.configs.split(",") if part
    )
    config = JobsConfig(jobs=args.jobs, configs=configs)
    result = environment.record_standalone(
        benchmark="genesys-assist ranking jobs vs RQ no-op jobs",
        title="Ranking jobs vs no-op jobs",
        output=args,
        run=lambda workdir: run(config, workdir),
        render=render,
    )
    return 0 if result["checks"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
