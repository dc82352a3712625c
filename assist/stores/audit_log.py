"""Append-only, tamper-evident JSONL audit log, safe with several writer processes.

Each event is one line, written with a single `write` on a file opened with `O_APPEND`, under
an exclusive `flock`, so lines from several processes never interleave.

Every line carries `prev_hash` (the `hash` of the line before it) and `hash`: sha256 over
`prev_hash` and the record (`assist.core.audit.chain_hash`). Editing, removing or reordering a
line breaks the chain at that point, and `assist-audit verify` names the first broken line.
The previous hash is read from the file's last line under the same lock that guards the
append, so concurrent writers extend one chain.

Daily rotation (`ASSIST_AUDIT_ROTATE=daily`, the default): the first write of a new UTC day
renames the file to `<stem>-<YYYY-MM-DD><suffix>` (the day of its last write) and starts a new
one whose first line chains to the last line of the rotated file, so the chain runs across
files. Events arrive already redacted (`RecordEvent.create`).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from assist.core.audit import GENESIS, RecordEvent, chained_line

#: The last line is looked for in the file's last bytes, read in chunks from this size up to
#: `TAIL_MAX_BYTES`: one small read per append for the usual line of well under 4 KB.
TAIL_CHUNK_BYTES = 4096
TAIL_MAX_BYTES = 1024 * 1024
#: How far back `append_once` looks for the event (a retried job's lines are minutes old at
#: most: tens of thousands of lines at full load).
ONCE_LOOKBACK_BYTES = 32 * 1024 * 1024
_OPEN_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT


def rotated_name(path: Path, day: str) -> Path:
    return path.with_name(f"{path.stem}-{day}{path.suffix}")


def last_hash(fd: int) -> str | None:
    """The `hash` of the last line of an open file, None if it has no (chained) line."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    chunk = TAIL_CHUNK_BYTES
    while True:
        start = max(0, size - chunk)
        tail = os.pread(fd, size - start, start).rstrip(b"\n")
        newline = tail.rfind(b"\n")
        # The whole last line is in hand once a newline precedes it, or the file starts there.
        if newline >= 0 or start == 0 or chunk >= TAIL_MAX_BYTES:
            break
        chunk *= 4
    try:
        record = json.loads(tail[newline + 1 :])
    except ValueError:
        return None
    value = record.get("hash") if isinstance(record, dict) else None
    return value if isinstance(value, str) else None


def _recent_bytes(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    start = max(0, size - ONCE_LOOKBACK_BYTES)
    return os.pread(fd, size - start, start)


def _event_needle(event_id: str) -> bytes:
    return json.dumps({"event_id": event_id}, separators=(",", ":"))[1:-1].encode()


class AuditLog:
    def __init__(self, path: str | Path, *, rotate: Literal["daily", "never"] = "daily") -> None:
        self.path = Path(path)
        self.rotate = rotate

    def append(self, event: RecordEvent) -> None:
        self.append_many([event])

    def append_once(self, event: RecordEvent) -> bool:
        """Append unless a line with this `event_id` is among the file's last
        `ONCE_LOOKBACK_BYTES` (checked under the append lock); returns whether it appended.

        For the rare retry of work whose lines may already be written (a job whose worker
        died after writing some of them): the normal path never pays for the scan.
        """
        return self.append_many([event], once=True) == 1

    def append_many(self, events: Sequence[RecordEvent], *, once: bool = False) -> int:
        """Append the events in order, chained, with one lock and one write; returns how many
        were appended (`once`: those whose `event_id` is not in the file's recent lines)."""
        if not events:
            return 0
        with self._locked_file() as fd:
            if once:
                recent = _recent_bytes(fd)
                events = [e for e in events if _event_needle(e.event_id) not in recent]
                if not events:
                    return 0
            prev = last_hash(fd) or self._carried_hash() or GENESIS
            lines = []
            for event in events:
                line, prev = chained_line(event.to_record(), prev)
                lines.append(line)
            data = "".join(lines).encode()
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
        return len(events)

    def _locked_file(self) -> _Locked:
        return _Locked(self)

    def _carried_hash(self) -> str | None:
        """The last hash of the newest rotated file, for a fresh file after a rotation."""
        rotated = sorted(self.path.parent.glob(f"{self.path.stem}-*{self.path.suffix}"))
        if not rotated:
            return None
        fd = os.open(rotated[-1], os.O_RDONLY)
        try:
            return last_hash(fd)
        finally:
            os.close(fd)


class _Locked:
    """Open the current file under an exclusive lock, rotating it first when the day changed."""

    def __init__(self, log: AuditLog) -> None:
        self._log = log
        self._fd = -1

    def __enter__(self) -> int:
        path = self._log.path
        while True:
            try:
                fd = os.open(path, _OPEN_FLAGS, 0o640)
            except FileNotFoundError:  # its directory is missing (not checked on every append)
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, _OPEN_FLAGS, 0o640)
            fcntl.flock(fd, fcntl.LOCK_EX)
            # Another process may have rotated the file while we waited for the lock.
            if os.fstat(fd).st_ino != _inode(path):
                os.close(fd)
                continue
            if self._log.rotate == "daily" and self._rotate_if_old(fd):
                os.close(fd)  # the lock goes with it; the next loop opens the new file
                continue
            self._fd = fd
            return fd

    def _rotate_if_old(self, fd: int) -> bool:
        stat = os.fstat(fd)
        if stat.st_size == 0:
            return False
        last_day = datetime.fromtimestamp(stat.st_mtime, UTC).date()
        if last_day >= datetime.now(UTC).date():
            return False
        target = rotated_name(self._log.path, last_day.isoformat())
        if target.exists():  # never overwrite a rotated file
            target = target.with_name(f"{target.stem}.{stat.st_ino}{target.suffix}")
        os.rename(self._log.path, target)
        return True

    def __exit__(self, *exc: object) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None
