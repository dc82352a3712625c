"""Fault: RQ workers killed with SIGKILL in the middle of jobs while triggers pour in.

Two workers process a load of N triggers (each: a submission job, the emulator's signed
callback to the web tier, a ranking job). Several times during the load, a worker caught in
the middle of a submission or ranking job (frozen with SIGSTOP, its RQ worker hash read, then
killed) dies with SIGKILL together with its scheduler, as a container would, and a
replacement starts. RQ's abandoned-job cleanup, tuned in `workers/rq_worker.py`, must retry
every job the dead worker held within seconds, and every acknowledged trigger must end
`completed` with exactly one `suggestions_ranked` audit line and one entry on its
conversation's feed.

Tuning under test (README "Workers"): job heartbeat 1 s, abandoned after 3 s, maintenance
every 5 s, so a killed job is retried within about 3-8 s (production defaults 5/30/10 s).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from tests.conftest import wait_for
from tests.faults.figures import FaultFigures
from tests.faults.support import (
    audit_records,
    feed_lengths,
    job_status,
    per_request,
    request_statuses,
    rq_worker_of_pid,
)
from tests.processes import ProcessSystem

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

TRIGGERS = 200
RATE_PER_S = 25
KILLS = 3
SENDERS = 8


@dataclass
class Kill:
    worker: str
    at: float
    job_id: str
    abandoned: bool
    recovered_s: float | None = None


@pytest.fixture
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessSystem]:
    running = ProcessSystem(
        tmp_path_factory.mktemp("fault-worker-kill"),
        extra_env={
            "ASSIST_WORKER_HEARTBEAT_S": "1",
            "ASSIST_WORKER_ABANDONED_AFTER_S": "3",
            "ASSIST_WORKER_MAINTENANCE_INTERVAL_S": "5",
            # Nothing may expire while workers are being killed: only ranking counts here.
            "ASSIST_REQUEST_EXPIRY_S": "600",
        },
    )
    with running:
        running.start_worker("worker-2")
        yield running


def catch_busy_worker(
    system: ProcessSystem, names: list[str], deadline: float, killed: set[str]
) -> Kill | None:
    """Freeze workers in turn until one is in the middle of a ranking job (or, after a few
    seconds without one, a submission job) not killed before; kill it (with its scheduler)
    and return what it was doing.

    A job killed twice is retried the second time after 5 s by RQ's scheduler, which the
    kill may have taken down too (RQ keeps a dead scheduler's lock for 60 s): a minute, not
    seconds, and not this scenario (README "Workers")."""
    client = system.redis_client()
    rank_only_until = time.monotonic() + 3
    try:
        while time.monotonic() < deadline:
            for name in names:
                process = system.processes[name]
                os.kill(process.pid, signal.SIGSTOP)
                worker = rq_worker_of_pid(client, process.pid) or {}
                job_id = worker.get("current_job", "")
                wanted = ("rank-",) if time.monotonic() < rank_only_until else ("rank-", "submit-")
                if (
                    job_id.startswith(wanted)
                    and job_id not in killed
                    and job_status(client, job_id) == "started"
                ):
                    at = time.monotonic()
                    system.kill_group(name, signal.SIGKILL)
                    return Kill(name, at, job_id, abandoned=job_status(client, job_id) == "started")
                os.kill(process.pid, signal.SIGCONT)
            time.sleep(0.01)
        return None
    finally:
        client.close()


def test_workers_killed_mid_job_lose_and_duplicate_nothing(system: ProcessSystem) -> None:
    acknowledged: dict[str, str] = {}  # request id -> conversation id
    statuses: list[int] = []
    lock = threading.Lock()

    def send(index: int) -> None:
        conversation_id = f"fault-kill-{index}"
        response = system.trigger(
            conversation_id=conversation_id, transcript="refund a double charge"
        )
        with lock:
            statuses.append(response.status_code)
            if response.status_code == 202:
                acknowledged[response.json()["request_id"]] = conversation_id

    # Warm up: the first submission fetches the Genesys token under a Redis lock; a worker
    # killed while holding it would stall every other one until the lock times out (30 s),
    # which is not what this scenario is about.
    warm = system.trigger(conversation_id="fault-kill-warm-up", transcript="refund")
    assert system.wait_terminal(warm.json()["request_id"])["status"] == "completed"
    started = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=SENDERS)
    futures: list[Future[None]] = []

    def load() -> None:
        for index in range(TRIGGERS):
            futures.append(pool.submit(send, index))
            time.sleep(1 / RATE_PER_S)

    loader = threading.Thread(target=load, name="load", daemon=True)
    loader.start()
    time.sleep(1.5)  # the workers are busy by now
    kills: list[Kill] = []
    workers = ["worker", "worker-2"]
    for number in range(KILLS):
        kill = catch_busy_worker(system, workers, time.monotonic() + 10, {k.job_id for k in kills})
        assert kill is not None, "no worker was caught in the middle of a job"
        kills.append(kill)
        replacement = f"worker-r{number}"
        system.start_worker(replacement)
        workers = [w for w in workers if w != kill.worker] + [replacement]
        time.sleep(1.5)
    loader.join(timeout=60)
    for future in futures:
        future.result(timeout=60)
    pool.shutdown()
    load_s = time.monotonic() - started

    client = system.redis_client()

    def all_done() -> bool:
        found = request_statuses(client, list(acknowledged))
        now = time.monotonic()
        for kill in kills:
            # Recovered once the abandoned job itself has run again to the end.
            if kill.recovered_s is None and job_status(client, kill.job_id) == "finished":
                kill.recovered_s = now - kill.at
        done = all(k.recovered_s is not None for k in kills if k.abandoned)
        return done and all(status == "completed" for status in found.values())

    wait_for(all_done, timeout_s=60, interval_s=0.2, what="every acknowledged trigger ranked")
    settled_s = time.monotonic() - kills[-1].at
    time.sleep(1)  # a duplicate ranking, if any, would be written by now
    final = request_statuses(client, list(acknowledged))
    ranked = per_request(audit_records(system, "suggestions_ranked"))
    del ranked[warm.json()["request_id"]]
    feeds = feed_lengths(client, acknowledged.values())
    client.close()

    processed = [r for r in acknowledged if final[r] == "completed" and ranked[r] >= 1]
    duplicated = {r for r in acknowledged if ranked[r] > 1 or feeds[acknowledged[r]] > 1} | {
        r for r in ranked if r not in acknowledged
    }
    abandoned = [k for k in kills if k.abandoned]
    # Retries that found the ranking committed but its records unwritten (written by them).
    replayed = sum(
        path.read_text().count("records.pending_replayed") for path in system.logs.glob("*.log")
    )
    recoveries = [k.recovered_s for k in abandoned if k.recovered_s is not None]
    figures = FaultFigures(
        scenario="worker SIGKILL mid-job (2 workers, RQ tuned)",
        sent=TRIGGERS,
        acknowledged=len(acknowledged),
        processed=len(processed),
        lost=len(acknowledged) - len(processed),
        duplicated=len(duplicated),
        recovery_s=max(recoveries) if recoveries else None,
        notes=(
            f"{len(kills)} kills mid-job ({', '.join(k.job_id.split('-')[0] for k in kills)}), "
            f"each job retried and finished {', '.join(f'{s:.1f}' for s in recoveries)} s "
            "after its kill; "
            f"{replayed} of them found the ranking committed and wrote its records; "
            f"all ranked {settled_s:.1f} s after the last kill; load {load_s:.1f} s; "
            f"non-202: {len(statuses) - statuses.count(202)}"
        ),
    )
    figures.check()
    assert len(abandoned) == len(kills), "a kill left no job behind: nothing was exercised"
    assert max(recoveries) < 15, "abandoned jobs were not retried within seconds"
