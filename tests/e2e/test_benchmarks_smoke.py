"""The benchmark suite at tiny sizes, in the test command, so the benchmarks never rot.

Runs `benchmarks/suite.py --smoke` exactly as a user would (its own process; every benchmark
starts its own redis-server, emulator, gunicorn, workers and stream process on loopback) with
its results in a temporary directory, never in benchmarks/results. No timing is asserted: the
machine running the tests is not a benchmark machine. What is asserted is that every benchmark
ran, that the table has a row for every path of issue 8's targets with numbers in it, and that
each benchmark's own accounting passed (no acknowledgement without its job, no feed event or
stream event lost, every job finished).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.suite import BENCHMARKS, PROFILES

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"


def expected_rows() -> set[str]:
    jobs = {f"jobs_{c}_{n}" for c, n in PROFILES["smoke"]["jobs"].configs}
    return jobs | {
        "ack_throughput",
        "ack_paced_p99",
        "latency_sequential_simple",
        "trigger_visible_rate",
        "feed_paced",
        "feed_burst",
        "feed_memory",
        "stream_throughput",
        "stream_latency",
        "coldstart_web",
        "coldstart_worker",
        "kb_query",
        "kb_ingest",
    }


def _snapshot(directory: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in directory.rglob("*") if p.is_file()}


@pytest.mark.timeout(300)
def test_the_suite_runs_every_benchmark_and_accounts_for_everything(tmp_path: Path) -> None:
    before = _snapshot(RESULTS)
    out = tmp_path / "results"
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "suite.py"), "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    report = completed.stdout[-6000:] + completed.stderr[-3000:]
    assert completed.returncode == 0, report
    [document] = out.glob("*-suite-smoke.json")
    doc = json.loads(document.read_text())
    markdown = document.with_suffix(".md").read_text()

    assert doc["errors"] == {}, doc["errors"]
    assert set(doc["checks"]) == set(BENCHMARKS)
    failed = {name: check for name, check in doc["checks"].items() if not check["ok"]}
    assert not failed, failed

    rows = {row["key"]: row for row in doc["rows"]}
    assert expected_rows() <= set(rows), sorted(expected_rows() - set(rows))
    for key, row in rows.items():
        assert isinstance(row["measured"], int | float), (key, row)
        assert math.isfinite(row["measured"]), (key, row)
        if row["ratio"] is not None:
            assert math.isfinite(row["ratio"]), (key, row)
        assert row["path"] in markdown
    for key in ("ack_throughput", "jobs_simple_1", "feed_paced", "kb_query", "coldstart_web"):
        assert isinstance(rows[key]["baseline"], int | float), (key, rows[key])
    # The machine, the versions and the command are in every result.
    assert doc["machine"]["nproc"] >= 1 and doc["machine"]["cpu_model"]
    assert doc["versions"]["packages"]["rq"]
    assert "suite.py --smoke" in doc["command"]
    # Nothing was written to the repository's results.
    assert _snapshot(RESULTS) == before
