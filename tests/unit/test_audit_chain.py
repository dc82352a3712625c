"""The audit log's hash chain: `assist-audit verify` holds on a clean log and names the first
line that was edited, removed or reordered; rotation carries the chain across files."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from assist.audit_cli import main as audit_main
from assist.core.audit import EventType, RecordEvent
from assist.stores.audit_log import AuditLog, rotated_name


def write(log: AuditLog, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        log.append(RecordEvent.create(EventType.FEEDBACK_RECORDED, request_id=f"req_{n}", n=n))


def verify(target: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = audit_main(["verify", str(target)])
    out, err = capsys.readouterr()
    return code, out + err


def test_a_clean_log_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    write(AuditLog(path), 20)
    code, message = verify(path, capsys)
    assert code == 0, message
    assert "20 lines" in message


@pytest.mark.parametrize("line_number", [1, 7, 20])
def test_an_edited_line_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line_number: int
) -> None:
    path = tmp_path / "audit.jsonl"
    write(AuditLog(path), 20)
    lines = path.read_text().splitlines()
    record = json.loads(lines[line_number - 1])
    record["data"]["n"] = 999  # what a tamperer would change
    lines[line_number - 1] = json.dumps(record, separators=(",", ":"), sort_keys=True)
    path.write_text("\n".join(lines) + "\n")
    code, message = verify(path, capsys)
    assert code == 1
    assert f"audit.jsonl:{line_number}: content does not match its hash" in message


def test_a_removed_line_breaks_the_next_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    write(AuditLog(path), 10)
    lines = path.read_text().splitlines()
    del lines[4]
    path.write_text("\n".join(lines) + "\n")
    code, message = verify(path, capsys)
    assert code == 1
    assert "audit.jsonl:5: prev_hash does not match" in message


def test_a_rewritten_hash_is_still_caught_by_the_next_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Recomputing the edited line's own hash moves the break to the line after it.
    from assist.core.audit import chained_line

    path = tmp_path / "audit.jsonl"
    write(AuditLog(path), 6)
    lines = path.read_text().splitlines()
    record = json.loads(lines[2])
    record["data"]["n"] = 999
    lines[2], _ = chained_line(record, record["prev_hash"])
    lines[2] = lines[2].rstrip("\n")
    path.write_text("\n".join(lines) + "\n")
    code, message = verify(path, capsys)
    assert code == 1
    assert "audit.jsonl:4: prev_hash does not match" in message


def test_rotation_carries_the_chain_across_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    write(log, 5)
    yesterday = time.time() - 86_400
    os.utime(path, (yesterday, yesterday))
    write(log, 5, start=5)  # the first write of a new day rotates
    day = time.strftime("%Y-%m-%d", time.gmtime(yesterday))
    rotated = rotated_name(path, day)
    assert rotated.exists()
    assert len(rotated.read_text().splitlines()) == 5
    assert len(path.read_text().splitlines()) == 5
    first_new = json.loads(path.read_text().splitlines()[0])
    last_old = json.loads(rotated.read_text().splitlines()[-1])
    assert first_new["prev_hash"] == last_old["hash"]
    code, message = verify(tmp_path, capsys)
    assert code == 0, message
    assert "10 lines in 2 file(s)" in message
    # Dropping the whole rotated day is seen at the first line of the next file.
    rotated.unlink()
    code, message = verify(tmp_path, capsys)
    assert code == 1 and "audit.jsonl:1: prev_hash" in message


def test_never_rotating_keeps_one_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, rotate="never")
    write(log, 2)
    yesterday = time.time() - 86_400
    os.utime(path, (yesterday, yesterday))
    write(log, 2, start=2)
    assert [p.name for p in tmp_path.iterdir()] == ["audit.jsonl"]


def test_verify_without_files_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, message = verify(tmp_path, capsys)
    assert code == 2 and "no audit files" in message
