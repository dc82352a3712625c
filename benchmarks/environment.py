"""What a result is only meaningful next to: the machine, the versions, the command, CPU time.

`machine()` and `versions()` are recorded with every run. `ProcessCpu` reads the CPU time a
process tree has used from `/proc` (Linux), so a benchmark can say how many CPU milliseconds
each request cost the server, Redis and the load generator: with everything sharing two
cores, that is the figure least disturbed by who else was running.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")

#: Distributions whose versions are recorded with every result (PyPI names).
PACKAGES = (
    "flask",
    "werkzeug",
    "gunicorn",
    "redis",
    "hiredis",
    "rq",
    "httpx",
    "pydantic",
    "standardwebhooks",
    "structlog",
    "gevent",
    "psutil",
    "torch",
    "sentence-transformers",
    "faiss-cpu",
    "onnxruntime",
)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def memory_total_gib() -> float | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def mount_of(path: Path) -> dict[str, str]:
    """The filesystem `path` lives on (Redis runs with `appendfsync always`: fsync matters)."""
    best: dict[str, str] = {}
    target = str(path.resolve())
    for line in _read("/proc/mounts").splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        device, point, fstype = fields[:3]
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best.get("mount_point", "")):
            best = {"device": device, "mount_point": point, "fstype": fstype}
    return best


def fsync_probe(directory: Path, count: int = 200) -> dict[str, float]:
    """Latency of a small append + fdatasync where Redis keeps its append-only file.

    Redis with `appendfsync always` does one such write + fdatasync per event-loop
    iteration that wrote anything, before it answers, so this bounds its write latency.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "fsync-probe.bin"
    block = b"x" * 256
    timings: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(count):
            started = time.perf_counter()
            os.write(fd, block)
            os.fdatasync(fd)
            timings.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    timings.sort()
    return {
        "count": count,
        "p50_ms": round(timings[len(timings) // 2], 3),
        "p99_ms": round(timings[min(len(timings) - 1, int(len(timings) * 0.99))], 3),
        "max_ms": round(timings[-1], 3),
    }


def machine(workdir: Path) -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cgroup_cpu_max": _read("/sys/fs/cgroup/cpu.max").strip() or None,
        "memory_total_gib": memory_total_gib(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "workdir_filesystem": mount_of(workdir),
        "append_fdatasync_latency": fsync_probe(workdir),
    }


def redis_server_version() -> str:
    from tests.redis_server import redis_server_binary

    out = subprocess.run(
        [redis_server_binary(), "--version"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip()


def versions() -> dict[str, Any]:
    packages: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "packages": packages,
        "redis_server": redis_server_version(),
    }


def git_revision() -> dict[str, Any]:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return out.stdout.strip()

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(status)}


def command_line() -> str:
    """The command as typed from the repository root (interpreter path made relative)."""
    interpreter = Path(sys.executable)
    try:
        shown = str(interpreter.relative_to(ROOT))
    except ValueError:
        shown = str(interpreter)
    script = Path(sys.argv[0]).resolve()
    try:
        script_shown = str(script.relative_to(ROOT))
    except ValueError:
        script_shown = sys.argv[0]
    return shlex.join([shown, script_shown, *sys.argv[1:]])


def relative(path: Path) -> str:
    """`path` relative to the repository root when it is inside it (portable results)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


# --- CPU accounting ----------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    raw = _read(f"/proc/{pid}/stat")
    if not raw:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    return raw[raw.rfind(")") + 2 :].split()


def _all_parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                parents[int(entry)] = int(fields[1])
    return parents


def tree_cpu_seconds(root_pid: int) -> float:
    """CPU seconds used by `root_pid`, its live descendants and the children they reaped.

    utime+stime of every live process plus cutime+cstime (children already waited for), so
    every CPU second of the tree is counted once, including RQ's short-lived work horses.
    """
    parents = _all_parents()
    tree = {root_pid}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    ticks = 0
    for pid in tree:
        fields = _stat_fields(pid)
        if fields is not None:
            # Fields 14-17 of proc(5) (utime, stime, cutime, cstime) are 11-14 here.
            ticks += sum(int(v) for v in fields[11:15])
    return ticks / CLK_TCK


def children_cpu_seconds(root_pid: int) -> dict[int, float]:
    """CPU seconds of each direct child (e.g. each gunicorn worker), to see load balance."""
    out: dict[int, float] = {}
    for pid, parent in _all_parents().items():
        if parent == root_pid:
            fields = _stat_fields(pid)
            if fields is not None:
                out[pid] = sum(int(v) for v in fields[11:15]) / CLK_TCK
    return out


def machine_ticks() -> dict[str, int]:
    """Machine-wide CPU ticks from /proc/stat: busy (everything but idle), idle, steal."""
    fields = [int(v) for v in _read("/proc/stat").splitlines()[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already inside user)
    idle = fields[3] + fields[4]
    busy = sum(fields[:8]) - idle
    return {"busy": busy, "idle": idle, "steal": fields[7]}


def machine_load(seconds: float) -> float:
    """Cores kept busy by the whole machine over the next `seconds` (0..nproc)."""
    before = machine_ticks()
    time.sleep(seconds)
    after = machine_ticks()
    return (after["busy"] - before["busy"]) / CLK_TCK / seconds


def wait_for_quiet(max_wait_s: float, threshold_cores: float = 0.15) -> dict[str, Any]:
    """Wait (bounded) until the machine is nearly idle: benchmarks share it with nothing else.

    Returns the load seen; a busy machine is recorded, not hidden.
    """
    started = time.monotonic()
    samples: list[float] = []
    while True:
        load = machine_load(2.0)
        samples.append(round(load, 2))
        waited = time.monotonic() - started
        if load <= threshold_cores or waited >= max_wait_s:
            return {
                "quiet": load <= threshold_cores,
                "load_cores_last_2s": round(load, 2),
                "waited_s": round(waited, 1),
                "threshold_cores": threshold_cores,
                "samples": samples,
            }


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuMeter:
    """CPU seconds of named process trees (and of this process) between `start` and `stop`."""

    pids: dict[str, int]

    def __post_init__(self) -> None:
        self._start: dict[str, float] = {}
        self._children_start: dict[str, dict[int, float]] = {}
        self.used: dict[str, float] = {}
        self.per_child: dict[str, list[float]] = {}
        self.machine: dict[str, Any] = {}
        self.wall_s = 0.0

    def _sample(self) -> dict[str, float]:
        sample = {name: tree_cpu_seconds(pid) for name, pid in self.pids.items()}
        sample["loadgen"] = self_cpu_seconds()
        return sample

    def start(self) -> None:
        self._children_start = {n: children_cpu_seconds(p) for n, p in self.pids.items()}
        self._start = self._sample()
        self._machine_start = machine_ticks()
        self._wall_start = time.monotonic()

    def stop(self) -> None:
        if not self._start:
            return  # never started (a run stopped at its wall-time cap before measuring)
        end = self._sample()
        machine_end = machine_ticks()
        self.wall_s = time.monotonic() - self._wall_start
        self.used = {name: round(end[name] - self._start[name], 3) for name in end}
        busy = (machine_end["busy"] - self._machine_start["busy"]) / CLK_TCK
        steal = (machine_end["steal"] - self._machine_start["steal"]) / CLK_TCK
        ours = sum(self.used.values())
        nproc = len(os.sched_getaffinity(0))
        self.machine = {
            "wall_s": round(self.wall_s, 3),
            "machine_busy_cores": round(busy / self.wall_s, 2) if self.wall_s else None,
            "measured_processes_cores": round(ours / self.wall_s, 2) if self.wall_s else None,
            # Everything else on the machine: other users' processes, kernel threads.
            "other_cores": round(max(busy - ours, 0.0) / self.wall_s, 2) if self.wall_s else None,
            "steal_cores": round(steal / self.wall_s, 2) if self.wall_s else None,
            "nproc": nproc,
        }
        for name, pid in self.pids.items():
            before = self._children_start.get(name, {})
            now = children_cpu_seconds(pid)
            self.per_child[name] = sorted(
                (round(now[c] - before.get(c, 0.0), 3) for c in now), reverse=True
            )


def add_output_arguments(parser: argparse.ArgumentParser, *, tag: str) -> None:
    """The options every standalone benchmark takes for where its results go
    (`record_standalone` reads them)."""
    parser.add_argument("--tag", default=tag)
    parser.add_argument("--out", type=Path, help="results directory (default benchmarks/results)")
    parser.add_argument("--scratch", action="store_true", help="write results to results/raw/")


def record_standalone(
    *,
    benchmark: str,
    title: str,
    output: argparse.Namespace,
    run: Callable[[Path], dict[str, Any]],
    render: Callable[[dict[str, Any]], str],
) -> dict[str, Any]:
    """Run one benchmark on its own (its script's `main`) and record it.

    `run(workdir)` measures; its result, with the command, git revision, machine and
    versions, goes to `<out>/<date>-<tag>.json`, and `render(result)` under a title to `.md`
    (printed too). `output`: the parsed `add_output_arguments` options; `--out` defaults to
    benchmarks/results (results/raw with `--scratch`).
    """
    results = ROOT / "benchmarks" / "results"
    started = datetime.now(UTC)
    tag: str = output.tag
    out: Path = output.out or (results / "raw" if output.scratch else results)
    workdir = out / "raw" / f"{started.strftime('%Y-%m-%dT%H%M%S')}-{tag}"
    result = run(workdir)
    doc = {
        "benchmark": benchmark,
        "date": started.strftime("%Y-%m-%d"),
        "command": command_line(),
        "git": git_revision(),
        "machine": machine(workdir),
        "versions": versions(),
    } | result
    markdown = f"# {title}, {doc['date']}\n\nCommand: `{doc['command']}`\n\n" + render(result)
    stem = f"{doc['date']}-{tag}"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown)
    print(markdown)
    return result
