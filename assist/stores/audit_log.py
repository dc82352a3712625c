"""Append-only JSONL audit log, safe with several writer processes.

Each event is one line written with a single `write` on a file opened with `O_APPEND`, under
an exclusive `flock`. O_APPEND makes every write land at the end of the file; the lock keeps
a long line from interleaving with another process's line on filesystems where large appends
are not atomic. Events arrive already redacted (`RecordEvent.create`).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from assist.core.audit import RecordEvent


class AuditLog:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, event: RecordEvent) -> None:
        data = event.to_audit_line().encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                written = 0
                while written < len(data):
                    written += os.write(fd, data[written:])
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
