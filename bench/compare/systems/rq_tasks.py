"""RQ's no-op task for the comparison: workers import it by its dotted path."""

from __future__ import annotations

from bench.compare.completions import record


def noop() -> None:
    record()
