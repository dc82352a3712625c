"""Provider faults (issue 7 item 1): rate limits on half the calls, then a burst of 5xx.

Real processes (redis-server, emulator, gunicorn, four RQ workers sharing one Redis) and the
public API only. Every trigger has its own conversation id, so the emulator's `rest_calls`
records (every provider call, with its arrival time, status and `Retry-After`) give the
attempts of each query.

1. `rate_limit_ratio=0.5`, `Retry-After: 1`: every acknowledged request ends ranked, attempts
   per query stay within `QUERY_SUBMIT_ATTEMPTS x GENESYS_MAX_ATTEMPTS`, no call of a query
   follows a 429 sooner than its `Retry-After`, and no circuit opens (429 is not a failure).
2. The provider answers 503 to everything for `BURST_S` seconds, triggers keep coming: the
   async-query circuit opens (shared by the four workers), calls drop to probes, every request
   completes after the burst or fails visibly (`failed` + a `query_failed` audit line), none
   stays pending. The same burst is then run with the breakers off (workers restarted with
   `ASSIST_GENESYS_CIRCUIT_FAILURES=0`) for the "no retry storm" comparison of calls/s.
"""

from __future__ import annotations

import itertools
import json
import statistics
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Worker

from tests.faults.figures import FaultFigures
from tests.processes import ProcessSystem

pytestmark = pytest.mark.e2e

WORKERS = 4
MAX_ATTEMPTS = 5  # ASSIST_GENESYS_MAX_ATTEMPTS: HTTP attempts per call
SUBMIT_ATTEMPTS = 6  # ASSIST_QUERY_SUBMIT_ATTEMPTS: submission runs that send calls
ATTEMPT_BOUND = SUBMIT_ATTEMPTS * MAX_ATTEMPTS  # provider calls per query (no 401s here)
CIRCUIT_FAILURES = 5
OPEN_S = 3.0
BURST_S = 10.0
CIRCUIT_KEY = "assist:v1:genesys:circuit:async-query"
TERMINAL = ("completed", "failed", "expired")
#: The audit line that makes a request's end visible, per final status other than completed.
VISIBLE_END = {"failed": "query_failed", "expired": "request_expired"}
TRANSCRIPT = "customer: I was charged twice on my bill and I want a refund"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessSystem]:
    env = {
        "ASSIST_GENESYS_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "ASSIST_QUERY_SUBMIT_ATTEMPTS": str(SUBMIT_ATTEMPTS),
        "ASSIST_GENESYS_CIRCUIT_FAILURES": str(CIRCUIT_FAILURES),
        "ASSIST_GENESYS_CIRCUIT_OPEN_S": str(OPEN_S),
        "ASSIST_REQUEST_EXPIRY_S": "120",
    }
    with ProcessSystem(tmp_path_factory.mktemp("provider-faults"), extra_env=env) as running:
        for n in range(2, WORKERS + 1):
            running.start_worker(f"worker{n}")
        wait_workers(running, WORKERS)
        # One query while the emulator is healthy: the OAuth token is then cached in Redis.
        warm = running.trigger(conversation_id="warm-up", transcript=TRANSCRIPT).json()
        running.wait_terminal(warm["request_id"])
        yield running


@pytest.fixture(autouse=True)
def _clean_emulator(system: ProcessSystem) -> Iterator[None]:
    system.emulator.post("/emulator/reset").raise_for_status()
    yield
    system.emulator.post("/emulator/reset").raise_for_status()


# --- driving and reading ----------------------------------------------------------------------


def wait_workers(system: ProcessSystem, count: int, timeout_s: float = 60) -> None:
    """Until exactly `count` RQ workers are registered (started ones up, stopped ones gone)."""
    connection = redis.Redis.from_url(system.redis.url)
    try:
        deadline = time.monotonic() + timeout_s
        while Worker.count(connection=connection) != count:
            assert time.monotonic() < deadline, "the workers did not come up"
            time.sleep(0.2)
    finally:
        connection.close()


@dataclass
class Sent:
    """Triggers sent (conversation id -> request id, None when not acknowledged)."""

    requests: dict[str, str | None] = field(default_factory=dict)

    @property
    def acknowledged(self) -> dict[str, str]:
        return {c: r for c, r in self.requests.items() if r is not None}


def send_steadily(system: ProcessSystem, prefix: str, count: int, per_s: float) -> Sent:
    sent = Sent()
    start = time.monotonic()
    for i in range(count):
        delay = start + i / per_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        conversation_id = f"{prefix}-{i}"
        response = system.trigger(conversation_id=conversation_id, transcript=TRANSCRIPT)
        sent.requests[conversation_id] = (
            response.json()["request_id"] if response.status_code == 202 else None
        )
    return sent


def wait_all(system: ProcessSystem, request_ids: list[str], timeout_s: float) -> dict[str, Any]:
    """Views of every request once all are terminal, or of whatever they are at the deadline."""
    deadline = time.monotonic() + timeout_s
    views: dict[str, Any] = {}
    pending = list(request_ids)
    while pending and time.monotonic() < deadline:
        still = []
        for request_id in pending:
            view = system.desk.get(f"/v1/suggestions/{request_id}").json()
            views[request_id] = view
            if view.get("status") not in TERMINAL:
                still.append(request_id)
        pending = still
        if pending:
            time.sleep(0.5)
    return views


def audit(system: ProcessSystem) -> list[dict[str, Any]]:
    path: Path = system.audit_path
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def ts(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(record["ts"]).timestamp()


def query_calls(system: ProcessSystem) -> dict[str, list[dict[str, Any]]]:
    """The async-query provider calls the emulator received, per conversation, in time order."""
    per_conversation: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for call in system.records()["rest_calls"]:
        if call["route"] == "knowledge_query" and call["conversation_id"]:
            per_conversation[call["conversation_id"]].append(call)
    for calls in per_conversation.values():
        calls.sort(key=lambda c: c["at"])
    return per_conversation


def retry_after_violations(calls: dict[str, list[dict[str, Any]]]) -> int:
    """Calls of a query sent sooner after one of its 429s than that 429's Retry-After."""
    return sum(
        1
        for made in calls.values()
        for previous, following in itertools.pairwise(made)
        if previous["status_code"] == 429
        and previous["retry_after_s"] is not None
        and following["at"] - previous["at"] < previous["retry_after_s"]
    )


def circuit_opens(system: ProcessSystem) -> int:
    client = system.redis_client()
    try:
        return int(client.hget(CIRCUIT_KEY, "opens") or 0)
    finally:
        client.close()


@dataclass
class Outcome:
    figures: FaultFigures
    completed: int
    failed: int
    attempts: list[int]


def outcome_of(system: ProcessSystem, scenario: str, sent: Sent, views: dict[str, Any]) -> Outcome:
    """Processed = ranked, or failed/expired with its audit line; lost = anything else."""
    records = audit(system)
    by_type: dict[str, Counter[str]] = defaultdict(Counter)
    for record in records:
        if record.get("request_id"):
            by_type[record["type"]][record["request_id"]] += 1
    acknowledged = sent.acknowledged
    completed = failed = processed = 0
    for request_id in acknowledged.values():
        status = views.get(request_id, {}).get("status")
        if status == "completed" and by_type["suggestions_ranked"][request_id]:
            completed += 1
        elif by_type[VISIBLE_END.get(status or "", "")][request_id]:
            failed += 1  # failed or expired, with its audit line
        else:
            continue
        processed += 1
    duplicated = sum(
        1 for request_id in acknowledged.values() if by_type["suggestions_ranked"][request_id] > 1
    )
    calls = query_calls(system)
    attempts = [len(calls.get(conversation_id, [])) for conversation_id in acknowledged]
    figures = FaultFigures(
        scenario,
        sent=len(sent.requests),
        acknowledged=len(acknowledged),
        processed=processed,
        lost=len(acknowledged) - processed,
        duplicated=duplicated,
    )
    return Outcome(figures, completed, failed, attempts)


def attempts_note(attempts: list[int]) -> str:
    return (
        f"provider calls/query max {max(attempts)} mean {statistics.mean(attempts):.2f} "
        f"(bound {ATTEMPT_BOUND})"
    )


# --- phase 1: 429 with Retry-After on half the calls ------------------------------------------


@pytest.mark.timeout(150)
def test_rate_limits_on_half_the_calls_are_waited_out(system: ProcessSystem) -> None:
    opens_before = circuit_opens(system)
    system.faults(rate_limit_ratio=0.5, retry_after_s=1)
    started = time.monotonic()
    sent = send_steadily(system, "rl", count=60, per_s=5)
    views = wait_all(system, list(sent.acknowledged.values()), timeout_s=90)
    elapsed = time.monotonic() - started
    system.faults(rate_limit_ratio=0.0)

    result = outcome_of(system, "provider 429 on 50% of calls (Retry-After 1 s)", sent, views)
    calls = query_calls(system)
    violations = retry_after_violations(calls)
    limited = sum(1 for made in calls.values() for c in made if c["status_code"] == 429)
    opens = circuit_opens(system) - opens_before
    result.figures.notes = (
        f"{attempts_note(result.attempts)}; {limited} answered 429; Retry-After violations "
        f"{violations}; circuit opens {opens}; all ranked in {elapsed:.1f} s"
    )
    result.figures.check()
    assert result.completed == len(sent.acknowledged), "every request ends ranked"
    assert max(result.attempts) <= ATTEMPT_BOUND
    assert violations == 0
    assert opens == 0, "429 is the provider asking us to wait, not a failure"
    assert limited > 0


# --- phase 2: a burst of 503s, with and without the circuit breakers --------------------------


@dataclass
class Burst:
    sent: Sent
    start: float
    end: float


def run_burst(system: ProcessSystem, prefix: str) -> Burst:
    """Triggers at 4/s: 3 s healthy, `BURST_S` s of 503 to everything, 12 s healthy again."""
    per_s, before_s, after_s = 4.0, 3.0, 12.0
    count = int((before_s + BURST_S + after_s) * per_s)
    result: list[Sent] = []
    sender = threading.Thread(
        target=lambda: result.append(send_steadily(system, prefix, count, per_s)), daemon=True
    )
    sender.start()
    time.sleep(before_s)
    system.faults(server_error_ratio=1.0)
    start = time.time()
    time.sleep(BURST_S)
    system.faults(server_error_ratio=0.0)
    end = time.time()
    sender.join(timeout=after_s + 30)
    assert result, "the sender did not finish"
    return Burst(result[0], start, end)


def calls_per_s(system: ProcessSystem, start: float, end: float) -> float:
    calls = [c for made in query_calls(system).values() for c in made if start <= c["at"] < end]
    return len(calls) / (end - start)


def recovery_s(system: ProcessSystem, burst: Burst) -> float | None:
    """From the burst's end to the first ranking of a query accepted after it."""
    accepted_after = {
        conversation_id
        for conversation_id, made in query_calls(system).items()
        if any(c["status_code"] == 202 and c["at"] >= burst.end for c in made)
    }
    request_ids = {burst.sent.requests[c] for c in accepted_after if c in burst.sent.requests}
    ranked = [
        ts(r)
        for r in audit(system)
        if r["type"] == "suggestions_ranked" and r.get("request_id") in request_ids
    ]
    return min(ranked) - burst.end if ranked else None


def restart_workers(system: ProcessSystem, **env: str) -> None:
    system.env.update(env)
    names = ["worker", *(f"worker{n}" for n in range(2, WORKERS + 1))]
    for name in names:
        system.stop_process(name)
    wait_workers(system, 0)
    for name in names:
        system.start_worker(name)
    wait_workers(system, WORKERS)


@pytest.mark.timeout(300)
def test_a_server_error_burst_opens_the_circuit_and_every_request_ends(
    system: ProcessSystem,
) -> None:
    opens_before = circuit_opens(system)
    burst = run_burst(system, "burst")
    views = wait_all(system, list(burst.sent.acknowledged.values()), timeout_s=120)
    opens = circuit_opens(system) - opens_before
    rate = calls_per_s(system, burst.start, burst.end)
    late_rate = calls_per_s(system, burst.start + BURST_S / 2, burst.end)
    with_breaker = outcome_of(
        system, f"provider 503 burst {BURST_S:.0f} s, circuit breaker", burst.sent, views
    )
    with_breaker.figures.recovery_s = recovery_s(system, burst)
    scheduled = sum(
        1
        for r in audit(system)
        if r["type"] == "query_retry_scheduled" and r["data"].get("provider") == "async-query"
    )

    # The same burst with the breakers off, for the comparison.
    system.emulator.post("/emulator/reset").raise_for_status()
    restart_workers(system, ASSIST_GENESYS_CIRCUIT_FAILURES="0")
    try:
        plain = run_burst(system, "plain")
        plain_views = wait_all(system, list(plain.sent.acknowledged.values()), timeout_s=150)
        plain_rate = calls_per_s(system, plain.start, plain.end)
        plain_late_rate = calls_per_s(system, plain.start + BURST_S / 2, plain.end)
        without = outcome_of(
            system, f"provider 503 burst {BURST_S:.0f} s, no breaker", plain.sent, plain_views
        )
        without.figures.recovery_s = recovery_s(system, plain)
    finally:
        restart_workers(system, ASSIST_GENESYS_CIRCUIT_FAILURES=str(CIRCUIT_FAILURES))

    with_breaker.figures.notes = (
        f"ranked {with_breaker.completed}, failed visibly {with_breaker.failed}; "
        f"provider calls during the burst {rate:.2f}/s ({late_rate:.2f}/s in its 2nd half) vs "
        f"{plain_rate:.2f}/s ({plain_late_rate:.2f}/s) without breaker; circuit opens {opens}; "
        f"{scheduled} submissions deferred; {attempts_note(with_breaker.attempts)}"
    )
    without.figures.notes = (
        f"ranked {without.completed}, failed visibly {without.failed}; provider calls during "
        f"the burst {plain_rate:.2f}/s ({plain_late_rate:.2f}/s in its 2nd half); "
        f"{attempts_note(without.attempts)}"
    )
    with_breaker.figures.check()
    without.figures.check()
    assert opens >= 1, "the async-query circuit never opened"
    assert max(with_breaker.attempts) <= ATTEMPT_BOUND
    assert max(without.attempts) <= ATTEMPT_BOUND
    assert late_rate < plain_late_rate, "the open circuit did not cut the calls"
    assert with_breaker.figures.recovery_s is not None, "nothing ranked after the burst"
