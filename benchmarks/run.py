"""Run the C1 benchmarks and record their results: `make bench-c1` or `python benchmarks/run.py`.

1. Callback acknowledgement throughput and p50/p90/p99 latency under load, side by side with
   a bare Flask endpoint in the same server configuration, in the same run, with the RQ
   worker stopped and running (benchmarks/ack.py).
2. Trigger -> ranked-result latency with the emulator answering at once, RQ's forking worker
   against the simple worker, in the same run (benchmarks/latency.py).

Prints the markdown tables and writes `benchmarks/results/<YYYY-MM-DD>-<tag>.json` (figures,
machine, versions, command) and `.md` (the tables). Logs, Redis data, audit logs and
per-request samples go to `benchmarks/results/raw/` (git-ignored). Every server binds
127.0.0.1; every loop is bounded in requests and in wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, Python puts benchmarks/ first on the path; the repository root is wanted
# (for `benchmarks.*` and `tests.processes`).
if sys.path and Path(sys.path[0]).resolve() == ROOT / "benchmarks":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import environment, report  # noqa: E402
from benchmarks.ack import AckConfig  # noqa: E402
from benchmarks.ack import run_variant as run_ack_variant  # noqa: E402
from benchmarks.latency import LatencyConfig  # noqa: E402
from benchmarks.latency import run as run_latency  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


#: What `--quick` changes (a smoke test of the whole harness in well under a minute).
QUICK = {
    "requests": 300,
    "warmup": 50,
    "rounds": 1,
    "drain_s": 10.0,
    "triggers": 10,
    "latency_warmup": 2,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ack, lat = AckConfig(), LatencyConfig()
    defaults: dict[str, Any] = {
        "requests": ack.requests,
        "warmup": ack.warmup,
        "rounds": ack.rounds,
        "drain_s": ack.drain_s,
        "triggers": lat.triggers,
        "latency_warmup": lat.warmup,
    }
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--only", choices=("ack", "latency"), help="run one benchmark only")
    parser.add_argument("--tag", default="c1", help="results file suffix (default: c1)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small counts (unless given) for a smoke test; results go to results/raw/ only",
    )
    parser.add_argument(
        "--scratch", action="store_true", help="write the results to results/raw/ only"
    )
    parser.add_argument(
        "--wait-quiet-s",
        type=float,
        default=120.0,
        help="wait up to this long for the machine to be idle before starting (default 120)",
    )
    parser.add_argument(
        "--keep-redis-data",
        action="store_true",
        help="keep each system's Redis append-only file under results/raw/ (tens of MB)",
    )
    group = parser.add_argument_group("1. callback acknowledgement")
    group.add_argument("--requests", type=int, help=f"measured per phase (default {ack.requests})")
    group.add_argument("--warmup", type=int, help=f"warm-up per phase (default {ack.warmup})")
    group.add_argument("--concurrency", type=int, default=ack.concurrency)
    group.add_argument("--web-workers", type=int, default=ack.web_workers)
    group.add_argument(
        "--rounds", type=int, help=f"bare/assist rounds, worker stopped (default {ack.rounds})"
    )
    group.add_argument(
        "--worker-modes",
        type=_csv,
        default=ack.worker_modes,
        help="comma-separated: stopped,running (the RQ worker during the load)",
    )
    group.add_argument(
        "--ack-worker-class",
        choices=("fork", "simple"),
        default=ack.worker_class,
        help="ASSIST_WORKER_CLASS of the worker in the 'running' variant (default fork)",
    )
    group.add_argument("--max-phase-s", type=float, default=ack.max_phase_s)
    group.add_argument(
        "--drain-s",
        type=float,
        help=f"cap on waiting for the worker to rank the backlog (default {ack.drain_s:.0f})",
    )
    group.add_argument(
        "--redis-appendfsync",
        choices=("always", "everysec", "no"),
        help="diagnostic: CONFIG SET appendfsync on the system's Redis (default: leave always)",
    )
    group.add_argument(
        "--open-loop-fraction",
        type=float,
        default=ack.open_loop_fraction,
        help="after each assist phase (worker stopped), fresh callbacks at this fraction of its "
        "req/s, open loop (0: none; default %(default)s)",
    )
    group.add_argument("--open-loop-concurrency", type=int, default=ack.open_loop_concurrency)
    group = parser.add_argument_group("2. trigger -> ranked latency")
    group.add_argument("--triggers", type=int, help=f"per worker class (default {lat.triggers})")
    group.add_argument("--latency-warmup", type=int, help=f"default {lat.warmup}")
    group.add_argument("--worker-classes", type=_csv, default=lat.worker_classes)
    group.add_argument("--poll-ms", type=float, default=lat.poll_interval_s * 1000)
    group.add_argument("--latency-max-wall-s", type=float, default=lat.max_wall_s)
    args = parser.parse_args(argv)
    for name, default in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, QUICK[name] if args.quick else default)
    args.scratch = args.scratch or args.quick
    for mode in args.worker_modes:
        if mode not in ("stopped", "running"):
            parser.error(f"--worker-modes: unknown mode {mode!r}")
    for worker_class in args.worker_classes:
        if worker_class not in ("fork", "simple"):
            parser.error(f"--worker-classes: unknown class {worker_class!r}")
    if args.requests < 1 or args.concurrency < 1 or args.triggers < 1:
        parser.error("--requests, --concurrency and --triggers must be >= 1")
    if args.max_phase_s > 240:
        parser.error("--max-phase-s must stay well inside the ±300 s signature window")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    began = time.monotonic()
    date = started.strftime("%Y-%m-%d")
    run_id = f"{started.strftime('%Y-%m-%dT%H%M%S')}-{args.tag}" + ("-quick" if args.quick else "")
    raw_dir = RESULTS / "raw" / run_id
    raw_dir.mkdir(parents=True, exist_ok=True)
    ack_config = AckConfig(
        requests=args.requests,
        warmup=args.warmup,
        concurrency=args.concurrency,
        web_workers=args.web_workers,
        rounds=args.rounds,
        worker_modes=args.worker_modes,
        worker_class=args.ack_worker_class,
        max_phase_s=args.max_phase_s,
        drain_s=args.drain_s,
        redis_appendfsync=args.redis_appendfsync,
        keep_redis_data=args.keep_redis_data,
        open_loop_fraction=args.open_loop_fraction,
        open_loop_concurrency=args.open_loop_concurrency,
    )
    latency_config = LatencyConfig(
        triggers=args.triggers,
        warmup=args.latency_warmup,
        worker_classes=args.worker_classes,
        poll_interval_s=args.poll_ms / 1000,
        max_wall_s=args.latency_max_wall_s,
        web_workers=args.web_workers,
        keep_redis_data=args.keep_redis_data,
    )
    print("[bench] waiting for a quiet machine ...", flush=True)
    quiet = environment.wait_for_quiet(args.wait_quiet_s)
    if not quiet["quiet"]:
        print(f"[bench] WARNING: machine busy ({quiet['load_cores_last_2s']} cores) before the run")
    doc: dict[str, Any] = {
        "benchmark": "genesys-assist C1: callback acknowledgement; trigger -> ranked latency",
        "date": date,
        "started_at": started.isoformat(timespec="seconds"),
        "command": environment.command_line(),
        "argv": sys.argv,
        "git": environment.git_revision(),
        "machine": environment.machine(raw_dir),
        "machine_load_before_run": quiet,
        "versions": environment.versions(),
        "config": {"ack": asdict(ack_config), "latency": asdict(latency_config)},
        "raw_dir": str(raw_dir.relative_to(ROOT)),
        "ack": None,
        "latency": None,
    }
    if args.only in (None, "ack"):
        variants = []
        for mode in ack_config.worker_modes:
            print(f"[bench] callback acknowledgement, worker {mode} ...", flush=True)
            variants.append(
                run_ack_variant(ack_config, mode, raw_dir / f"ack-{mode}", raw_dir / "samples")
            )
        doc["ack"] = {"variants": variants}
    if args.only in (None, "latency"):
        print("[bench] trigger -> ranked latency ...", flush=True)
        doc["latency"] = run_latency(latency_config, raw_dir, raw_dir / "samples")
    doc["duration_s"] = round(time.monotonic() - began, 1)
    markdown = report.render(doc)
    out_dir = raw_dir if args.scratch else RESULTS
    stem = f"{date}-{args.tag}"
    (out_dir / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out_dir / f"{stem}.md").write_text(markdown)
    print(markdown)
    print(f"[bench] wrote {(out_dir / stem).relative_to(ROOT)}.json and .md", flush=True)
    failed = [
        v["mode"] for v in (doc["ack"] or {}).get("variants", []) if not v["verification"]["ok"]
    ]
    if failed:
        print(f"[bench] acknowledgement checks FAILED for worker {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
