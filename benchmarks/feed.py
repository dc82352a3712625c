"""Live feed benchmark: `python benchmarks/feed.py` (part of `make bench`).

N concurrent Server-Sent Events clients (default 1,000) on ONE web process (gunicorn, gevent,
`--workers 1`), held open by a separate load process (`benchmarks/sse_client.py`: one epoll
loop, raw sockets), and the time from publishing a ranking to each client receiving it.

Publishing is what the ranking job does to deliver: `ConversationStore.stage_delivery` (an
XADD on the conversation's feed stream) in a Redis transaction, here from this process through
the project's own store. The web process reads each feed with a blocking XREAD per client, as
in production. One feed per conversation, as one desk per conversation.

Phases, in one run, against one system:

1. **baseline**: 1 client, `baseline_events` published at `rate`/s to its conversation. The
   same path with nothing else open: what one publish → receive costs physically here.
2. **open**: N clients connect; the web worker's RSS before and after (psutil), after the
   feeds have sat idle for a few seconds, divided by N = memory per idle client.
3. **paced**: `paced_events` published at `rate`/s, round-robin over the N conversations
   (each client gets its share); latency per delivery.
4. **burst**: one event to every one of the N conversations in one transaction (all N
   clients woken at once), `bursts` times; latency per delivery.

Every delivery is accounted for: expected (client, event) pairs against received ones; a
missing or repeated one fails the run. Latency = receive time in the load process - time the
publishing transaction was sent, both `time.monotonic()` (CLOCK_MONOTONIC, one clock for every
process on the machine). The load process's own CPU per delivery is reported, to show it is
not the bottleneck. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import signal
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

import psutil  # noqa: E402

from assist.bootstrap import Services  # noqa: E402
from benchmarks import environment  # noqa: E402
from benchmarks.loadgen import summarize_ms  # noqa: E402
from benchmarks.sse_client import FeedLoad  # noqa: E402
from benchmarks.systems import bench_services, discard_redis_data  # noqa: E402
from emulator.knowledge import load_articles  # noqa: E402
from tests.processes import DESK_TOKEN, ProcessSystem  # noqa: E402


@dataclass(frozen=True)
class FeedConfig:
    clients: int = 1000
    #: Publish rate of the baseline and paced phases (events/s).
    rate: float = 100.0
    baseline_events: int = 200
    paced_events: int = 1000
    bursts: int = 3
    #: Seconds the N feeds sit idle before the memory reading.
    idle_settle_s: float = 3.0
    connect_timeout_s: float = 60.0
    #: Cap on waiting for a phase's deliveries after its last publish.
    delivery_timeout_s: float = 30.0


def _suggestions() -> list[dict[str, Any]]:
    """Three ranked suggestions shaped like `RankedSuggestion` (what a real event carries)."""
    articles = load_articles()[:3]
    return [
        {
            "id": a.id,
            "rank": rank,
            "score": round(a.base_confidence, 3),
            "title": a.title,
            "content": a.content,
            "confidence": a.base_confidence,
            "knowledge_source_ids": [a.knowledge_source_id],
            "tags": list(a.tags),
            "sources": ["genesys"],
            "merged_ids": [],
            "url": None,
            "why": {"confidence": a.base_confidence, "skill_match": 0.5, "feedback": 0.0},
        }
        for rank, a in enumerate(articles, start=1)
    ]


class Publisher:
    """Publishes feed events the way a ranking job delivers them, and remembers when."""

    def __init__(self, services: Services, tag: str) -> None:
        self.services = services
        self.tag = tag
        self.sent: dict[str, float] = {}
        self.suggestions = _suggestions()
        self._seq = 0

    def _event(self, conversation_id: str) -> tuple[str, dict[str, Any]]:
        self._seq += 1
        request_id = f"req_{self.tag}_{self._seq}"
        return request_id, {
            "type": "suggestions",
            "request_id": request_id,
            "conversation_id": conversation_id,
            "suggestions": self.suggestions,
            "ts": datetime.now(UTC).isoformat(),
        }

    def paced(self, conversation_ids: list[str], events: int, rate: float) -> dict[str, str]:
        """`events` publishes at `rate`/s, round-robin over the conversations; {request: conv}."""
        targets: dict[str, str] = {}
        began = time.monotonic()
        conversations = self.services.conversations
        for k in range(events):
            conversation_id = conversation_ids[k % len(conversation_ids)]
            request_id, event = self._event(conversation_id)
            delay = began + k / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with self.services.redis.raw.pipeline(transaction=True) as pipe:
                conversations.stage_delivery(pipe, conversation_id, [], event)
                self.sent[request_id] = time.monotonic()
                pipe.execute()
            targets[request_id] = conversation_id
        return targets

    def burst(self, conversation_ids: list[str]) -> dict[str, str]:
        """One event to every conversation, in one transaction."""
        targets: dict[str, str] = {}
        with self.services.redis.raw.pipeline(transaction=True) as pipe:
            for conversation_id in conversation_ids:
                request_id, event = self._event(conversation_id)
                self.services.conversations.stage_delivery(pipe, conversation_id, [], event)
                targets[request_id] = conversation_id
            sent = time.monotonic()
            pipe.execute()
        for request_id in targets:
            self.sent[request_id] = sent
        return targets


def deliveries(
    records: list[tuple[float, int, dict[str, Any]]],
    targets: dict[str, str],
    sent: dict[str, float],
    prefix: str,
) -> dict[str, Any]:
    """Latency of every expected (client, event) delivery, and how many are missing or twice."""
    expected = {(int(conv[len(prefix) :]), request_id) for request_id, conv in targets.items()}
    seen: set[tuple[int, str]] = set()
    latencies: list[float] = []
    duplicates = 0
    for received, index, event in records:
        key = (index, str(event.get("request_id")))
        if key not in expected:
            continue
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        latencies.append(received - sent[key[1]])
    return {
        "expected": len(expected),
        "received": len(seen),
        "lost": len(expected) - len(seen),
        "duplicates": duplicates,
        "latency_ms": summarize_ms(latencies),
        "_latencies_s": latencies,
    }


def web_worker(system: ProcessSystem) -> psutil.Process:
    children = psutil.Process(system.processes["web"].pid).children()
    if len(children) != 1:
        raise RuntimeError(f"expected one web worker process, found {len(children)}")
    return children[0]


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def run_phase(
    load: FeedLoad,
    publish: Any,
    *,
    name: str,
    publisher: Publisher,
    prefix: str,
    already: int,
    pids: dict[str, psutil.Process],
    timeout_s: float,
    raw_dir: Path,
) -> tuple[dict[str, Any], int]:
    """Publish (`publish()` returns its targets), wait for every delivery, summarise."""
    before = load.stats()
    cpu_before = {name_: _cpu(p) for name_, p in pids.items()}
    self_before = environment.self_cpu_seconds()
    began = time.monotonic()
    targets: dict[str, str] = publish()
    published_s = time.monotonic() - began
    total = already + len(targets)
    waited = load.wait(total, timeout_s)
    wall = time.monotonic() - began
    records = load.dump(raw_dir / f"feed-{name}.jsonl")
    figures = deliveries(records, targets, publisher.sent, prefix)
    client_cpu = float(waited["cpu_s"]) - float(before["cpu_s"])
    cpu = {name_: round(_cpu(p) - cpu_before[name_], 3) for name_, p in pids.items()}
    cpu["publisher"] = round(environment.self_cpu_seconds() - self_before, 3)
    cpu["load_process"] = round(client_cpu, 3)
    figures |= {
        "phase": name,
        "events_published": len(targets),
        "publish_s": round(published_s, 3),
        "wall_s": round(wall, 3),
        "all_delivered_in_time": bool(waited.get("reached")),
        "feeds_open": waited["open"],
        "cpu_s": cpu,
        "load_process_cpu_ms_per_delivery": round(
            client_cpu * 1000 / max(figures["received"], 1), 4
        ),
        "load_process_cores": round(client_cpu / wall, 3) if wall else None,
    }
    return figures, total


def run(config: FeedConfig, workdir: Path) -> dict[str, Any]:
    stamp = f"{int(time.time())}"
    system = ProcessSystem(workdir, web_workers=1)
    services: Services | None = None
    loads: list[FeedLoad] = []
    try:
        system.start()
        system.stop_process("worker")  # publishing is done here; nothing else runs
        services = bench_services(system)
        worker = web_worker(system)
        assert system.redis.process is not None
        pids = {"web": worker, "redis": psutil.Process(system.redis.process.pid)}
        publisher = Publisher(services, f"feed{stamp}")
        raw_dir = workdir / "samples"
        raw_dir.mkdir(parents=True, exist_ok=True)
        phases: list[dict[str, Any]] = []

        # 1. baseline: one client.
        base_prefix = f"feedbase-{stamp}-"
        base = FeedLoad(
            port=system.web_port, token=DESK_TOKEN, prefix=base_prefix, count=1,
            log_path=workdir / "logs" / "sse-client-base.log",
            connect_timeout_s=config.connect_timeout_s,
        )  # fmt: skip
        loads.append(base)
        ready = base.start()
        if ready["ready"] != 1:
            raise RuntimeError(f"the baseline feed did not open: {ready}")
        figures, _ = run_phase(
            base,
            lambda: publisher.paced([f"{base_prefix}0"], config.baseline_events, config.rate),
            name="baseline-1-client", publisher=publisher, prefix=base_prefix, already=0,
            pids=pids, timeout_s=config.delivery_timeout_s, raw_dir=raw_dir,
        )  # fmt: skip
        figures["clients"] = 1
        phases.append(figures)
        base.stop()
        loads.remove(base)
        time.sleep(1.0)

        # 2. N clients open; memory per idle client.
        rss_before = worker.memory_info().rss
        redis_raw = services.redis.raw
        redis_clients_before = int(redis_raw.info("clients")["connected_clients"])
        prefix = f"feed-{stamp}-"
        load = FeedLoad(
            port=system.web_port, token=DESK_TOKEN, prefix=prefix, count=config.clients,
            log_path=workdir / "logs" / "sse-client.log",
            connect_timeout_s=config.connect_timeout_s,
        )  # fmt: skip
        loads.append(load)
        ready = load.start()
        time.sleep(config.idle_settle_s)
        rss_open = worker.memory_info().rss
        redis_clients_open = int(redis_raw.info("clients")["connected_clients"])
        opened = int(ready["ready"])
        memory = {
            "clients_requested": config.clients,
            "clients_open": opened,
            "connect_s": ready["connect_s"],
            "rss_before_mib": round(rss_before / 2**20, 1),
            "rss_open_mib": round(rss_open / 2**20, 1),
            "rss_per_idle_client_kib": round((rss_open - rss_before) / max(opened, 1) / 1024, 1),
            "redis_clients_before": redis_clients_before,
            "redis_clients_open": redis_clients_open,
            "load_process_connect_cpu_s": ready["cpu_s"],
        }
        conversations = [f"{prefix}{i}" for i in range(config.clients)]

        # 3. paced publishes over the N conversations.
        figures, total = run_phase(
            load,
            lambda: publisher.paced(conversations, config.paced_events, config.rate),
            name="paced", publisher=publisher, prefix=prefix, already=0, pids=pids,
            timeout_s=config.delivery_timeout_s, raw_dir=raw_dir,
        )  # fmt: skip
        figures["clients"] = opened
        phases.append(figures)

        # 4. bursts: every client woken at once.
        burst_figures: list[dict[str, Any]] = []
        for number in range(config.bursts):
            time.sleep(1.0)
            figures, total = run_phase(
                load, lambda: publisher.burst(conversations), name=f"burst-{number + 1}",
                publisher=publisher, prefix=prefix, already=total, pids=pids,
                timeout_s=config.delivery_timeout_s, raw_dir=raw_dir,
            )  # fmt: skip
            figures["clients"] = opened
            burst_figures.append(figures)
        phases.append(merge_bursts(burst_figures))
        load.stop()
        loads.remove(load)
        for phase in phases:
            phase.pop("_latencies_s", None)
        lost = sum(p["lost"] for p in phases)
        duplicates = sum(p["duplicates"] for p in phases)
        return {
            "config": asdict(config),
            "phases": phases,
            "memory": memory,
            "checks": {
                "lost": lost,
                "duplicates": duplicates,
                "all_clients_open": opened == config.clients,
                "ok": lost == 0 and duplicates == 0 and opened == config.clients,
            },
        }
    finally:
        for load in loads:
            load.stop()
        if services is not None:
            services.close()
        # Quick shutdown: open feeds sit in XREAD for up to the keep-alive interval, which a
        # graceful stop would wait for.
        system.stop_process("web", sig=signal.SIGQUIT)
        system.stop()
        discard_redis_data(system)


def merge_bursts(bursts: list[dict[str, Any]]) -> dict[str, Any]:
    """The bursts as one phase: latencies pooled from their samples files."""
    if not bursts:
        return {"phase": "burst", "expected": 0, "received": 0, "lost": 0, "duplicates": 0}
    merged = {k: v for k, v in bursts[0].items() if k != "_latencies_s"}
    merged["phase"] = f"burst x{len(bursts)}"
    for field_ in ("expected", "received", "lost", "duplicates", "events_published"):
        merged[field_] = sum(b[field_] for b in bursts)
    merged["wall_s"] = round(sum(b["wall_s"] for b in bursts), 3)
    merged["all_delivered_in_time"] = all(b["all_delivered_in_time"] for b in bursts)
    merged["per_burst_latency_ms"] = [b["latency_ms"] for b in bursts]
    merged["latency_ms"] = summarize_ms([v for b in bursts for v in b["_latencies_s"]])
    cpu = sum(b["cpu_s"]["load_process"] for b in bursts)
    merged["load_process_cpu_ms_per_delivery"] = round(cpu * 1000 / max(merged["received"], 1), 4)
    return merged


def render(result: dict[str, Any]) -> str:
    lines = [
        "| phase | clients | events | deliveries | lost | twice | p50 ms | p95 ms | p99 ms "
        "| max ms | web CPU s | load process CPU ms / delivery |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in result["phases"]:
        lat = p.get("latency_ms", {})
        lines.append(
            f"| {p['phase']} | {p.get('clients', '-')} | {p.get('events_published', '-')} "
            f"| {p['received']}/{p['expected']} | {p['lost']} | {p['duplicates']} "
            f"| {lat.get('p50', '-')} | {lat.get('p95', '-')} | {lat.get('p99', '-')} "
            f"| {lat.get('max', '-')} | {p.get('cpu_s', {}).get('web', '-')} "
            f"| {p.get('load_process_cpu_ms_per_delivery', '-')} |"
        )
    m = result["memory"]
    lines += [
        "",
        f"{m['clients_open']}/{m['clients_requested']} feeds open in {m['connect_s']} s on one "
        f"web worker: RSS {m['rss_before_mib']} -> {m['rss_open_mib']} MiB, "
        f"**{m['rss_per_idle_client_kib']} KiB per idle client**; Redis clients "
        f"{m['redis_clients_before']} -> {m['redis_clients_open']}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    default = FeedConfig()
    parser = argparse.ArgumentParser(prog="benchmarks/feed.py", description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=default.clients)
    parser.add_argument("--rate", type=float, default=default.rate)
    parser.add_argument("--baseline-events", type=int, default=default.baseline_events)
    parser.add_argument("--paced-events", type=int, default=default.paced_events)
    parser.add_argument("--bursts", type=int, default=default.bursts)
    environment.add_output_arguments(parser, tag="feed")
    args = parser.parse_args(argv)
    config = FeedConfig(
        clients=args.clients, rate=args.rate, baseline_events=args.baseline_events,
        paced_events=args.paced_events, bursts=args.bursts,
    )  # fmt: skip
    result = environment.record_standalone(
        benchmark="genesys-assist live feed: SSE clients on one web process",
        title="Live feed benchmark",
        output=args,
        run=lambda workdir: run(config, workdir),
        render=render,
    )
    return 0 if result["checks"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
