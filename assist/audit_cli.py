"""`assist-audit verify <file or directory>`: check the audit log's hash chain.

A directory is checked as one chain: its rotated files (`<stem>-YYYY-MM-DD.jsonl`) by date,
then the current file. Exit status 0 when the chain holds, 1 with the first broken line named
(`file:line: why`), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from assist.core.audit import GENESIS, ChainBreak, verify_chain

_ROTATED = re.compile(r"-\d{4}-\d{2}-\d{2}(\.\d+)?$")


def chain_files(target: Path) -> list[Path]:
    """The files of a chain, oldest first."""
    if target.is_file():
        return [target]
    files = sorted(p for p in target.glob("*.jsonl") if p.is_file())
    rotated = [p for p in files if _ROTATED.search(p.stem)]
    current = [p for p in files if not _ROTATED.search(p.stem)]
    return rotated + current


def verify(target: Path) -> tuple[int, str]:
    """(lines checked, message); raises `ChainBreak` with the file in its message."""
    files = chain_files(target)
    if not files:
        raise FileNotFoundError(f"{target}: no audit files")
    prev = GENESIS
    total = 0
    for path in files:
        lines = path.read_text(encoding="utf-8").splitlines()
        if target.is_file() and lines:
            # A single (possibly rotated) file: its chain starts where its first line says.
            first = _first_prev(lines[0])
            prev = first if first is not None else prev
        try:
            prev = verify_chain(lines, prev)
        except ChainBreak as exc:
            raise ChainBreak(exc.line, f"{path}:{exc.line}: {exc.reason}") from None
        total += len(lines)
    return total, f"{total} lines in {len(files)} file(s): the chain holds (last hash {prev})"


def _first_prev(line: str) -> str | None:
    import json

    try:
        value = json.loads(line).get("prev_hash")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="assist-audit", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("verify", help="check the hash chain of a file or directory")
    check.add_argument("target", type=Path)
    args = parser.parse_args(argv)
    try:
        _, message = verify(args.target)
    except FileNotFoundError as exc:
        print(f"assist-audit: {exc}", file=sys.stderr)
        return 2
    except ChainBreak as exc:
        print(f"BROKEN {exc.reason}", file=sys.stderr)
        return 1
    print(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
