"""RQ's own no-op job, the baseline of the ranking-job benchmark (benchmarks/jobs.py).

Importable by the worker (`benchmarks.noop.noop`), enqueued with the same serializer, queue and
result TTL as the project's jobs, so its throughput is what RQ and the worker class cost with
no work at all.
"""

from __future__ import annotations


def noop() -> None:
    return None
