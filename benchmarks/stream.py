"""Stream benchmark (capability C2/C3): `make bench-stream` or `python benchmarks/stream.py`.

What one `stream` process sustains with 500 concurrent conversations, and how long a final
customer utterance takes to become a keyword card on the conversation's feed.

The whole system runs as real processes on 127.0.0.1 (`tests/processes.py`, stream included):
redis-server (AOF, `appendfsync always`), the emulator playing its scripted calls over the
Notifications WebSocket, gunicorn, RQ workers and `python -m workers.stream`. Phases, in one
run, on one machine:

1. **bare** (the baseline): the same conversations played by the same emulator to a bare
   subscriber in this process (one channel, one socket, it only counts frames). That is what
   the emulator and the WebSocket transport can deliver here, the ceiling for the stream.
   The bare conversations are put on a queue the stream process does not follow, so it never
   sees them.
2. **stream** at each `--speeds` (1 = real time): N conversations discovered through their
   queue topic, followed, gated, analysed and carded by the real processes.

For every stream phase it reports the frames the emulator delivered against the transcription
events the stream process counted (any difference is a loss), the processing rate (events
over the window from the first frame to the last event processed), the stream process's CPU
seconds per 1,000 events (what sizes a deployment), its largest backlog, and, from the audit
log's `keywords_detected` lines, final utterance → card-on-feed latency p50/p95/p99 plus a
check that no card reached a conversation's feed twice.

Keyword detection runs with `ASSIST_KEYWORD_BUFFER_MS=0` and `ASSIST_KEYWORD_COOLDOWN_S=0`
so the latency is the processing path, not the (configurable) debounce a deployment adds on
purpose. Every loop is bounded in count and in wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == ROOT / "benchmarks":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import redis  # noqa: E402
import websockets  # noqa: E402

from assist.stores.keys import Keys  # noqa: E402
from benchmarks import environment  # noqa: E402
from benchmarks.loadgen import summarize_ms  # noqa: E402
from benchmarks.systems import discard_redis_data, wait_queue_idle  # noqa: E402
from tests.processes import CALLBACK_SECRET, CLIENT_ID, CLIENT_SECRET, ProcessSystem  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SCRIPTS_DIR = ROOT / "emulator" / "data" / "conversations"
#: A queue no stream process follows: the bare phase's conversations are invisible to it.
UNFOLLOWED_QUEUE_ID = "00000000-0000-4000-8000-00000000beef"
KEYS = Keys("assist:v1")  # the default `ASSIST_KEY_PREFIX`, which ProcessSystem keeps


@dataclass(frozen=True)
class StreamBenchConfig:
    conversations: int = 500
    speeds: tuple[float, ...] = (1.0, 10.0)
    workers: int = 2
    #: Cap on each phase, from the first start to the last event processed.
    max_phase_s: float = 240.0
    #: Cap on waiting for keyword jobs to drain after a phase.
    drain_s: float = 120.0
    starters: int = 16
    #: Extra environment for every process (`--env NAME=VALUE`), e.g. to try a setting.
    env: dict[str, str] = field(default_factory=dict)
    #: Follow the Copilot suggestion topics too and report insights (C5).
    copilot: bool = False


@dataclass
class Phase:
    name: str
    speed: float
    conversations: int
    started_s: float = 0.0
    frames_delivered: int = 0
    events_processed: int = 0
    window_s: float = 0.0
    max_backlog: int = 0
    stream_cpu_s: float | None = None
    machine: dict[str, Any] = field(default_factory=dict)
    cards: int = 0
    duplicate_cards: int = 0
    conversations_with_cards: int = 0
    latency_ms: dict[str, Any] = field(default_factory=dict)
    timed_out: bool = False
    insights_delivered: int = 0
    insights_processed: int = 0
    insights_per_s: float = 0.0
    insight_latency_ms: dict[str, Any] = field(default_factory=dict)
    insights_under_500ms: float | None = None
    insight_latency_by_type: dict[str, Any] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return max(self.frames_delivered - self.events_processed, 0)

    @property
    def events_per_s(self) -> float:
        return self.events_processed / self.window_s if self.window_s else 0.0


def scripts() -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(SCRIPTS_DIR.glob("*.json"))]


def start_conversations(
    system: ProcessSystem, ids: list[str], speed: float, queue_id: str | None, starters: int
) -> float:
    """Start every conversation (scripts in turn) from a thread pool; returns the seconds taken."""
    names = [script["name"] for script in scripts()]
    began = time.monotonic()

    def start(index_id: tuple[int, str]) -> None:
        index, conversation_id = index_id
        body: dict[str, Any] = {
            "script": names[index % len(names)],
            "conversation_id": conversation_id,
            "speed": speed,
            "subscribe_timeout_s": 60,
        }
        if queue_id is not None:
            body["queue_id"] = queue_id
        url = f"{system.emulator_url}/emulator/conversations"
        response = httpx.post(url, json=body, timeout=30)
        response.raise_for_status()

    with ThreadPoolExecutor(max_workers=starters) as pool:
        list(pool.map(start, enumerate(ids)))
    return time.monotonic() - began


def emulator_conversations(system: ProcessSystem, ids: set[str]) -> list[dict[str, Any]]:
    listing = httpx.get(f"{system.emulator_url}/emulator/conversations", timeout=30).json()
    entries = listing["conversations"] if isinstance(listing, dict) else listing
    return [c for c in entries if c["conversation_id"] in ids]


# --- phase 1: the bare subscriber ------------------------------------------------------------
COPILOT_TOPICS: tuple[str, ...] = (
    "knowledge.search",
    "knowledge.article",
    "response",
    "script",
    "intent",
    "thirdpartyaction",
)


def topics_of(conversation_id: str, copilot: bool) -> list[str]:
    topics = [f"v2.conversations.{conversation_id}.transcription"]
    if copilot:
        topics += [f"v2.conversations.{conversation_id}.suggestions.{t}" for t in COPILOT_TOPICS]
    return topics


async def _bare_subscriber(
    system: ProcessSystem,
    ids: list[str],
    ready: threading.Event,
    expected: threading.Event,
    copilot: bool = False,
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=system.emulator_url, timeout=30) as client:
        token = (
            await client.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(CLIENT_ID, CLIENT_SECRET),
            )
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        channel = (await client.post("/api/v2/notifications/channels", headers=headers)).json()
        topics = [{"id": topic} for cid in ids for topic in topics_of(cid, copilot)]
        subscribed = await client.put(
            f"/api/v2/notifications/channels/{channel['id']}/subscriptions",
            headers=headers,
            json=topics,
        )
        subscribed.raise_for_status()
    frames = 0
    first = last = 0.0
    async with websockets.connect(channel["connectUri"], max_size=2**20) as ws:
        ready.set()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                message = await asyncio.wait_for(ws.recv(), timeout=1.0)
            except TimeoutError:
                if expected.is_set():
                    break
                continue
            if '"v2.conversations.' in (message if isinstance(message, str) else ""):
                frames += 1
                last = time.monotonic()
                first = first or last
    return {"frames": frames, "window_s": last - first if frames else 0.0}


def run_bare(system: ProcessSystem, config: StreamBenchConfig, speed: float) -> Phase:
    ids = [str(uuid.uuid4()) for _ in range(config.conversations)]
    phase = Phase("bare subscriber (baseline)", speed, len(ids))
    ready, finished = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def subscriber() -> None:
        outcome.update(asyncio.run(_bare_subscriber(system, ids, ready, finished, config.copilot)))

    thread = threading.Thread(target=subscriber, daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("the bare subscriber did not connect")
    meter = environment.CpuMeter({"emulator": system.processes["emulator"].pid})
    meter.start()
    phase.started_s = start_conversations(system, ids, speed, UNFOLLOWED_QUEUE_ID, config.starters)
    deadline = time.monotonic() + config.max_phase_s
    wanted = set(ids)
    while time.monotonic() < deadline:
        if all(c["done"] for c in emulator_conversations(system, wanted)):
            break
        time.sleep(0.5)
    else:
        phase.timed_out = True
    finished.set()
    thread.join(30)
    meter.stop()
    phase.machine = meter.machine
    phase.frames_delivered = sum(
        c["frames_delivered"] for c in emulator_conversations(system, wanted)
    )
    phase.events_processed = int(outcome.get("frames", 0))
    phase.window_s = float(outcome.get("window_s", 0.0))
    return phase


# --- phase 2: the stream process -------------------------------------------------------------
def _counter(client: redis.Redis, name: str) -> int:
    return int(client.hget(KEYS.stream_counters(), name) or 0)


def _backlog(client: redis.Redis) -> int:
    return int(client.hget(KEYS.stream_status(), "queued_events") or 0)


def run_stream(
    system: ProcessSystem, config: StreamBenchConfig, speed: float, audit_offset: int
) -> Phase:
    ids = [str(uuid.uuid4()) for _ in range(config.conversations)]
    phase = Phase("stream process", speed, len(ids))
    wanted = set(ids)
    decoded = system.redis_client()
    events_before = _counter(decoded, "events.transcription")
    meter = environment.CpuMeter(
        {name: system.processes[name].pid for name in system.processes if name != "web"}
    )
    meter.start()
    began = time.monotonic()
    phase.started_s = start_conversations(system, ids, speed, None, config.starters)
    deadline = began + config.max_phase_s
    delivered = 0
    last_change = began
    last_seen = events_before
    while time.monotonic() < deadline:
        listing = emulator_conversations(system, wanted)
        delivered = sum(c["frames_delivered"] for c in listing)
        processed = _counter(decoded, "events.transcription")
        if processed != last_seen:
            last_seen, last_change = processed, time.monotonic()
        phase.max_backlog = max(phase.max_backlog, _backlog(decoded))
        if all(c["done"] for c in listing) and processed - events_before >= delivered:
            break
        time.sleep(0.25)
    else:
        phase.timed_out = True
    meter.stop()
    phase.machine = meter.machine
    phase.stream_cpu_s = meter.used.get("stream")
    phase.frames_delivered = delivered
    phase.events_processed = last_seen - events_before
    # The counters reach Redis once a second: the window ends at the last change seen, which
    # overstates it by at most that second (the rate is, if anything, understated).
    phase.window_s = last_change - began
    raw = redis.Redis.from_url(system.redis.url)
    try:
        if not wait_queue_idle(raw, config.drain_s):
            phase.timed_out = True
    finally:
        raw.close()
    latencies: list[float] = []
    with system.audit_path.open() as audit:
        audit.seek(audit_offset)
        for line in audit:
            record = json.loads(line)
            if record["type"] != "keywords_detected" or record["conversation_id"] not in wanted:
                continue
            if record["data"].get("latency_ms") is not None:
                latencies.append(float(record["data"]["latency_ms"]))
    phase.latency_ms = summarize_ms([ms / 1000 for ms in latencies])
    if config.copilot:
        insight_figures(system, phase, wanted, audit_offset)
    for cid in ids:
        cards: list[str] = []
        feed = cast(list[tuple[str, dict[str, str]]], decoded.xrange(KEYS.conversation_feed(cid)))
        for _, fields in feed:
            event = json.loads(fields["event"])
            if event.get("source") == "keywords":
                cards += [s["id"] for s in event.get("suggestions", [])]
        phase.cards += len(cards)
        phase.duplicate_cards += len(cards) - len(set(cards))
        phase.conversations_with_cards += bool(cards)
    return phase


def insight_figures(
    system: ProcessSystem, phase: Phase, wanted: set[str], audit_offset: int
) -> None:
    """Copilot insights of the phase: delivered by the emulator vs processed, rate, latency."""
    phase.insights_delivered = sum(
        c.get("insights_delivered", 0) for c in emulator_conversations(system, wanted)
    )
    latencies: list[float] = []
    by_type: dict[str, list[float]] = {}
    times: list[float] = []
    with system.audit_path.open() as audit:
        audit.seek(audit_offset)
        for line in audit:
            record = json.loads(line)
            if record["type"] != "insight_processed" or record["conversation_id"] not in wanted:
                continue
            value = float(record["data"]["latency_ms"])
            latencies.append(value)
            by_type.setdefault(record["data"]["insight_type"], []).append(value)
            times.append(datetime.fromisoformat(record["ts"]).timestamp())
    phase.insights_processed = len(latencies)
    if len(times) > 1:
        phase.insights_per_s = round(len(times) / (max(times) - min(times)), 1)
    phase.insight_latency_ms = summarize_ms([ms / 1000 for ms in latencies])
    if latencies:
        phase.insights_under_500ms = round(sum(v <= 500 for v in latencies) / len(latencies), 3)
    phase.insight_latency_by_type = {
        kind: summarize_ms([ms / 1000 for ms in values]) for kind, values in by_type.items()
    }


# --- the run ---------------------------------------------------------------------------------
def build_system(config: StreamBenchConfig, workdir: Path) -> ProcessSystem:
    queue_ids = ",".join(script["queue_id"] for script in scripts())
    system = ProcessSystem(
        workdir,
        stream=True,
        extra_env={
            "ASSIST_STREAM_QUEUE_IDS": queue_ids,
            "ASSIST_KEYWORD_BUFFER_MS": "0",
            "ASSIST_KEYWORD_COOLDOWN_S": "0",
            "EMULATOR_HEARTBEAT_S": "5",
            **config.env,
        },
    )
    if config.copilot:
        system.env.update(
            {
                "ASSIST_COPILOT_TOPICS": ",".join(COPILOT_TOPICS),
                "ASSIST_TRAINING_WEBHOOK_URL": f"{system.emulator_url}/training/insights",
                "ASSIST_TRAINING_WEBHOOK_SECRET": CALLBACK_SECRET,
                **config.env,
            }
        )
    return system


def wait_stream_subscribed(system: ProcessSystem, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        calls = system.records()["notifications"]["subscription_calls"]
        if any(call.get("status") == 200 for call in calls):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the stream never subscribed:\n{system.log_tail('stream')}")


def run(config: StreamBenchConfig, workdir: Path) -> list[Phase]:
    phases: list[Phase] = []
    system = build_system(config, workdir)
    with system:
        for index in range(1, config.workers):
            system.start_worker(f"worker-{index + 1}")
        wait_stream_subscribed(system)
        for speed in config.speeds:
            print(f"[bench] bare subscriber, {config.conversations} calls x{speed} ...", flush=True)
            phases.append(run_bare(system, config, speed))
            print(f"[bench] stream, {config.conversations} calls x{speed} ...", flush=True)
            offset = system.audit_path.stat().st_size if system.audit_path.exists() else 0
            phases.append(run_stream(system, config, speed, offset))
    discard_redis_data(system)
    return phases


def render(doc: dict[str, Any]) -> str:
    machine = doc["machine"]
    lines = [
        f"# Stream benchmark, {doc['date']}",
        "",
        f"Machine: {machine.get('cpu_model')}, {machine.get('nproc')} cores; "
        f"Python {doc['versions'].get('python')}; command: `{doc['command']}`; "
        f"git {doc['git'].get('commit', '')[:12]}.",
        "",
        "| phase | speed | calls | frames delivered | events processed | lost | window s "
        "| events/s | vs bare | stream CPU s / 1k events | max backlog |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    bare_rate: dict[float, float] = {}
    for phase in doc["phases"]:
        rate = phase["events_per_s"]
        if phase["name"].startswith("bare"):
            bare_rate[phase["speed"]] = rate
            ratio = "1.00x"
        else:
            base = bare_rate.get(phase["speed"])
            ratio = f"{rate / base:.2f}x" if base else "-"
        per_k = (
            f"{phase['stream_cpu_s'] / phase['events_processed'] * 1000:.2f}"
            if phase.get("stream_cpu_s") and phase["events_processed"]
            else "-"
        )
        lines.append(
            f"| {phase['name']} | x{phase['speed']:g} | {phase['conversations']} "
            f"| {phase['frames_delivered']} | {phase['events_processed']} | {phase['lost']} "
            f"| {phase['window_s']:.1f} | {rate:.0f} | {ratio} | {per_k} "
            f"| {phase['max_backlog'] if not phase['name'].startswith('bare') else '-'} |"
        )
    lines += [
        "",
        "Final customer utterance received by the stream process -> keyword card on the "
        "conversation's feed (audit `keywords_detected.latency_ms`; buffer 0 ms, cooldown 0 s):",
        "",
        "| speed | detections | p50 ms | p95 ms | p99 ms | max ms | calls with cards "
        "| cards | cards twice on a feed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for phase in doc["phases"]:
        if phase["name"].startswith("bare"):
            continue
        lat = phase["latency_ms"]
        lines.append(
            f"| x{phase['speed']:g} | {lat.get('count', 0)} | {lat.get('p50', '-')} "
            f"| {lat.get('p95', '-')} | {lat.get('p99', '-')} | {lat.get('max', '-')} "
            f"| {phase['conversations_with_cards']}/{phase['conversations']} "
            f"| {phase['cards']} | {phase['duplicate_cards']} |"
        )
    copilot_rows = [p for p in doc["phases"] if p.get("insights_processed")]
    if copilot_rows:
        lines += [
            "",
            "Copilot insights (event time -> delivered on the feed, from `insight_processed`):",
            "",
            "| speed | delivered by emulator | processed | insights/s | p50 ms | p95 ms "
            "| p99 ms | under 500 ms |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for phase in copilot_rows:
            lat = phase["insight_latency_ms"]
            lines.append(
                f"| x{phase['speed']:g} | {phase['insights_delivered']} "
                f"| {phase['insights_processed']} | {phase['insights_per_s']} "
                f"| {lat.get('p50', '-')} | {lat.get('p95', '-')} | {lat.get('p99', '-')} "
                f"| {phase['insights_under_500ms']} |"
            )
    lines += ["", "Machine load per phase (cores busy during the phase):", ""]
    for phase in doc["phases"]:
        m = phase["machine"]
        lines.append(
            f"- {phase['name']} x{phase['speed']:g}: machine {m.get('machine_busy_cores')} "
            f"cores busy, measured processes {m.get('measured_processes_cores')}, "
            f"starting the calls took {phase['started_s']:.1f} s"
            + (" — TIMED OUT" if phase["timed_out"] else "")
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    default = StreamBenchConfig()
    parser = argparse.ArgumentParser(
        prog="benchmarks/stream.py", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--conversations", type=int, default=default.conversations)
    parser.add_argument(
        "--speeds",
        default=",".join(f"{s:g}" for s in default.speeds),
        help="comma-separated replay speeds, 1 = real time (default 1,10)",
    )
    parser.add_argument("--workers", type=int, default=default.workers, help="RQ workers")
    parser.add_argument("--max-phase-s", type=float, default=default.max_phase_s)
    parser.add_argument("--drain-s", type=float, default=default.drain_s)
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for every process (repeatable), e.g. ASSIST_STREAM_CONSUMERS=1",
    )
    parser.add_argument(
        "--copilot",
        action="store_true",
        help="also follow the Copilot suggestion topics and report insights (C5); "
        "at most 142 conversations (7 topics each on the bare subscriber's one channel)",
    )
    parser.add_argument("--tag", default="stream")
    parser.add_argument("--quick", action="store_true", help="50 calls at x20, to results/raw/")
    parser.add_argument("--wait-quiet-s", type=float, default=120.0)
    args = parser.parse_args(argv)
    args.speeds = tuple(float(s) for s in args.speeds.split(",") if s.strip())
    if args.quick:
        args.conversations, args.speeds = 50, (20.0,)
    if any("=" not in pair for pair in args.env):
        parser.error("--env takes NAME=VALUE")
    args.env = dict(pair.split("=", 1) for pair in args.env)
    if args.copilot and args.conversations > 142:
        parser.error("--copilot: at most 142 conversations (7 topics each, 1,000 per channel)")
    if not 1 <= args.conversations <= 1000:
        parser.error("--conversations must be 1..1000 (one channel holds 1,000 topics)")
    if not args.speeds or any(not 0 < s <= 100 for s in args.speeds):
        parser.error("--speeds must be in (0, 100]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = StreamBenchConfig(
        conversations=args.conversations,
        speeds=args.speeds,
        workers=args.workers,
        max_phase_s=args.max_phase_s,
        drain_s=args.drain_s,
        env=args.env,
        copilot=args.copilot,
    )
    started = datetime.now(UTC)
    run_id = f"{started.strftime('%Y-%m-%dT%H%M%S')}-{args.tag}" + ("-quick" if args.quick else "")
    raw_dir = RESULTS / "raw" / run_id
    raw_dir.mkdir(parents=True, exist_ok=True)
    print("[bench] waiting for a quiet machine ...", flush=True)
    quiet = environment.wait_for_quiet(args.wait_quiet_s)
    began = time.monotonic()
    phases = run(config, raw_dir / "system")
    doc: dict[str, Any] = {
        "benchmark": "genesys-assist C2/C3: stream process throughput; utterance -> card latency",
        "date": started.strftime("%Y-%m-%d"),
        "started_at": started.isoformat(timespec="seconds"),
        "command": environment.command_line(),
        "git": environment.git_revision(),
        "machine": environment.machine(raw_dir),
        "machine_load_before_run": quiet,
        "versions": environment.versions(),
        "config": asdict(config),
        "raw_dir": str(raw_dir.relative_to(ROOT)),
        "phases": [
            {**asdict(p), "lost": p.lost, "events_per_s": round(p.events_per_s, 1)} for p in phases
        ],
        "duration_s": round(time.monotonic() - began, 1),
    }
    markdown = render(doc)
    out_dir = raw_dir if args.quick else RESULTS
    stem = f"{doc['date']}-{args.tag}"
    (out_dir / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out_dir / f"{stem}.md").write_text(markdown)
    print(markdown)
    streams = [p for p in phases if p.name.startswith("stream")]
    failed = [p for p in streams if p.lost or p.duplicate_cards or p.timed_out]
    if failed:
        print("[bench] FAILED: loss, duplicate cards or a phase over its cap (see the table)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
