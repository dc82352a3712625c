"""Benchmark 1: callback acknowledgement under load, next to a bare Flask endpoint.

Per variant ("worker stopped", "worker running"), in one fresh `ProcessSystem`:

1. The bare server (benchmarks/bare_app.py) is started next to the real web process, with
   the same gunicorn configuration, worker count and environment.
2. Pending suggestion requests are written through the project's own stores, as the
   submission job leaves them: status `submitted`, a provider request id, and the provider id
   bound to the request in the same transaction (`stage_bind_provider`, as `submit_query`
   does). No trigger or provider round trip is needed to set up thousands of them.
3. One `completed` callback per request is built (3-5 suggestions from the emulator's own
   knowledge base) and signed the Standard Webhooks way right before the phase, each with
   its own `webhook-id`, so every one is genuine and new: the full path runs every time
   (signature, parsing, one Redis script: lookup, dedup marker, rank job and the staged
   `callback_received` record; 202).
4. Rounds of (bare, assist): warm-up requests, then the measured ones, same bodies and
   headers for both targets, same concurrency, each over persistent connections.
5. Afterwards every acknowledgement is checked against Redis and the audit log: one rank
   job per acknowledged callback, none missing, none twice, none failed, and one
   `callback_received` record each (an audit line, or still staged for the worker).
"""

from __future__ import annotations

import csv
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from redis.client import Pipeline
from standardwebhooks import Webhook

from assist.bootstrap import Services
from assist.core.models import RequestStatus, SuggestionRequest, utcnow
from benchmarks.environment import CpuMeter, relative
from benchmarks.loadgen import LoadGenerator, PhaseResult, PreparedRequest, phase_summary
from benchmarks.systems import (
    QUEUE_NAME,
    BareServer,
    bench_services,
    discard_redis_data,
    process_pids,
    queue_state,
    wait_queue_idle,
)
from emulator.knowledge import Article, load_articles
from tests.processes import CALLBACK_SECRET, ProcessSystem

CALLBACK_PATH = "/v1/callbacks/genesys"
TRANSCRIPT = "I was charged twice on my last bill and I would like a refund, please."


@dataclass(frozen=True)
class AckConfig:
    requests: int = 3000
    warmup: int = 200
    concurrency: int = 16
    web_workers: int = 2
    rounds: int = 2
    worker_modes: tuple[str, ...] = ("stopped", "running")
    #: ASSIST_WORKER_CLASS of the RQ worker in the "running" variant (RQ's default: fork).
    worker_class: str = "simple"
    #: Cap on one phase (warm-up or measured), far below the ±300 s signature window.
    max_phase_s: float = 60.0
    #: Cap on waiting for the worker to rank the backlog ("worker running" only).
    drain_s: float = 30.0
    seed: int = 20240601
    #: None keeps the system's `appendfsync always`; "everysec" is a diagnostic (CONFIG SET).
    redis_appendfsync: str | None = None
    #: Keep each system's Redis append-only file under results/raw/ (large).
    keep_redis_data: bool = False
    #: After each closed-loop assist phase (worker stopped), an open-loop phase of as many
    #: fresh callbacks sent at this fraction of the throughput just measured (0: none); its
    #: latencies count from when each request was due (benchmarks/loadgen.py).
    open_loop_fraction: float = 0.5
    #: Connections of the open-loop phase (enough that none waits for a free one).
    open_loop_concurrency: int = 64
    #: Also send the bare endpoint an open-loop phase at the same rate, right after: the
    #: baseline of the open-loop latency in the same run (benchmarks/suite.py).
    open_loop_bare: bool = False


@dataclass(frozen=True)
class Pending:
    request_id: str
    provider_id: str
    conversation_id: str


# --- set-up ------------------------------------------------------------------------------


def new_pending(count: int, tag: str) -> list[Pending]:
    return [
        Pending(
            request_id=f"req_{uuid.uuid4().hex}",
            provider_id=f"q_{uuid.uuid4().hex}",
            conversation_id=f"bench-{tag}-{i}",
        )
        for i in range(count)
    ]


def store_pending(services: Services, pending: Sequence[Pending], batch: int = 200) -> None:
    """Write `submitted` requests bound to their provider ids, as `submit_query` leaves them."""
    now = utcnow()
    for start in range(0, len(pending), batch):
        chunk = pending[start : start + batch]

        def body(pipe: Pipeline, chunk: Sequence[Pending] = chunk) -> None:
            pipe.multi()
            for item in chunk:
                request = SuggestionRequest(
                    request_id=item.request_id,
                    conversation_id=item.conversation_id,
                    agent_id="agent-bench",
                    agent_skills=("billing",),
                    knowledge_source_ids=("kb-billing", "kb-accounts"),
                    transcript=TRANSCRIPT,
                    max_results=5,
                    status=RequestStatus.SUBMITTED,
                    provider_request_id=item.provider_id,
                    created_at=now,
                    updated_at=now,
                    submitted_at=now,
                    # Far enough that nothing expires during the run.
                    expires_at=now + timedelta(hours=1),
                )
                services.requests.stage_save(pipe, request)
                services.requests.stage_bind_provider(pipe, item.provider_id, item.request_id)

        services.redis.transact([], body)


def callback_bodies(pending: Sequence[Pending], rng: random.Random) -> list[bytes]:
    """A `completed` callback per request: 3-5 suggestions from the emulator's articles."""
    articles: tuple[Article, ...] = load_articles()
    bodies = []
    for item in pending:
        chosen = rng.sample(articles, rng.randint(3, 5))
        suggestions = [
            {
                "id": article.id,
                "title": article.title,
                "content": article.content,
                "confidence": round(article.base_confidence * rng.uniform(0.6, 1.0), 3),
                "knowledge_source_id": article.knowledge_source_id,
                "metadata": {"tags": list(article.tags)},
            }
            for article in chosen
        ]
        payload = {"id": item.provider_id, "status": "completed", "suggestions": suggestions}
        bodies.append(json.dumps(payload, separators=(",", ":")).encode())
    return bodies


def sign_callbacks(pending: Sequence[Pending], bodies: Sequence[bytes]) -> list[PreparedRequest]:
    """Signed now: the receiver accepts timestamps within ±300 s of its clock."""
    webhook = Webhook(CALLBACK_SECRET)
    timestamp = int(time.time())
    signed_at = datetime.fromtimestamp(timestamp, UTC)
    prepared = []
    for item, body in zip(pending, bodies, strict=True):
        message_id = f"msg_{uuid.uuid4().hex}"
        headers = {
            "Content-Type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": webhook.sign(message_id, signed_at, body.decode()),
        }
        # The URL the server hands to providers carries the request id as a hint.
        path = f"{CALLBACK_PATH}?request_id={quote(item.request_id)}"
        prepared.append(PreparedRequest("POST", path, headers, body))
    return prepared


# --- measuring ---------------------------------------------------------------------------


def _write_samples(path: Path, result: PhaseResult) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    first = result.samples[0].started if result.samples else 0.0
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "start_offset_ms", "latency_ms", "status", "error"])
        for s in result.samples:
            writer.writerow(
                [
                    s.index,
                    round((s.started - first) * 1000, 3),
                    round(s.latency_s * 1000, 3),
                    s.status,
                    s.error or "",
                ]
            )


def measure_target(
    *,
    name: str,
    port: int,
    warm: Sequence[PreparedRequest],
    measured: Sequence[PreparedRequest],
    config: AckConfig,
    pids: dict[str, int],
    raw_path: Path,
    rate_per_s: float | None = None,
) -> tuple[dict[str, Any], list[PhaseResult]]:
    concurrency = config.concurrency if rate_per_s is None else config.open_loop_concurrency
    with LoadGenerator("127.0.0.1", port, concurrency=concurrency) as generator:
        warm_result = generator.run(warm, max_wall_s=config.max_phase_s)
        meter = CpuMeter(pids)
        meter.start()
        result = generator.run(measured, max_wall_s=config.max_phase_s, rate_per_s=rate_per_s)
        meter.stop()
    _write_samples(raw_path, result)
    summary = phase_summary(result)
    summary["target"] = name
    summary["rate_per_s"] = rate_per_s
    summary["warmup"] = phase_summary(warm_result) | {"latency_ms": None}
    completed = max(result.completed, 1)
    summary["cpu_s"] = meter.used
    summary["cpu_ms_per_request"] = {
        proc: round(seconds * 1000 / completed, 3) for proc, seconds in meter.used.items()
    }
    summary["machine_load"] = meter.machine
    summary["server_worker_cpu_s"] = meter.per_child.get(pid_name(name), [])
    return summary, [warm_result, result]


def pid_name(target: str) -> str:
    return "bare" if target.startswith("bare") else "web"


# --- verification ------------------------------------------------------------------------


def audit_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open() as handle:
        return [json.loads(line) for line in handle if line.strip()]


def verify_acks(
    system: ProcessSystem,
    services: Services,
    pending: Sequence[Pending],
    results: Sequence[PhaseResult],
) -> dict[str, Any]:
    """Every 202 must have exactly one rank job in Redis and one `callback_received` record:
    an audit line, or staged in Redis for the worker to write (assist/stores/callbacks.py)."""
    acked: list[Pending] = []
    not_queued = 0
    for result in results:
        for sample in result.samples:
            if sample.status == 202 and b'"queued"' in sample.body:
                acked.append(pending[sample.index])
            elif sample.status:
                not_queued += 1
    raw = services.redis.raw
    job_status = rank_job_statuses(services, acked)
    with raw.pipeline(transaction=False) as pipe:
        for item in acked:
            pipe.get(services.redis.keys.request(item.request_id))
        request_status = Counter(
            json.loads(r)["status"] if r else "missing" for r in pipe.execute()
        )
    queue_ids = [_text(j) for j in raw.lrange(f"rq:queue:{QUEUE_NAME}", 0, -1)]
    queued_rank = [j for j in queue_ids if j.startswith("rank-")]
    wanted = {item.request_id for item in acked}
    received: Counter[str] = Counter()
    ranked = 0
    for event in audit_events(system.audit_path):
        if event.get("request_id") not in wanted:
            continue
        if event["type"] == "callback_received":
            received["duplicate" if event["data"].get("duplicate") else "new"] += 1
        elif event["type"] == "suggestions_ranked":
            ranked += 1
    # Records the worker has not written yet wait, staged by the callback script, in Redis
    # (with the worker stopped: all of them).
    staged: Counter[str] = Counter()
    acks = getattr(services, "callback_acks", None)  # absent before the callback script
    for entry in acks.head(acks.pending()) if acks is not None else []:
        if entry.get("request_id") in wanted:
            staged["duplicate" if entry.get("duplicate") else "new"] += 1
    rank_keys = sum(1 for _ in raw.scan_iter(match="rq:job:rank-*", count=1000))
    lost = job_status.get("missing", 0)
    return {
        "acknowledged_202": len(acked),
        "answered_but_not_queued": not_queued,
        "rank_job_status": dict(job_status),
        "rank_job_keys_in_redis": rank_keys,
        "rank_jobs_in_queue": len(queued_rank),
        "rank_jobs_in_queue_distinct": len(set(queued_rank)),
        "request_status": dict(request_status),
        "audit_callback_received": dict(received),
        "staged_callback_received": dict(staged),
        "audit_suggestions_ranked": ranked,
        "queue_state": queue_state(raw),
        "lost_acknowledgements": lost,
        "failed_rank_jobs": job_status.get("failed", 0),
        "ok": (
            lost == 0
            and not_queued == 0
            and job_status.get("failed", 0) == 0
            and rank_keys == len(acked)
            and received.get("new", 0) + staged.get("new", 0) == len(acked)
            and received.get("duplicate", 0) + staged.get("duplicate", 0) == 0
            and len(queued_rank) == len(set(queued_rank))
        ),
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def rank_job_statuses(services: Services, pending: Sequence[Pending]) -> Counter[str]:
    with services.redis.raw.pipeline(transaction=False) as pipe:
        for item in pending:
            pipe.hget(f"rq:job:rank-{item.request_id}", "status")
        return Counter((s.decode() if isinstance(s, bytes) else "missing") for s in pipe.execute())


def wait_drained(
    services: Services, pending: Sequence[Pending], timeout_s: float
) -> dict[str, Any]:
    """Wait (bounded) until every request is ranked and the queue is idle; report how far."""
    raw = services.redis.raw
    started = time.monotonic()
    remaining = list(pending)
    ranked_after: float | None = None
    while time.monotonic() - started < timeout_s:
        with raw.pipeline(transaction=False) as pipe:
            for item in remaining:
                pipe.hget(f"rq:job:rank-{item.request_id}", "status")
            statuses = pipe.execute()
        remaining = [item for item, s in zip(remaining, statuses, strict=True) if s != b"finished"]
        if not remaining and ranked_after is None:
            ranked_after = time.monotonic() - started
        if not remaining and wait_queue_idle(raw, timeout_s=1.0, quiet_s=0.2):
            break
        time.sleep(0.25)
    return {
        "ranked": len(pending) - len(remaining),
        "not_ranked_within_cap": len(remaining),
        "all_ranked_after_s": round(ranked_after, 2) if ranked_after is not None else None,
        "queue_idle_after_s": round(time.monotonic() - started, 2),
        "queue_state": queue_state(raw),
        "cap_s": timeout_s,
    }


# --- the benchmark -----------------------------------------------------------------------


def run_variant(config: AckConfig, mode: str, workdir: Path, raw_dir: Path) -> dict[str, Any]:
    """One fresh system; `mode` is "stopped" or "running" (the RQ worker during the load)."""
    rng = random.Random(f"{config.seed}-{mode}")
    system = ProcessSystem(
        workdir, web_workers=config.web_workers, worker_class=config.worker_class
    )
    bare: BareServer | None = None
    services: Services | None = None
    try:
        system.start()
        if mode == "stopped":
            system.stop_process("worker")
        bare = BareServer(system, workdir).start()
        services = bench_services(system)
        if config.redis_appendfsync is not None:
            services.redis.raw.config_set("appendfsync", config.redis_appendfsync)
        pids = process_pids(system, bare)
        per_phase = config.warmup + config.requests
        # The bare endpoint gets the same kind of bodies and headers (it checks neither).
        bare_pending = new_pending(per_phase, "bare")
        bare_bodies = callback_bodies(bare_pending, rng)
        phases: list[dict[str, Any]] = []
        assist_pending: list[Pending] = []
        assist_results: list[PhaseResult] = []
        drains: list[dict[str, Any]] = []
        ranked_when_load_ended: int | None = None
        # With the worker running, a second round would start on the first one's backlog.
        rounds = config.rounds if mode == "stopped" else 1
        for round_no in range(1, rounds + 1):
            pending = new_pending(per_phase, f"{mode}-{round_no}")
            store_pending(services, pending)
            bodies = callback_bodies(pending, rng)
            for target in ("bare", "assist"):
                if target == "bare":
                    prepared = sign_callbacks(bare_pending, bare_bodies)
                    port = bare.port
                else:
                    prepared = sign_callbacks(pending, bodies)
                    port = system.web_port
                summary, results = measure_target(
                    name=target,
                    port=port,
                    warm=prepared[: config.warmup],
                    measured=prepared[config.warmup :],
                    config=config,
                    pids=pids,
                    raw_path=raw_dir / f"ack-{mode}-round{round_no}-{target}.csv",
                )
                summary["round"] = round_no
                phases.append(summary)
                if target == "assist":
                    # Measured-phase indexes are offsets into the measured slice.
                    warm_result, measured_result = results
                    assist_pending.extend(pending)
                    assist_results.append(_offset(warm_result, len(assist_pending) - per_phase))
                    assist_results.append(
                        _offset(measured_result, len(assist_pending) - per_phase + config.warmup)
                    )
                    rate = (summary["throughput_rps"] or 0) * config.open_loop_fraction
                    if mode == "stopped" and rate > 0:
                        phases.append(
                            _open_loop_phase(
                                config,
                                system,
                                services,
                                pids,
                                rng,
                                raw_dir,
                                mode,
                                round_no,
                                rate,
                                assist_pending,
                                assist_results,
                            )
                        )
                        if config.open_loop_bare:
                            phases.append(
                                _open_loop_bare_phase(
                                    config, bare, pids, rng, raw_dir, mode, round_no, rate
                                )
                            )
            if mode == "running":
                statuses = rank_job_statuses(services, pending)
                ranked_when_load_ended = statuses.get("finished", 0)
                drains.append({"round": round_no} | wait_drained(services, pending, config.drain_s))
        verification = verify_acks(system, services, assist_pending, assist_results)
        return {
            "mode": mode,
            "worker_class": config.worker_class if mode == "running" else None,
            "redis_appendfsync": services.redis.raw.config_get("appendfsync")["appendfsync"],
            "phases": phases,
            "drain": drains,
            "ranked_when_load_ended": ranked_when_load_ended,
            "verification": verification,
            "logs": relative(workdir / "logs"),
        }
    finally:
        if services is not None:
            services.close()
        if bare is not None:
            bare.stop()
        system.stop()
        if not config.keep_redis_data:
            discard_redis_data(system)


def _measure_open_loop(
    config: AckConfig,
    *,
    name: str,
    port: int,
    pending: list[Pending],
    rng: random.Random,
    pids: dict[str, int],
    raw_path: Path,
    round_no: int,
    rate: float,
) -> tuple[dict[str, Any], list[PhaseResult]]:
    """Fresh signed callbacks for `pending` sent to `port` at a fixed rate (open loop)."""
    prepared = sign_callbacks(pending, callback_bodies(pending, rng))
    summary, results = measure_target(
        name=name,
        port=port,
        warm=prepared[: config.warmup],
        measured=prepared[config.warmup :],
        config=config,
        pids=pids,
        raw_path=raw_path,
        rate_per_s=round(rate, 1),
    )
    summary["round"] = round_no
    return summary, results


def _open_loop_phase(
    config: AckConfig,
    system: ProcessSystem,
    services: Services,
    pids: dict[str, int],
    rng: random.Random,
    raw_dir: Path,
    mode: str,
    round_no: int,
    rate: float,
    assist_pending: list[Pending],
    assist_results: list[PhaseResult],
) -> dict[str, Any]:
    """Fresh callbacks at a fixed rate (open loop): the latency at that throughput."""
    pending = new_pending(config.warmup + config.requests, f"{mode}-{round_no}-open")
    store_pending(services, pending)
    summary, (warm_result, measured_result) = _measure_open_loop(
        config,
        name=f"assist, open loop at {config.open_loop_fraction:.0%} of its req/s",
        port=system.web_port,
        pending=pending,
        rng=rng,
        pids=pids,
        raw_path=raw_dir / f"ack-{mode}-round{round_no}-assist-open-loop.csv",
        round_no=round_no,
        rate=rate,
    )
    assist_pending.extend(pending)
    assist_results.append(_offset(warm_result, len(assist_pending) - len(pending)))
    assist_results.append(
        _offset(measured_result, len(assist_pending) - len(pending) + config.warmup)
    )
    return summary


def _open_loop_bare_phase(
    config: AckConfig,
    bare: BareServer,
    pids: dict[str, int],
    rng: random.Random,
    raw_dir: Path,
    mode: str,
    round_no: int,
    rate: float,
) -> dict[str, Any]:
    """The bare endpoint at the assist open-loop phase's rate, same shape: its baseline."""
    summary, _ = _measure_open_loop(
        config,
        name=f"bare, open loop at assist's {config.open_loop_fraction:.0%} rate",
        port=bare.port,
        pending=new_pending(config.warmup + config.requests, f"{mode}-{round_no}-bare-open"),
        rng=rng,
        pids=pids,
        raw_path=raw_dir / f"ack-{mode}-round{round_no}-bare-open-loop.csv",
        round_no=round_no,
        rate=rate,
    )
    return summary


def _offset(result: PhaseResult, offset: int) -> PhaseResult:
    for sample in result.samples:
        sample.index += offset
    return result
