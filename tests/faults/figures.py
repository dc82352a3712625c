"""The figures every fault scenario reports, printed in one table-ready line and checked.

A scenario counts what it sent, what the server acknowledged (2xx), what ended processed, and
what was lost (acknowledged but never processed) or duplicated (processed more than once, by
id). `check()` fails the test on any loss or duplicate, after the line is printed, so a failing
run still shows its figures. `-s` or `-rP` shows the lines; they are also appended to
`test-artifacts/faults.md` for the closing note and the README.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@dataclasses.dataclass
class FaultFigures:
    scenario: str
    sent: int = 0
    acknowledged: int = 0
    processed: int = 0
    lost: int = 0
    duplicated: int = 0
    recovery_s: float | None = None
    notes: str = ""

    def line(self) -> str:
        recovery = "-" if self.recovery_s is None else f"{self.recovery_s:.1f} s"
        return (
            f"| {self.scenario} | {self.sent} | {self.acknowledged} | {self.processed} "
            f"| {self.lost} | {self.duplicated} | {recovery} | {self.notes} |"
        )

    def report(self) -> None:
        line = self.line()
        print(f"\nFAULT {line}")
        ARTIFACTS.mkdir(exist_ok=True)
        with (ARTIFACTS / "faults.md").open("a", encoding="utf-8") as table:
            table.write(line + "\n")

    def check(self) -> None:
        """Print the figures, then fail on any loss or duplicate."""
        self.report()
        assert self.lost == 0, f"{self.scenario}: {self.lost} acknowledged items lost"
        assert self.duplicated == 0, f"{self.scenario}: {self.duplicated} items duplicated"
        assert self.processed == self.acknowledged, (
            f"{self.scenario}: processed {self.processed} of {self.acknowledged} acknowledged"
        )
