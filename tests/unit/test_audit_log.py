"""AuditLog: one JSON line per event, whole lines even with several writer processes."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

from assist.core.audit import EventType, RecordEvent, verify_chain
from assist.stores.audit_log import AuditLog

PROCESSES = 4
EVENTS_PER_PROCESS = 200
PAYLOAD_WORDS = 512  # "xxx " * 512: 2 KB of data per event


def _filler(worker: int) -> str:
    letter = chr(ord("a") + worker)
    return f"{letter * 3} " * PAYLOAD_WORDS


def _write_events(path: str, worker: int) -> None:
    """Runs in a child process (module level, so the 'spawn' context can import it)."""
    log = AuditLog(path)
    filler = _filler(worker)
    for index in range(EVENTS_PER_PROCESS):
        log.append(
            RecordEvent.create(
                EventType.FEEDBACK_RECORDED, request_id=f"w{worker}-{index}", filler=filler
            )
        )


def read_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    assert data.endswith(b"\n")
    return data.decode().split("\n")[:-1]


def test_appended_events_are_json_lines_in_order(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "audit.jsonl"  # parents are created
    log = AuditLog(path)
    events = [
        RecordEvent.create(EventType.QUERY_REQUESTED, request_id="req_1", transcript="a@b.com"),
        RecordEvent.create(EventType.ERROR, request_id="req_2", note="multi\nline"),
    ]
    for event in events:
        log.append(event)
    lines = read_lines(path)
    unchained = [
        {k: v for k, v in json.loads(line).items() if k not in ("prev_hash", "hash")}
        for line in lines
    ]
    assert unchained == [e.to_record() for e in events]
    assert json.loads(lines[0])["data"]["transcript"] == "[EMAIL]"


def test_append_adds_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"earlier":true}\n')
    AuditLog(path).append(RecordEvent.create(EventType.ERROR, request_id="req_3"))
    lines = read_lines(path)
    assert json.loads(lines[0]) == {"earlier": True}
    assert json.loads(lines[1])["request_id"] == "req_3"


def test_concurrent_writer_processes_leave_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_write_events, args=(str(path), worker))
        for worker in range(PROCESSES)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=60)
    assert [p.exitcode for p in workers] == [0] * PROCESSES

    lines = read_lines(path)
    assert len(lines) == PROCESSES * EVENTS_PER_PROCESS
    seen = set()
    for line in lines:
        record = json.loads(line)
        worker = int(record["request_id"][1:].split("-")[0])
        # A line is one event's own bytes, never two writers' bytes spliced together.
        assert record["data"]["filler"] == _filler(worker)
        seen.add(record["request_id"])
    expected = {f"w{w}-{i}" for w in range(PROCESSES) for i in range(EVENTS_PER_PROCESS)}
    assert seen == expected
    # Four processes extended one hash chain.
    verify_chain(lines)
