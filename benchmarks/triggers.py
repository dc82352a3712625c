"""Trigger -> ranked result visible, at a trigger rate: `python benchmarks/triggers.py`.

Issue 8's target is "p95 <= 50 ms at 50 triggers/s, the emulator answering at once". The
sequential benchmark (`latency.py`) measures one trigger at a time on an idle system; this
one offers triggers open-loop at a fixed rate, so queueing in the web process, Redis and the
workers shows.

"Visible" is measured where the agent sees it: every trigger is for a conversation whose live
feed (`GET /v1/conversations/<id>/events`, Server-Sent Events) is held open by a separate load
process (`benchmarks/sse_client.py`), and the latency is

    ranked batch received on the feed (load process) - POST /v1/suggestions sent (here)

both `time.monotonic()` (CLOCK_MONOTONIC, one clock for every process on the machine). One
conversation per trigger, so no earlier result suppresses an article.

The system: `ProcessSystem` (redis-server with `appendfsync always`, the emulator with
`callback_delay_ms` 0, gunicorn gevent with 2 workers, `workers` RQ workers of the shipped
class). Phases: warm-up (not measured), **baseline** at `baseline_rate` (the same path nearly
unloaded, same run), **loaded** at `rate` for `duration_s`. The sender is open-loop (a trigger
is sent at its scheduled time whether or not earlier ones were answered), from a few threads
with keep-alive `http.client` connections; its CPU per trigger is reported. Every accepted
trigger must show up on its feed within `drain_s` of the phase's end: one that does not is
reported (with its request status), never dropped silently.
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == ROOT / "benchmarks":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from benchmarks import environment  # noqa: E402
from benchmarks.environment import CpuMeter  # noqa: E402
from benchmarks.latency import DeskClient, stage_breakdown  # noqa: E402
from benchmarks.loadgen import summarize_ms  # noqa: E402
from benchmarks.sse_client import FeedLoad  # noqa: E402
from benchmarks.systems import (  # noqa: E402
    bench_services,
    discard_redis_data,
    process_pids,
    queue_state,
    wait_queue_idle,
)
from tests.processes import DESK_TOKEN, ProcessSystem  # noqa: E402

TRANSCRIPT = (
    "Hi, I was charged twice on my last bill and I want a refund. "
    "Can you also check why my invoice went up this month?"
)


@dataclass(frozen=True)
class TriggerRateConfig:
    rate: float = 50.0
    duration_s: float = 20.0
    baseline_rate: float = 5.0
    baseline_triggers: int = 50
    warmup: int = 10
    workers: int = 2
    worker_class: str = "simple"
    web_workers: int = 2
    sender_threads: int = 8
    #: Cap on waiting for the last results after a phase's last trigger.
    drain_s: float = 30.0
    connect_timeout_s: float = 60.0

    @property
    def triggers(self) -> int:
        return max(1, round(self.rate * self.duration_s))


@dataclass
class Sent:
    index: int
    scheduled: float
    sent: float
    answered: float
    status: int
    request_id: str | None
    error: str | None = None


def trigger_body(conversation_id: str) -> bytes:
    return json.dumps(
        {
            "conversation_id": conversation_id,
            "agent_id": "agent-bench",
            "agent_skills": ["billing"],
            "knowledge_source_ids": ["kb-billing", "kb-accounts"],
            "transcript": TRANSCRIPT,
        }
    ).encode()


def send_paced(
    port: int, prefix: str, indexes: list[int], rate: float, threads: int
) -> tuple[list[Sent], float]:
    """Open-loop: trigger k is handed to a sender thread at began + k / rate."""
    work: queue.Queue[tuple[int, float] | None] = queue.Queue()
    results: list[Sent] = []
    lock = threading.Lock()

    def sender() -> None:
        client = DeskClient(port, max_idle_s=1.5)
        try:
            while (item := work.get()) is not None:
                index, scheduled = item
                body = trigger_body(f"{prefix}{index}")
                sent = time.monotonic()
                try:
                    status, answer = client.call("POST", "/v1/suggestions", body)
                    request_id = answer.get("request_id") if isinstance(answer, dict) else None
                    error = None if status == 202 else f"HTTP {status}"
                except Exception as exc:
                    status, request_id, error = 0, None, f"{type(exc).__name__}: {exc}"
                with lock:
                    results.append(
                        Sent(index, scheduled, sent, time.monotonic(), status, request_id, error)
                    )
        finally:
            client.close()

    pool = [threading.Thread(target=sender, daemon=True) for _ in range(max(1, threads))]
    for thread in pool:
        thread.start()
    began = time.monotonic() + 0.05
    for k, index in enumerate(indexes):
        scheduled = began + k / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        work.put((index, scheduled))
    for _ in pool:
        work.put(None)
    for thread in pool:
        thread.join(60)
    return sorted(results, key=lambda s: s.index), began


class QueueSampler:
    """The largest queue depth seen during a phase (sampled every 50 ms)."""

    def __init__(self, raw: redis.Redis) -> None:
        self.raw = raw
        self.max_queued = 0
        self.max_started = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            state = queue_state(self.raw)
            self.max_queued = max(self.max_queued, state["queued"])
            self.max_started = max(self.max_started, state["started"])

    def __enter__(self) -> QueueSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def run_phase(
    system: ProcessSystem,
    load: FeedLoad,
    raw: redis.Redis,
    *,
    name: str,
    prefix: str,
    indexes: list[int],
    rate: float,
    config: TriggerRateConfig,
    workdir: Path,
) -> tuple[dict[str, Any], list[str]]:
    threads = config.sender_threads if rate > 10 else 1
    meter = CpuMeter(process_pids(system))
    client_before = load.stats()
    meter.start()
    with QueueSampler(raw) as sampler:
        sent, began = send_paced(system.web_port, prefix, indexes, rate, threads)
        offered_s = time.monotonic() - began
        accepted = [s for s in sent if s.status == 202 and s.request_id]
        waited = load.wait(int(client_before["events"]) + len(accepted), config.drain_s)
    meter.stop()
    records = load.dump(workdir / f"triggers-{name}.jsonl")
    by_request = {s.request_id: s for s in accepted}
    visible: dict[str, float] = {}
    last_visible = 0.0
    for received, index, event in records:
        request_id = str(event.get("request_id"))
        trigger = by_request.get(request_id)
        if trigger is not None and index == trigger.index and request_id not in visible:
            visible[request_id] = received - trigger.sent
            last_visible = max(last_visible, received)
    first_sent = min((s.sent for s in accepted), default=0.0)
    results_window = last_visible - first_sent if visible else 0.0
    missing = [s.request_id for s in accepted if s.request_id not in visible]
    missing_status: dict[str, int] = {}
    if missing:
        services = bench_services(system)
        try:
            for request_id in missing:
                request = services.requests.get(str(request_id))
                status = request.status.value if request else "missing"
                missing_status[status] = missing_status.get(status, 0) + 1
        finally:
            services.close()
    late = [s.sent - s.scheduled for s in sent]
    client_cpu = float(waited["cpu_s"]) - float(client_before["cpu_s"])
    count = max(len(sent), 1)
    figures: dict[str, Any] = {
        "phase": name,
        "rate_offered": rate,
        "triggers": len(sent),
        "achieved_rate": round(len(sent) / offered_s, 1) if offered_s else None,
        # Results made visible per second, first trigger sent -> last result visible: below
        # the offered rate when the system falls behind.
        "visible_per_s": round(len(visible) / results_window, 1) if results_window else None,
        "accepted_202": len(accepted),
        "errors": sorted({s.error for s in sent if s.error})[:5],
        "visible": len(visible),
        "not_visible_within_cap": len(missing),
        "not_visible_status": missing_status,
        "latency_ms": summarize_ms(list(visible.values())),
        "accept_ms": summarize_ms([s.answered - s.sent for s in accepted]),
        "sender_late_ms": summarize_ms(late),
        "queue_max_queued": sampler.max_queued,
        "queue_max_running": sampler.max_started,
        "cpu_ms_per_trigger": {
            proc: round(seconds * 1000 / count, 2) for proc, seconds in meter.used.items()
        },
        "feed_load_process_cpu_ms_per_trigger": round(client_cpu * 1000 / count, 3),
        "machine_load": meter.machine,
        "sender_threads": threads,
    }
    # "loadgen" in the meter is this process: the sender threads (and the queue sampler).
    figures["sender_cpu_ms_per_trigger"] = figures["cpu_ms_per_trigger"].pop("loadgen", None)
    return figures, [s.request_id for s in accepted if s.request_id]


def run(config: TriggerRateConfig, workdir: Path) -> dict[str, Any]:
    stamp = str(int(time.time()))
    prefix = f"trig-{stamp}-"
    system = ProcessSystem(
        workdir,
        web_workers=config.web_workers,
        worker_class=config.worker_class,
        callback_delay_ms=0,
    )
    load: FeedLoad | None = None
    raw: redis.Redis | None = None
    try:
        system.start()
        system.faults(callback_delay_ms=0)
        for number in range(2, config.workers + 1):
            system.start_worker(f"worker-{number}")
        raw = redis.Redis.from_url(system.redis.url)
        total = config.warmup + config.baseline_triggers + config.triggers
        load = FeedLoad(
            port=system.web_port, token=DESK_TOKEN, prefix=prefix, count=total,
            log_path=workdir / "logs" / "sse-client.log",
            connect_timeout_s=config.connect_timeout_s,
        )  # fmt: skip
        ready = load.start()
        if ready["ready"] != total:
            raise RuntimeError(f"only {ready['ready']} of {total} feeds opened: {ready}")
        samples = workdir / "samples"
        samples.mkdir(parents=True, exist_ok=True)
        phases: list[dict[str, Any]] = []
        plan = [
            ("warmup", list(range(config.warmup)), config.baseline_rate),
            (
                "baseline",
                list(range(config.warmup, config.warmup + config.baseline_triggers)),
                config.baseline_rate,
            ),
            ("loaded", list(range(config.warmup + config.baseline_triggers, total)), config.rate),
        ]
        for name, indexes, rate in plan:
            if not indexes:
                continue
            wait_queue_idle(raw, timeout_s=config.drain_s, quiet_s=0.2)
            figures, request_ids = run_phase(
                system, load, raw, name=name, prefix=prefix, indexes=indexes, rate=rate,
                config=config, workdir=samples,
            )  # fmt: skip
            wait_queue_idle(raw, timeout_s=config.drain_s, quiet_s=0.2)
            if name != "warmup":
                figures["stages"] = stage_breakdown(system, raw, request_ids)
                phases.append(figures)
        checks = {
            "not_visible": sum(p["not_visible_within_cap"] for p in phases),
            "not_accepted": sum(p["triggers"] - p["accepted_202"] for p in phases),
        }
        checks["ok"] = not checks["not_visible"] and not checks["not_accepted"]
        return {
            "config": asdict(config) | {"triggers": config.triggers},
            "feeds_open": ready["ready"],
            "phases": phases,
            "checks": checks,
        }
    finally:
        if load is not None:
            load.stop()
        if raw is not None:
            raw.close()
        system.stop_process("web", sig=signal.SIGQUIT)
        system.stop()
        discard_redis_data(system)


def render(result: dict[str, Any]) -> str:
    lines = [
        "| phase | offered /s | achieved /s | triggers | visible | p50 ms | p95 ms | p99 ms "
        "| max ms | POST answered p50 ms | max queued jobs | sender CPU ms / trigger |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in result["phases"]:
        lat = p["latency_ms"]
        lines.append(
            f"| {p['phase']} | {p['rate_offered']:g} | {p['achieved_rate']} | {p['triggers']} "
            f"| {p['visible']} | {lat.get('p50', '-')} | {lat.get('p95', '-')} "
            f"| {lat.get('p99', '-')} | {lat.get('max', '-')} | {p['accept_ms'].get('p50', '-')} "
            f"| {p['queue_max_queued']} | {p['sender_cpu_ms_per_trigger']} |"
        )
    lines += ["", "Stages, p50 / p95 ms (audit log and RQ job hashes):", ""]
    names = list(result["phases"][0]["stages"]["stages_ms"]) if result["phases"] else []
    lines += [
        "| stage | " + " | ".join(p["phase"] for p in result["phases"]) + " |",
        "|---|" + "---|" * len(result["phases"]),
    ]
    for stage in names:
        cells = []
        for p in result["phases"]:
            s = p["stages"]["stages_ms"].get(stage, {})
            cells.append(f"{s.get('p50', '-')} / {s.get('p95', '-')}")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    default = TriggerRateConfig()
    parser = argparse.ArgumentParser(
        prog="benchmarks/triggers.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rate", type=float, default=default.rate)
    parser.add_argument("--duration-s", type=float, default=default.duration_s)
    parser.add_argument("--baseline-rate", type=float, default=default.baseline_rate)
    parser.add_argument("--baseline-triggers", type=int, default=default.baseline_triggers)
    parser.add_argument("--workers", type=int, default=default.workers)
    parser.add_argument("--worker-class", choices=("simple", "fork"), default="simple")
    environment.add_output_arguments(parser, tag="triggers")
    args = parser.parse_args(argv)
    config = TriggerRateConfig(
        rate=args.rate, duration_s=args.duration_s, baseline_rate=args.baseline_rate,
        baseline_triggers=args.baseline_triggers, workers=args.workers,
        worker_class=args.worker_class,
    )  # fmt: skip
    result = environment.record_standalone(
        benchmark="genesys-assist trigger -> ranked result visible on the feed, at a rate",
        title="Trigger -> ranked visible",
        output=args,
        run=lambda workdir: run(config, workdir),
        render=render,
    )
    return 0 if result["checks"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
